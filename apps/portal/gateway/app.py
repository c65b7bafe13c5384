"""The gateway's ASGI app: ``/v1/`` beside Django (``plmportal.asgi``), no Django request cycle.

    POST /v1/chat/completions      OpenAI chat completions (``model`` = the API's slug,
                                   ``variables`` in the body; ``stream: true`` for SSE)
    GET  /v1/models                the APIs the key may call (OpenAI's list shape)
    GET  /v1/models/{slug}         one of them
    POST /v1/apis/{slug}/invoke    ``{"variables": {...}}`` -> ``{"output", "usage"}``

A request, in order: route (404/405) → bearer key (401) → JSON body (400) → the API (404, 410)
→ the application's subscription to it (403) → the plan's limits (429) → the pipeline (400 for
bad variables, 502/503/504 when the upstream fails). Everything up to the pipeline is answered
from the in-process ``Snapshot`` (no SQL in the steady state) checked against the invalidation
generation on every request; with Redis, the generation comes back with the limiter script's
reply (one round trip for both). Usage is recorded after the response is sent.

The ASGI lifespan's shutdown writes every pending ``UsageRecord`` and ``ProviderCall`` row
(``pipeline.aclose``), so stopping uvicorn (SIGTERM) loses none.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connection, connections

from apps.core.exceptions import ApplicationError
from apps.gateway import http11, pipeline
from apps.gateway.models import CallSource
from apps.gateway.pipeline import UpstreamFailed, run_chat, stream_chat

from .. import invalidation
from ..keys import key_hash, key_prefix
from ..models import APIStatus, SubscriptionState, UsageEndpoint
from . import limiter as limits
from . import snapshot as snap
from . import usage
from .errors import GatewayError, Header, bad_request, error_body, not_found, unauthorized

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024
JSON_HEADERS: list[Header] = [(b"content-type", b"application/json")]
SSE_HEADERS: list[Header] = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
# Request fields passed to the pipeline as parameters (OpenAI's; others are ignored).
PARAMETERS = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "n",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "reasoning_effort",
)
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
SUBSCRIPTION_REFUSALS = {
    SubscriptionState.PENDING: "Your application's subscription to {slug!r} awaits approval.",
    SubscriptionState.SUSPENDED: "Your application's subscription to {slug!r} is suspended.",
    SubscriptionState.REJECTED: "Your application's subscription to {slug!r} was rejected.",
    SubscriptionState.CANCELLED: "Your application's subscription to {slug!r} was cancelled.",
}
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


def _dumps(value: Any) -> bytes:
    return _encode(value).encode()


def _close_connections() -> None:
    if not connection.in_atomic_block:  # (a test's transaction stays open)
        connections.close_all()


class Disconnected(Exception):
    """The client went away before its request was read."""


class Context:
    """What one authorised request runs with."""

    __slots__ = ("api", "decision", "headers", "key", "started", "sub")

    def __init__(self, key, sub, api, decision, started) -> None:
        self.key: snap.KeyFacts = key
        self.sub: snap.SubFacts = sub
        self.api: snap.APIFacts = api
        self.decision: limits.Decision = decision
        self.started: float = started
        self.headers: list[Header] = [*decision.headers(), *api.headers]

    def record(self, endpoint: str, status: int, *, streamed=False, code="", result=None):
        usage.record(
            key_id=self.key.id,
            application_id=self.key.application_id,
            subscription_id=self.sub.id,
            api_id=self.api.id,
            release_id=self.api.release_id,
            endpoint=endpoint,
            streamed=streamed,
            status_code=status,
            error_code=code,
            result=result,
            latency_ms=round((time.perf_counter() - self.started) * 1000),
        )


async def read_body(receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise GatewayError(413, "The request body is too large.", code="request_too_large")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad_request("The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", code="invalid_json")
    return body


def bearer(scope) -> str:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, secret = value.decode("latin-1").strip().partition(" ")
            secret = secret.strip()
            if scheme.lower() != "bearer" or not secret:
                raise unauthorized("The Authorization header must read 'Bearer <API key>'.")
            return secret
    raise unauthorized(
        "You didn't provide an API key. Send it as 'Authorization: Bearer <API key>'."
    )


class _Held:
    """Stands in for the server's transport while it writes a response's start: what it writes
    (the status line and headers) is held, to leave with the body in one write."""

    __slots__ = ("held", "transport")

    def __init__(self, transport) -> None:
        self.transport = transport
        self.held: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.held.append(data)

    def __getattr__(self, name):
        return getattr(self.transport, name)


# uvicorn's httptools protocol, whose cycle we know: it writes the start in ``send`` through
# ``self.transport`` and counts the body against ``expected_content_length``.
_ONE_WRITE_CYCLES = ("uvicorn.protocols.http.httptools_impl",)


async def respond(send, status: int, body: bytes, headers: list[Header] | tuple = ()) -> None:
    """Send one whole response. Under uvicorn's httptools protocol the status line, headers and
    body leave in one write: two writes are two TCP segments, and the client wakes up for each
    (half a millisecond of the gateway's added latency on a loaded machine; bench/gateway.py).
    Under any other server, two ASGI messages as usual."""
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            *JSON_HEADERS,
            (b"content-length", str(len(body)).encode()),
            *headers,
        ],
    }
    cycle = getattr(send, "__self__", None)
    if not body or type(cycle).__module__ not in _ONE_WRITE_CYCLES:
        await send(start)
        await send({"type": "http.response.body", "body": body})
        return
    transport = cycle.transport
    held = _Held(transport)
    cycle.transport = held
    try:
        await send(start)
    finally:
        cycle.transport = transport
    if held.held:  # written (not a client that left): the body goes with it
        transport.write(b"".join([*held.held, body]))
        cycle.expected_content_length -= len(body)
    await send({"type": "http.response.body", "body": b""})


def chat_fields(body: dict[str, Any]) -> tuple[Any, list[dict], dict[str, Any]]:
    """The variables, messages and parameters of a chat request (400 when malformed)."""
    variables = body.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise bad_request("variables must be an object.", param="variables",
                          code="invalid_variables")  # fmt: skip
    messages = body.get("messages", [])
    if not isinstance(messages, list):
        raise bad_request("messages must be an array.", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise bad_request(
                f"messages[{i}] must be an object with a role ({', '.join(sorted(ROLES))}).",
                param=f"messages[{i}]",
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise bad_request(
                f"messages[{i}].content must be a string or an array.",
                param=f"messages[{i}].content",
            )
    parameters = {name: body[name] for name in PARAMETERS if body.get(name) is not None}
    return variables, messages, parameters


def usage_of(result) -> dict[str, int]:
    return {
        "prompt_tokens": result.tokens_in,
        "completion_tokens": result.tokens_out,
        "total_tokens": result.tokens_in + result.tokens_out,
    }


class GatewayApp:
    """The ``/v1/`` ASGI app. One per process (its snapshot and limiter are per process)."""

    def __init__(self) -> None:
        self.snapshot = snap.Snapshot()
        self.limiter = limits.make_limiter()
        self.redis_generation = bool(limits.settings.REDIS_URL)
        # The Redis limiter's reply carries the generation; the database limiter's does not, so
        # with it every request reads the generation itself.
        self.generation_in_reply = self.redis_generation and self.limiter.name == "redis"
        self._load = sync_to_async(snap.load, thread_sensitive=True)

    # ---- ASGI -----------------------------------------------------------------------------
    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.lifespan(receive, send)
            return
        if kind != "http":
            return
        lean = http11.in_gateway.set(True)  # provider calls made for this request
        try:
            await self.route(scope, receive, send)
        except Disconnected:
            return
        except GatewayError as exc:
            await respond(send, exc.status, exc.body(), exc.headers)
        except Exception:
            logger.exception("gateway: unexpected error on %s", scope.get("path"))
            body = error_body("The gateway failed to answer.", "api_error", "internal_error")
            with contextlib.suppress(Exception):
                await respond(send, 500, body)
        finally:
            http11.in_gateway.reset(lean)

    async def lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.aclose()
                except Exception as exc:
                    logger.exception("gateway: shutdown failed")
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        """Write every pending usage and call row, close this loop's pools and connections."""
        try:
            await pipeline.aclose()
        finally:
            if self.redis_generation or self.limiter.name == "redis":
                await limits.redis_aclose()
            await sync_to_async(_close_connections, thread_sensitive=True)()

    async def route(self, scope, receive, send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/v1/chat/completions":
            allow = "POST"
            if method == "POST":
                await self.chat(scope, receive, send)
                return
        elif path == "/v1/models" or path.startswith("/v1/models/"):
            allow = "GET"
            if method == "GET":
                body = await self.models(scope, path[len("/v1/models/") :] or None)
                await respond(send, 200, body)
                return
        elif path.startswith("/v1/apis/") and path.endswith("/invoke"):
            allow = "POST"
            slug = path[len("/v1/apis/") : -len("/invoke")]
            if method == "POST" and slug and "/" not in slug:
                await self.invoke(scope, receive, send, slug)
                return
            if "/" in slug or not slug:
                raise not_found(f"Unknown URL {path}.", code="unknown_url", param=None)
        else:
            raise not_found(f"Unknown URL {path}.", code="unknown_url", param=None)
        raise GatewayError(
            405,
            f"Method {method} is not allowed on {path}; use {allow}.",
            code="method_not_allowed",
            headers=[(b"allow", allow.encode())],
        )

    # ---- the snapshot ---------------------------------------------------------------------
    async def generation(self) -> Any:
        if self.redis_generation:
            return (invalidation.local_generation, await limits.redis_generation())
        return (invalidation.local_generation, invalidation.file_generation())

    async def refresh(self) -> bool:
        """Bring the snapshot up to date where that is cheap; True when it is known fresh.
        With the Redis limiter the hot path learns the generation from its reply instead."""
        if self.generation_in_reply and self.snapshot.generation is not None:
            if self.snapshot.generation[0] != invalidation.local_generation:
                self.snapshot.reset(await self.generation())
                return True
            return False
        current = await self.generation()
        if current != self.snapshot.generation:
            self.snapshot.reset(current)
        return True

    async def stale(self) -> bool:
        """Is the snapshot older than the current generation? (Then it is reset.)"""
        current = await self.generation()
        if current != self.snapshot.generation:
            self.snapshot.reset(current)
            return True
        return False

    async def facts(self, secret: str, slug: str | None):
        """The key's facts, its application's and the API's (loaded when the snapshot lacks
        them); raises 401 for a key that does not work now."""
        if key_prefix(secret) is None:
            raise unauthorized("The API key is malformed.")
        s = self.snapshot
        digest = key_hash(secret)
        key = s.keys.get(digest, False)
        app = s.apps.get(key.application_id) if key else None
        api = s.apis.get(slug, False) if slug is not None else None
        if key is False or (key is not None and app is None) or api is False:
            generation = s.generation
            loaded = await self._load(
                key_hash=digest if key is False else None,
                application_id=None if key is False else key.application_id,
                slug=slug if api is False else None,
            )
            s.store(generation, loaded)
            if key is False:
                key = loaded.key
            if loaded.app is not None:
                app = loaded.app
            if api is False:
                api = loaded.api
        if key is None:
            raise unauthorized(f"Incorrect API key provided: {secret[:17]}…")
        refusal = key.refusal(time.time())
        if refusal is not None:
            raise unauthorized(refusal)
        return key, app, api

    def subscription(self, app: snap.AppFacts, api: snap.APIFacts | None, slug: str):
        if api is None or api.status == APIStatus.DRAFT:
            raise not_found(f"The model {slug!r} does not exist or you do not have access to it.")
        if api.status == APIStatus.RETIRED or (
            api.sunset_at is not None and time.time() >= api.sunset_at
        ):
            raise GatewayError(
                410, f"The API {slug!r} has been retired.", code="model_retired", param="model"
            )
        sub = app.subs.get(api.id)
        if sub is None or sub.state != SubscriptionState.ACTIVE:
            template = SUBSCRIPTION_REFUSALS.get(
                sub.state if sub else None,
                "Your application has no subscription to {slug!r}; subscribe in the portal.",
            )
            raise GatewayError(
                403,
                template.format(slug=slug),
                type="permission_denied",
                code="permission_denied",
                param="model",
            )
        return sub

    async def authorize(self, scope, slug: str, started: float, secret: str) -> Context:
        """Key, API, subscription and the plan's allowance; raises the refusal (recording
        a rate-limited call)."""
        taken: tuple[Any, limits.Decision] | None = None
        for attempt in range(2):
            fresh = await self.refresh()
            try:
                key, app, api = await self.facts(secret, slug)
                sub = self.subscription(app, api, slug)
            except GatewayError:
                if attempt == 0 and not fresh and await self.stale():
                    continue
                raise
            limits_key = (sub.id, sub.requests_per_minute, sub.tokens_per_month)
            if taken is not None and taken[0] == limits_key:
                decision = taken[1]
            else:
                decision = await self.limiter.take(
                    sub.id, sub.requests_per_minute, sub.tokens_per_month, api.breaker
                )
                taken = (limits_key, decision)
            if decision.generation is not None:
                current = (invalidation.local_generation, decision.generation)
                if current != self.snapshot.generation:
                    self.snapshot.reset(current)
                    if attempt == 0:
                        continue
            ctx = Context(key, sub, api, decision, started)
            if not decision.allowed:
                raise self.limited(ctx)
            if api.target is None:
                raise GatewayError(
                    503,
                    f"The API {slug!r} has no release to serve yet.",
                    type="api_error",
                    code="no_release",
                    headers=ctx.headers,
                )
            return ctx
        raise AssertionError("unreachable")  # pragma: no cover

    def limited(self, ctx: Context) -> GatewayError:
        decision = ctx.decision
        if decision.reason == "tokens":
            error = GatewayError(
                429,
                f"You exceeded your plan's quota of {decision.limit_tokens} tokens this month.",
                type="insufficient_quota",
                code="insufficient_quota",
                headers=ctx.headers,
            )
        else:
            error = GatewayError(
                429,
                f"Rate limit reached: {decision.limit_requests} requests per minute on your "
                f"plan. Try again in {max(1, round(decision.retry_after))} s.",
                type="requests",
                code="rate_limit_exceeded",
                headers=ctx.headers,
            )
        error.context = ctx  # type: ignore[attr-defined]
        return error

    # ---- endpoints ------------------------------------------------------------------------
    async def chat(self, scope, receive, send) -> None:
        started = time.perf_counter()
        secret = bearer(scope)
        body = parse_json(await read_body(receive))
        slug = body.get("model")
        if not isinstance(slug, str) or not slug:
            raise bad_request("model is required: the published API's slug.", param="model")
        stream = body.get("stream") is True
        options = body.get("stream_options")
        include_usage = (
            stream and isinstance(options, dict) and options.get("include_usage") is True
        )
        try:
            ctx = await self.authorize(scope, slug, started, secret)
        except GatewayError as exc:
            self.record_refusal(exc, UsageEndpoint.CHAT, stream)
            raise
        try:
            variables, messages, parameters = chat_fields(body)
            if stream:
                await self.chat_stream(ctx, receive, send, slug, variables, messages,
                                       parameters, include_usage)  # fmt: skip
                return
            result = await run_chat(
                ctx.api.target,
                variables=variables,
                messages=messages,
                parameters=parameters,
                source=CallSource.GATEWAY,
                breaker_checked=ctx.decision.breaker_clean,
                defer_record=True,
            )
        except GatewayError as exc:
            exc.headers = ctx.headers
            ctx.record(UsageEndpoint.CHAT, exc.status, streamed=stream, code=exc.code or "")
            raise
        except ApplicationError as exc:
            await self.pipeline_error(ctx, send, exc, UsageEndpoint.CHAT, stream)
            return
        response = dict(result.response)
        response["model"] = slug
        try:
            await respond(send, 200, _dumps(response), ctx.headers)
        finally:  # the call's row, built once the answer is out (also if the client left)
            result.record_now()
        await self.after(ctx, UsageEndpoint.CHAT, 200, result)

    async def chat_stream(
        self, ctx, receive, send, slug, variables, messages, parameters, include_usage
    ):
        chats = stream_chat(
            ctx.api.target,
            variables=variables,
            messages=messages,
            parameters=parameters,
            source=CallSource.GATEWAY,
            breaker_checked=ctx.decision.breaker_clean,
        )
        try:
            first = await anext(chats)  # an upstream failure before the first chunk: a 5xx
        except StopAsyncIteration:
            first = None
        await send(
            {"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *ctx.headers]}
        )
        # uvicorn's send() ignores a gone client: watch for the disconnect instead.
        gone = asyncio.ensure_future(receive())
        saw_usage = False
        failure: ApplicationError | None = None
        try:
            chunk = first
            while chunk is not None:
                if gone.done():
                    break
                if chunk.get("choices") == [] and "usage" in chunk:
                    saw_usage = True
                    if not include_usage:
                        chunk = await anext(chats, None)
                        continue
                chunk["model"] = slug
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"data: " + _dumps(chunk) + b"\n\n",
                        "more_body": True,
                    }
                )
                chunk = await anext(chats, None)
        except UpstreamFailed as exc:
            failure = exc
        finally:
            if failure is None and chats.result is None:  # the client went away
                await chats.aclose()
            gone.cancel()
        result = chats.result
        if failure is not None:
            tail = b"data: " + error_body(failure.message, "api_error", failure.code) + b"\n\n"
        else:
            tail = b""
            if include_usage and not saw_usage and result is not None:
                head = first or {}
                extra = {
                    "id": head.get("id", "chatcmpl"),
                    "object": "chat.completion.chunk",
                    "created": head.get("created", 0),
                    "model": slug,
                    "choices": [],
                    "usage": usage_of(result),
                }
                tail += b"data: " + _dumps(extra) + b"\n\n"
            tail += b"data: [DONE]\n\n"
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        status = failure.status if failure is not None else 200
        code = failure.code if failure is not None else ("" if result.outcome == "ok" else
                                                          "client_closed")  # fmt: skip
        await self.after(ctx, UsageEndpoint.CHAT, status, result, streamed=True, code=code)

    async def invoke(self, scope, receive, send, slug: str) -> None:
        started = time.perf_counter()
        secret = bearer(scope)
        body = parse_json(await read_body(receive))
        try:
            ctx = await self.authorize(scope, slug, started, secret)
        except GatewayError as exc:
            self.record_refusal(exc, UsageEndpoint.INVOKE, False)
            raise
        variables = body.get("variables")
        try:
            if variables is not None and not isinstance(variables, dict):
                raise bad_request("variables must be an object.", param="variables",
                                  code="invalid_variables")  # fmt: skip
            result = await run_chat(ctx.api.target, variables=variables,
                                    source=CallSource.GATEWAY,
                                    breaker_checked=ctx.decision.breaker_clean,
                                    defer_record=True)  # fmt: skip
        except GatewayError as exc:
            exc.headers = ctx.headers
            ctx.record(UsageEndpoint.INVOKE, exc.status, code=exc.code or "")
            raise
        except ApplicationError as exc:
            await self.pipeline_error(ctx, send, exc, UsageEndpoint.INVOKE, False)
            return
        payload = {"output": result.output, "usage": usage_of(result)}
        try:
            await respond(send, 200, _dumps(payload), ctx.headers)
        finally:
            result.record_now()
        await self.after(ctx, UsageEndpoint.INVOKE, 200, result)

    async def models(self, scope, one: str | None) -> bytes:
        secret = bearer(scope)
        await self.stale()  # no limiter round trip here to learn the generation from
        _, app, _ = await self.facts(secret, None)
        now = time.time()
        data = [
            {"id": m.slug, "object": "model", "created": m.created, "owned_by": "plm-portal"}
            for m in app.models
            if m.sunset_at is None or now < m.sunset_at
        ]
        if one is None:
            return _dumps({"object": "list", "data": data})
        found = next((m for m in data if m["id"] == one), None)
        if found is None:
            raise not_found(f"The model {one!r} does not exist or you do not have access to it.")
        return _dumps(found)

    # ---- helpers --------------------------------------------------------------------------
    async def pipeline_error(self, ctx, send, exc: ApplicationError, endpoint, streamed) -> None:
        status = exc.status if 400 <= exc.status < 600 else 400
        if isinstance(exc, UpstreamFailed) or status >= 500:
            body = error_body(exc.message, "api_error", exc.code)
        else:
            param = next(iter(exc.extra), None) if exc.extra else None
            body = error_body(exc.message, "invalid_request_error", exc.code, param)
        await respond(send, status, body, ctx.headers)
        result = exc.result if isinstance(exc, UpstreamFailed) else None
        await self.after(ctx, endpoint, status, result, streamed=streamed, code=exc.code)

    def record_refusal(self, exc: GatewayError, endpoint: str, streamed: bool) -> None:
        ctx = getattr(exc, "context", None)
        if ctx is not None:
            ctx.record(endpoint, exc.status, streamed=streamed, code=exc.code or "")

    async def after(self, ctx: Context, endpoint, status, result, *, streamed=False, code=""):
        """After the response went out: the usage row and the month's tokens."""
        ctx.record(endpoint, status, streamed=streamed, code=code or "", result=result)
        if result is not None and result.tokens:
            await self.limiter.add_tokens(ctx.sub.id, result.tokens)
