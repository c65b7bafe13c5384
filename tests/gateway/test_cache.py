"""Response cache: exact-match by release policy, TTL honoured, keys free of secrets."""

import re
import time
import uuid

import pytest
from django.core.cache import cache

from apps.core.hashing import content_hash
from apps.gateway.cache import (
    KEY_PREFIX,
    CacheKeyParts,
    cache_get,
    cache_key,
    cache_set,
    parse_policy,
)

EXACT = {"mode": "exact", "ttl_seconds": 60}
OFF = {"mode": "off", "ttl_seconds": 60}
RESPONSE = {
    "id": "chatcmpl-1",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


def parts(content="Hi", **overrides):
    """Unique per test (a fresh model name), so parallel runs and old entries never collide."""
    values = {
        "provider_slug": "openai",
        "provider_model": f"gpt-test-{uuid.uuid4().hex}",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": content},
        ],
        "parameters": {"temperature": 0, "max_tokens": 16},
    }
    values.update(overrides)
    return CacheKeyParts(**values)


def test_an_exact_hit_returns_the_stored_response():
    p = parts()
    assert cache_get(EXACT, p) is None
    cache_set(EXACT, p, RESPONSE)
    assert cache_get(EXACT, p) == RESPONSE
    same = CacheKeyParts(p.provider_slug, p.provider_model, list(p.messages), dict(p.parameters))
    assert cache_get(EXACT, same) == RESPONSE


def test_different_messages_parameters_or_models_miss():
    p = parts("Hi")
    cache_set(EXACT, p, RESPONSE)
    assert cache_get(EXACT, parts("Hi!", provider_model=p.provider_model)) is None
    assert (
        cache_get(
            EXACT,
            parts("Hi", provider_model=p.provider_model, parameters={"temperature": 1}),
        )
        is None
    )
    assert cache_get(EXACT, parts("Hi", provider_model=p.provider_model + "x")) is None
    assert (
        cache_get(EXACT, parts("Hi", provider_model=p.provider_model, provider_slug="other"))
        is None
    )


def test_mode_off_never_stores_nor_reads():
    p = parts()
    cache_set(OFF, p, RESPONSE)
    assert cache.get(cache_key(p)) is None
    assert cache_get(EXACT, p) is None
    cache_set(EXACT, p, RESPONSE)
    assert cache_get(OFF, p) is None
    assert cache_get(None, p) is None
    assert cache_get({}, p) is None


def test_the_ttl_is_honoured():
    p = parts()
    cache_set({"mode": "exact", "ttl_seconds": 1}, p, RESPONSE)
    assert cache_get(EXACT, p) == RESPONSE
    time.sleep(1.2)
    assert cache_get(EXACT, p) is None


def test_the_key_is_a_hash_of_the_four_parts_only_and_holds_no_secret():
    """
    GIVEN key parts for a provider whose secret and whose caller's API key are known
    WHEN the cache key is computed
    THEN it is sha256 over canonical JSON of slug, model, messages and parameters only,
         and extra fields (such as a secret) are refused rather than hashed in
    """
    secret = "sk-live-very-secret"
    p = parts()
    key = cache_key(p)
    assert re.fullmatch(re.escape(KEY_PREFIX) + "[0-9a-f]{64}", key)
    assert secret not in key
    assert key == KEY_PREFIX + content_hash(
        {
            "provider_slug": p.provider_slug,
            "provider_model": p.provider_model,
            "messages": p.messages,
            "parameters": p.parameters,
        }
    )
    as_dict = {
        "parameters": {"max_tokens": 16, "temperature": 0},  # order does not matter
        "messages": list(p.messages),
        "provider_model": p.provider_model,
        "provider_slug": p.provider_slug,
    }
    assert cache_key(as_dict) == key
    assert cache_key((p.provider_slug, p.provider_model, p.messages, p.parameters)) == key
    with pytest.raises(TypeError, match="unexpected: api_key"):
        cache_key({**as_dict, "api_key": secret})
    with pytest.raises(TypeError, match="missing: parameters"):
        cache_key({k: v for k, v in as_dict.items() if k != "parameters"})


def test_the_stored_value_is_a_copy_not_the_callers_object():
    p = parts()
    response = {"choices": [{"message": {"content": "a"}}]}
    cache_set(EXACT, p, response)
    response["choices"][0]["message"]["content"] = "changed"
    assert cache_get(EXACT, p) == {"choices": [{"message": {"content": "a"}}]}


@pytest.mark.parametrize(
    "policy",
    [{"mode": "fuzzy"}, {"mode": "exact", "ttl_seconds": 0}, {"mode": "exact", "ttl_seconds": "5"}],
)
def test_a_malformed_policy_is_refused(policy):
    with pytest.raises(ValueError):
        parse_policy(policy)


def test_a_policy_without_ttl_uses_the_default():
    assert parse_policy({"mode": "exact"}).ttl_seconds == 300
    assert not parse_policy({"mode": "off"}).enabled
