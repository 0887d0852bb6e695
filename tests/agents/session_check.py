"""The OpenAI Agents SDK as a client of toolbridge, in a venv of its own (``.venv/agents``:
the Agents SDK needs the 3.x OpenAI SDK, the app's litellm needs 2.x).

Run as ``python -m tests.agents.session_check URL KEY MCP_URL``: an agent with an MCP tool
(``HostedMCPTool``) runs twice in one ``OpenAIConversationsSession``; prints a JSON summary.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import agents
import openai
from agents import Agent, HostedMCPTool, OpenAIConversationsSession, Runner


async def main(url: str, key: str, mcp_url: str) -> dict[str, Any]:
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    agents.set_default_openai_client(client, use_for_tracing=False)
    agents.set_tracing_disabled(True)
    calc = HostedMCPTool(
        tool_config={
            "type": "mcp",
            "server_label": "calc",
            "server_url": mcp_url,
            "require_approval": "never",
        }
    )
    agent = Agent(name="calculator", model="scripted-a", tools=[calc])
    session = OpenAIConversationsSession(openai_client=client)
    first = await Runner.run(agent, 'call calc__add {"a": 20, "b": 22}', session=session)
    second = await Runner.run(agent, "say seen", session=session)
    items = await session.get_items()
    conversation = await session._get_session_id()  # private API of the Agents SDK: its id
    popped = await session.pop_item()
    after_pop = await session.get_items()
    await session.clear_session()
    return {
        "sdk": agents.__version__ if hasattr(agents, "__version__") else "?",
        "openai": openai.__version__,
        "conversation": conversation,
        "first": first.final_output,
        "second": second.final_output,
        "items": [item.get("type", "message") for item in items],
        "popped": (popped or {}).get("type", "message"),
        "after_pop": len(after_pop),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(*sys.argv[1:4]))))
