"""The OpenAI-compatible gateway for subscribers: a thin ASGI app mounted at ``/v1/``.

``app.GatewayApp`` answers ``POST /v1/chat/completions``, ``GET /v1/models`` and
``POST /v1/apis/{slug}/invoke`` from an in-process ``snapshot`` of keys, subscriptions, plans
and published APIs (no SQL in the steady state), takes each request's allowance from
``limiter`` (one Redis Lua script, or atomic UPDATEs on ``LimitCounter``), runs the call
through ``apps.gateway.pipeline`` and hands its ``UsageRecord`` to the batched recorder
(``usage``). See ``docs/gateway.md``.
"""
