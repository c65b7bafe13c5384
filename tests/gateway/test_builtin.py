"""The built-in deterministic provider: pure, same input → same output."""

import pytest

from apps.gateway.providers import builtin

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is my order status?"},
]


def test_it_echoes_the_last_user_message_in_the_openai_shape():
    out = builtin.complete(MESSAGES, {"model": "demo"})
    assert out["object"] == "chat.completion"
    assert out["model"] == "demo"
    assert out["id"].startswith("chatcmpl-builtin-")
    (choice,) = out["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert choice["message"] == {
        "role": "assistant",
        "content": "[builtin] What is my order status?",
    }
    assert out["usage"] == {"prompt_tokens": 8, "completion_tokens": 6, "total_tokens": 14}


def test_same_input_gives_the_same_output_and_other_input_another():
    assert builtin.complete(MESSAGES, {"temperature": 0}) == builtin.complete(
        MESSAGES, {"temperature": 0}
    )
    other = builtin.complete([*MESSAGES[:1], {"role": "user", "content": "Hi"}])
    assert other["id"] != builtin.complete(MESSAGES)["id"]
    assert other["choices"][0]["message"]["content"] == "[builtin] Hi"


def test_the_last_user_message_wins_and_content_parts_are_read():
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "reply"},
        {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "image_url"}]},
    ]
    out = builtin.complete(messages)
    assert out["choices"][0]["message"]["content"] == "[builtin] second"
    assert out["usage"]["prompt_tokens"] == 3


def test_no_user_message_gives_just_the_prefix():
    out = builtin.complete([{"role": "system", "content": "s"}])
    assert out["choices"][0]["message"]["content"] == "[builtin]"


def test_max_tokens_truncates_with_finish_reason_length():
    out = builtin.complete(MESSAGES, {"max_tokens": 3})
    assert out["choices"][0]["message"]["content"] == "[builtin] What is"
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 3


def test_latency_comes_from_parameters_else_config_and_does_not_change_the_answer():
    slept: list[float] = []
    fast = builtin.complete(MESSAGES, sleep=slept.append)
    assert slept == []
    slow = builtin.complete(MESSAGES, {"latency_ms": 250}, sleep=slept.append)
    configured = builtin.complete(MESSAGES, config={"latency_ms": 40}, sleep=slept.append)
    both = builtin.complete(
        MESSAGES, {"latency_ms": 5}, config={"latency_ms": 40}, sleep=slept.append
    )
    assert slept == [0.25, 0.04, 0.005]
    assert fast == slow == configured == both


def test_real_sleep_is_used_by_default():
    import time

    start = time.perf_counter()
    builtin.complete(MESSAGES, {"latency_ms": 30})
    assert time.perf_counter() - start >= 0.03


@pytest.mark.parametrize("bad", [-1, "10", True])
def test_a_bad_latency_is_refused(bad):
    with pytest.raises(ValueError, match="latency_ms"):
        builtin.complete(MESSAGES, {"latency_ms": bad})
