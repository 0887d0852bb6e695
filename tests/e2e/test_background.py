"""Background responses with the official OpenAI SDK: answered at once, run on, read, followed
and resumed from any replica, cancelled from any replica."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import openai
import pytest

from tests.conftest import LIMITED_KEY, TEST_KEY, mcp_tool
from tests.fixtures.mcp_servers import RunningMcpServer
from tests.fixtures.servers import ServerThread
from tests.fixtures.waiting import wait_until


@pytest.fixture
def replicas(
    toolbridge_factory: Callable[..., ServerThread],
) -> tuple[openai.OpenAI, openai.OpenAI]:
    """Two toolbridges sharing one Redis space, as two pods do."""
    shared = f"tb-bg-{uuid.uuid4().hex[:8]}:"
    a, b = (toolbridge_factory(redis_prefix=shared) for _ in range(2))
    return tuple(  # type: ignore[return-value]
        openai.OpenAI(base_url=f"{s.url}/v1", api_key=TEST_KEY, max_retries=0) for s in (a, b)
    )


def test_a_background_response_is_answered_at_once_and_read_anywhere(
    replicas: tuple[openai.OpenAI, openai.OpenAI],
) -> None:
    a, b = replicas
    queued = a.responses.create(model="scripted-a", input="sleep 1\nsay later", background=True)
    assert queued.status == "queued" and queued.background is True and queued.output == []
    wait_until(lambda: b.responses.retrieve(queued.id).status == "completed", what="completed")
    done = b.responses.retrieve(queued.id)
    assert done.output_text == "later" and done.background is True
    follow = b.responses.create(model="scripted-a", input="say on", previous_response_id=done.id)
    assert follow.output_text == "on"  # stored like any other response


def test_a_background_response_is_cancelled_from_another_replica(
    replicas: tuple[openai.OpenAI, openai.OpenAI], mcp_server: RunningMcpServer
) -> None:
    a, b = replicas
    mcp_server.log.reset()
    queued = a.responses.create(
        model="scripted-a",
        input='call calc__slow {"seconds": 60}',
        tools=[mcp_tool(mcp_server, require_approval="never")],  # type: ignore[list-item]
        background=True,
    )
    wait_until(lambda: mcp_server.log.slow_started == 1, what="the tool running")
    cancelled = b.responses.cancel(queued.id)
    assert cancelled.status == "cancelled"
    wait_until(lambda: mcp_server.log.cancelled == 1, what="the MCP call cancelled")
    assert a.responses.retrieve(queued.id).status == "cancelled"
    assert b.responses.cancel(queued.id).status == "cancelled"  # again: as it is


def test_a_background_stream_resumes_after_a_dropped_connection(
    replicas: tuple[openai.OpenAI, openai.OpenAI],
) -> None:
    a, b = replicas
    stream = a.responses.create(model="scripted-a", input="words 30", background=True, stream=True)
    first: list[Any] = []
    for event in stream:
        first.append(event)
        if len(first) == 4:
            break
    stream.close()  # the connection drops
    last = first[-1].sequence_number
    rest = list(b.responses.retrieve(first[0].response.id, stream=True, starting_after=last))
    numbers = [e.sequence_number for e in first + rest]
    assert numbers == list(range(len(numbers)))  # nothing lost, nothing twice
    assert first[0].type == "response.created" and rest[-1].type == "response.completed"
    text = "".join(e.delta for e in first + rest if e.type == "response.output_text.delta")
    assert text.split() == [f"w{i}" for i in range(30)]


def test_what_background_mode_refuses(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="scripted-a", input="x", background=True, store=False)
    assert caught.value.param == "store"
    plain = client.responses.create(model="scripted-a", input="say plain")
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(plain.id)  # only a background response can be cancelled
    with pytest.raises(openai.BadRequestError):
        list(client.responses.retrieve(plain.id, stream=True))
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel("resp_missing")


def test_background_limits_queue_on_a_full_replica_and_refuse_past_the_key_limit(
    toolbridge_factory: Callable[..., ServerThread],
) -> None:
    server = toolbridge_factory(background={"max_per_key": 2, "max_running_per_replica": 1})
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=TEST_KEY, max_retries=0)
    first = client.responses.create(model="scripted-a", input="sleep 30", background=True)
    wait_until(
        lambda: client.responses.retrieve(first.id).status == "in_progress", what="first running"
    )
    second = client.responses.create(model="scripted-a", input="say second", background=True)
    with pytest.raises(openai.RateLimitError) as caught:
        client.responses.create(model="scripted-a", input="say third", background=True)
    assert caught.value.param == "background" and "2 background responses" in str(caught.value)
    assert client.responses.retrieve(second.id).status == "queued"  # waits for the slot
    assert client.responses.cancel(first.id).status == "cancelled"
    wait_until(lambda: client.responses.retrieve(second.id).status == "completed", what="second")
    assert client.responses.retrieve(second.id).output_text == "second"
    third = client.responses.create(model="scripted-a", input="say third", background=True)
    wait_until(lambda: client.responses.retrieve(third.id).status == "completed", what="third")


def test_a_queued_response_cancelled_frees_its_conversation_at_once(
    toolbridge_factory: Callable[..., ServerThread],
) -> None:
    """Its run never starts, so only the cancel can give the conversation back: without it,
    the next response would be refused (409) until the hold lapsed, 30 s later."""
    server = toolbridge_factory(background={"max_running_per_replica": 1})
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=TEST_KEY, max_retries=0)
    busy = client.responses.create(model="scripted-a", input="sleep 30", background=True)
    wait_until(
        lambda: client.responses.retrieve(busy.id).status == "in_progress", what="slot taken"
    )
    conversation = client.conversations.create()
    queued = client.responses.create(
        model="scripted-a", input="say never", conversation=conversation.id, background=True
    )
    assert client.responses.retrieve(queued.id).status == "queued"
    assert client.responses.cancel(queued.id).status == "cancelled"
    after = client.responses.create(
        model="scripted-a", input="say next", conversation=conversation.id
    )
    assert after.output_text == "next"
    items = client.conversations.items.list(conversation.id, order="asc").data
    assert [item.content[0].text for item in items] == ["say next", "next"]  # type: ignore[union-attr]
    assert client.responses.cancel(busy.id).status == "cancelled"


def test_a_background_response_refused_frees_its_conversation_at_once(
    toolbridge_factory: Callable[..., ServerThread],
) -> None:
    """Refused past the key's limit after it took the conversation: the refusal gives it back."""
    server = toolbridge_factory(background={"max_per_key": 1})
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=TEST_KEY, max_retries=0)
    busy = client.responses.create(model="scripted-a", input="sleep 30", background=True)
    conversation = client.conversations.create()
    with pytest.raises(openai.RateLimitError):
        client.responses.create(
            model="scripted-a", input="say never", conversation=conversation.id, background=True
        )
    after = client.responses.create(
        model="scripted-a", input="say next", conversation=conversation.id
    )
    assert after.output_text == "next"
    assert client.responses.cancel(busy.id).status == "cancelled"


