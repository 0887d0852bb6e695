"""Today's OpenAI SDK (3.x) as a client of toolbridge, in a process of its own.

Run as ``python -m tests.sdk3.check URL KEY MCP_URL BIG_URL`` with the 3.x SDK first on the
path (the app's litellm needs openai<3, so the two cannot share a process). Every output item
and streamed event is validated strictly against the SDK's own type unions; prints a JSON
summary, and fails with the first mismatch.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import httpx
import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.conversations import Conversation, ConversationItem
from openai.types.responses import Response, ResponseOutputItem, ResponseStreamEvent
from openai.types.responses.mcp_tool_call_error import McpProtocolError, McpToolExecutionError
from pydantic import TypeAdapter

ITEM = TypeAdapter(ResponseOutputItem)
EVENT = TypeAdapter(ResponseStreamEvent)
CONVERSATION_ITEM = TypeAdapter(ConversationItem)


def strict(response: dict[str, Any]) -> Response:
    """A Response validated strictly, item by item (not constructed leniently)."""
    for item in response["output"]:
        ITEM.validate_python(item)
    return Response.model_validate(response)


def raw_events(url: str, key: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    events = []
    with httpx.stream(
        "POST",
        f"{url}/v1/responses",
        json={**body, "stream": True},
        timeout=60,
        headers={"Authorization": f"Bearer {key}"},
    ) as answer:
        for line in answer.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return events


def main(url: str, key: str, mcp_url: str, big_url: str) -> dict[str, Any]:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    calc = {
        "type": "mcp",
        "server_label": "calc",
        "server_url": mcp_url,
        "require_approval": "never",
    }
    big = {
        "type": "mcp",
        "server_label": "big",
        "server_url": big_url,
        "require_approval": "never",
        "server_description": "Business records and weather",
        "defer_loading": True,
    }
    summary: dict[str, Any] = {"sdk": openai.__version__}

    searched = client.responses.create(
        model="scripted-a",
        tools=[big, {"type": "tool_search"}],
        input='call tool_search {"query": "weather forecast"}\n'
        'then call big__get_weather_forecast {"city": "Oslo"}',
    )
    summary["search_items"] = [type(item).__name__ for item in searched.output]
    strict(client.responses.retrieve(searched.id).model_dump(mode="json", exclude_unset=True))

    failing = client.responses.create(
        model="scripted-a",
        tools=[calc],
        input='call calc__fail {"message": "disk on fire"}\ncall calc__nope {}',
    )
    calls = [item for item in failing.output if item.type == "mcp_call"]
    assert isinstance(calls[0].error, McpToolExecutionError), calls[0].error
    assert isinstance(calls[1].error, McpProtocolError) and calls[1].error.code == -32602
    assert [c.status for c in calls] == ["failed", "failed"]
    summary["errors"] = [type(c.error).__name__ for c in calls]

    body = {"model": "scripted-a", "tools": [calc], "input": 'call calc__add {"a": 1, "b": 2}'}
    events = raw_events(url, key, body)
    for event in events:
        EVENT.validate_python(event)
    summary["stream_events"] = len(events)
    with client.responses.stream(**body) as stream:  # type: ignore[arg-type]
        typed = [type(event).__name__ for event in stream]
        final = stream.get_final_response()
    assert final.output_text == "done: calc__add=3", final.output_text
    summary["stream_helper_events"] = len(typed)

    completion = client.chat.completions.create(
        model="scripted-a",
        messages=[{"role": "user", "content": 'call calc__add {"a": 2, "b": 2}'}],
        tools=[calc],  # type: ignore[list-item]
    )
    ChatCompletion.model_validate(completion.model_dump(mode="json"))
    chunks = list(
        client.chat.completions.create(
            model="scripted-a",
            messages=[{"role": "user", "content": "say streamed"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk.model_dump(mode="json"))
    summary["chat"] = completion.choices[0].message.content
    summary["outliving"] = outliving(client, calc)
    return summary


def wait_for(client: openai.OpenAI, response_id: str, status: str) -> Response:
    for _ in range(600):
        response = client.responses.retrieve(response_id)
        if response.status == status:
            return strict(response.model_dump(mode="json", exclude_unset=True))
        time.sleep(0.05)
    raise AssertionError(f"{response_id} never became {status}")


def outliving(client: openai.OpenAI, calc: dict[str, Any]) -> dict[str, Any]:
    """Conversations, background responses, cancel, resumed streams and token counts."""
    found: dict[str, Any] = {}
    conversation = client.conversations.create(
        items=[{"type": "message", "role": "user", "content": "remember 7"}],
        metadata={"topic": "sums"},
    )
    Conversation.model_validate(conversation.model_dump(mode="json"))
    client.responses.create(
        model="scripted-a",
        conversation=conversation.id,
        tools=[calc],  # type: ignore[list-item]
        input='call calc__add {"a": 3, "b": 4}',
    )
    items = list(client.conversations.items.list(conversation.id, order="asc"))
    for item in items:
        CONVERSATION_ITEM.validate_python(item.model_dump(mode="json", exclude_unset=True))
    found["conversation_items"] = [item.type for item in items]

    queued = client.responses.create(
        model="scripted-a", input="sleep 0.5\nsay later", background=True
    )
    found["queued"] = queued.status
    found["background_text"] = wait_for(client, queued.id, "completed").output_text

    stream = client.responses.create(
        model="scripted-a", input="words 20", background=True, stream=True
    )
    events = []
    for event in stream:
        events.append(event)
        if len(events) == 3:
            break
    stream.close()
    resumed = client.responses.retrieve(
        events[0].response.id, stream=True, starting_after=events[-1].sequence_number
    )
    events += list(resumed)
    for event in events:
        EVENT.validate_python(event.model_dump(mode="json", exclude_unset=True))
    found["sequence"] = [event.sequence_number for event in events] == list(range(len(events)))
    found["last_event"] = events[-1].type

    running = client.responses.create(model="scripted-a", input="sleep 30", background=True)
    wait_for(client, running.id, "in_progress")
    cancelled = client.responses.cancel(running.id)
    strict(cancelled.model_dump(mode="json", exclude_unset=True))
    found["cancelled"] = cancelled.status

    count = client.responses.input_tokens.count(
        model="scripted-a",
        input="how many",
        tools=[calc],  # type: ignore[list-item]
    )
    found["input_tokens"] = type(count).__name__, count.input_tokens > 20
    return found


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:5])))
