"""The scripted model's script language (the only fake in the suite, so it gets tests too)."""

from __future__ import annotations

from app.demo.scripted_model import script_reply


def test_calls_on_first_turn_then_answers_with_results() -> None:
    user = {"role": "user", "content": 'call a {"x": 1}\ncall b {}'}
    first = script_reply("m", [user])
    assert first.tool_calls == [("a", '{"x": 1}'), ("b", "{}")]
    assert first.text is None
    history = [
        user,
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "1", "function": {"name": "a"}},
                {"id": "2", "function": {"name": "b"}},
            ],
        },
        {"role": "tool", "tool_call_id": "1", "content": "one"},
        {"role": "tool", "tool_call_id": "2", "content": "two"},
    ]
    assert script_reply("m", history).text == "done: a=one; b=two"


def test_echo_say_and_always() -> None:
    assert script_reply("model-x", [{"role": "user", "content": "hello"}]).text == (
        "echo(model-x): hello"
    )
    assert script_reply("m", [{"role": "user", "content": "say hi there"}]).text == "hi there"
    looping = [
        {"role": "user", "content": "always call t {}"},
        {"role": "tool", "tool_call_id": "1", "content": "r"},
    ]
    assert script_reply("m", looping).tool_calls == [("t", "{}")]