def test_deleting_a_background_response_deletes_its_state_and_stream(
    replicas: tuple[openai.OpenAI, openai.OpenAI],
) -> None:
    """Deleted, it cannot be retrieved or streamed again from any replica; while it runs,
    deleting it is refused (cancel it first)."""
    a, b = replicas
    running = a.responses.create(model="scripted-a", input="sleep 2\nsay gone", background=True)
    with pytest.raises(openai.BadRequestError) as caught:
        b.responses.delete(running.id)
    assert caught.value.param == "response_id" and "cancel it" in str(caught.value)
    wait_until(lambda: b.responses.retrieve(running.id).status == "completed", what="completed")
    b.responses.delete(running.id)
    for client in (a, b):
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(running.id)
        with pytest.raises(openai.NotFoundError):
            list(client.responses.retrieve(running.id, stream=True, starting_after=-1))
        with pytest.raises(openai.NotFoundError):
            client.responses.delete(running.id)


def test_a_running_background_response_lists_its_input_items_anywhere(
    replicas: tuple[openai.OpenAI, openai.OpenAI],
) -> None:
    """Not stored until it ends, it still lists what it was given, on every replica."""
    a, b = replicas
    running = a.responses.create(model="scripted-a", input="sleep 2\nsay listed", background=True)
    assert b.responses.retrieve(running.id).status in ("queued", "in_progress")
    for client in (a, b):
        items = client.responses.input_items.list(running.id).data
        assert [item.content[0].text for item in items] == ["sleep 2\nsay listed"]  # type: ignore[union-attr]
    other = openai.OpenAI(base_url=str(a.base_url), api_key=LIMITED_KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.responses.input_items.list(running.id)  # another key's
    wait_until(lambda: b.responses.retrieve(running.id).status == "completed", what="completed")
    stored = b.responses.input_items.list(running.id).data  # from its stored record now
    assert [item.content[0].text for item in stored] == ["sleep 2\nsay listed"]  # type: ignore[union-attr]


def test_continuing_a_background_response_before_it_ends_is_a_400_saying_so(
    replicas: tuple[openai.OpenAI, openai.OpenAI],
) -> None:
    """Not a 404 for a response its caller can retrieve: it is stored once it ends."""
    a, b = replicas
    running = a.responses.create(model="scripted-a", input="sleep 2\nsay first", background=True)
    with pytest.raises(openai.BadRequestError) as caught:
        b.responses.create(model="scripted-a", input="say next", previous_response_id=running.id)
    assert caught.value.param == "previous_response_id" and "once it has ended" in str(caught.value)
    wait_until(lambda: b.responses.retrieve(running.id).status == "completed", what="completed")
    follow = b.responses.create(
        model="scripted-a", input="say next", previous_response_id=running.id
    )
    assert follow.output_text == "next"
