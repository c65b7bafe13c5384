"""What the HTTP provider adapters share: one POST through the shared pool (``gateway.http``)
with every failure mapped to a typed ``Upstream*`` error, and a Server-Sent Events reader.

``post_json`` makes a non-streaming call and returns the JSON object answered. ``open_stream``
makes a streaming call; once the status is known to be 2xx it hands over an ``EventStream``, an
async iterator of ``Event`` that reads the body as it arrives (nothing is buffered beyond the
current event). Both make exactly one attempt; retries are the pipeline's job.

The errors, the same for every adapter:

- a non-2xx status → ``UpstreamHTTPError(status, retry_after, body)`` (``Retry-After`` parsed;
  at most ``BODY_EXCERPT`` characters of the body, with the secret redacted should the provider
  echo it);
- a timeout before the first chunk was passed on → ``UpstreamTimeout``; a connection that could
  not be made or dropped before then → ``UpstreamConnectionError``; a 2xx answer that is not
  what the protocol says → ``UpstreamProtocolError``;
- once the adapter has passed a chunk on (it sets ``EventStream.started``), any of those, or the
  end of the body before the protocol's terminating event → ``UpstreamStreamBroken``.

The secret is only ever put into the request headers the adapter builds; no message here
includes a header, a URL's query or an httpx error's text.

The SSE decoding follows the WHATWG rules: lines end in CRLF, LF or CR (and only those: not the
other characters ``str.splitlines`` splits on, which JSON may carry unescaped), ``field: value``
lines, ``:`` comments, a blank line dispatches the event, several ``data`` lines are joined with
``\\n``. An event still pending when the body ends is dispatched too (a lenient reading: a
provider that ends with ``data: [DONE]`` and no blank line has still finished).
"""

import email.utils
import json
import re
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from .. import http, http11
from ..http import (
    UpstreamConnectionError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamStreamBroken,
    UpstreamTimeout,
)

BODY_EXCERPT = 2000  # characters of an error body kept on the exception
MAX_EVENT_CHARS = 16 * 1024 * 1024  # one line or one event's data larger than this is malformed
REDACTED = "[redacted]"

_EOL = re.compile(rb"\r\n|\r|\n")
_ERROR_KIND = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds)


def redact(text: str, secret: str) -> str:
    return text.replace(secret, REDACTED) if secret else text


def _timeout(seconds: float) -> str:
    return f"No data from the provider within {seconds:g} s."


def _transport(exc: Exception) -> str:
    return f"{type(exc).__name__} talking to the provider."


# ---- non-streaming --------------------------------------------------------------------------


async def post_json(
    *,
    url: str,
    headers: Mapping[str, str],
    body: Mapping[str, Any],
    timeout_seconds: float,
    secret: str,
) -> dict[str, Any]:
    """POST ``body`` as JSON and return the JSON object answered, or raise an ``Upstream*``.

    When ``http11.enabled()`` (by default: in the subscribers' gateway), a plain ``http://``
    upstream is called with the lean client (``gateway.http11``); anything else with the shared
    httpx client. Both fail the same way, with the same messages."""
    to = http11.target(url) if http11.enabled() else None
    if to is not None:
        # Encoded as httpx encodes ``json=`` (a NaN is a ValueError, as there).
        content = json.dumps(
            body, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        ).encode("utf-8")
        answer = await http11.post(to, dict(headers), content, timeout_seconds)
        status, raw, text = answer.status, answer.content, answer.text
        retry_after = answer.headers.get("retry-after")
    else:
        try:
            response = await http.client().post(
                url, json=body, headers=dict(headers), timeout=httpx.Timeout(timeout_seconds)
            )
        except httpx.TimeoutException:
            raise UpstreamTimeout(f"No answer within {timeout_seconds:g} s.") from None
        except httpx.TransportError as exc:
            raise UpstreamConnectionError(_transport(exc)) from None
        status, raw, text = response.status_code, response.content, lambda: response.text
        retry_after = response.headers.get("retry-after")
    if status >= 300:
        raise UpstreamHTTPError(
            status, parse_retry_after(retry_after), redact(text()[:BODY_EXCERPT], secret)
        )
    try:
        data = json.loads(raw)
    except ValueError:
        raise UpstreamProtocolError("The provider's answer is not JSON.") from None
    if not isinstance(data, dict):
        raise UpstreamProtocolError("The provider's answer is not a JSON object.")
    return data


# ---- Server-Sent Events ---------------------------------------------------------------------


class SSEError(ValueError):
    """The body is not a well-formed event stream."""


@dataclass(frozen=True)
class Event:
    data: str
    event: str = "message"
    id: str | None = None


class LineDecoder:
    """Bytes in, lines out (without their end), as they complete; CRLF split across two chunks
    is one line end. Lines are decoded as UTF-8 (the SSE encoding), invalid bytes replaced."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._skip_lf = False
        self._first = True

    def _line(self, raw: bytes) -> str:
        line = raw.decode("utf-8", errors="replace")
        if self._first:
            self._first = False
            line = line.removeprefix("\ufeff")
        return line

    def feed(self, chunk: bytes) -> list[str]:
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
                if not chunk:
                    return []
        lines = []
        pos = 0
        for match in _EOL.finditer(chunk):
            self._parts.append(chunk[pos : match.start()])
            lines.append(self._line(b"".join(self._parts)))
            self._parts, self._size = [], 0
            pos = match.end()
        if pos < len(chunk):
            self._parts.append(chunk[pos:])
            self._size += len(chunk) - pos
            if self._size > MAX_EVENT_CHARS:
                raise SSEError("An event-stream line is too long.")
        self._skip_lf = chunk.endswith(b"\r")
        return lines

    def flush(self) -> list[str]:
        if not self._parts:
            return []
        line = self._line(b"".join(self._parts))
        self._parts, self._size = [], 0
        return [line]


class EventDecoder:
    """Lines in, events out (``line`` returns the event a blank line completes, else None)."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._size = 0
        self._event = ""
        self._last_id: str | None = None

    def line(self, line: str) -> Event | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment (a keep-alive)
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
            self._size += len(value) + 1
            if self._size > MAX_EVENT_CHARS:
                raise SSEError("An event is too long.")
        elif field == "event":
            self._event = value
        elif field == "id" and "\0" not in value:
            self._last_id = value
        # "retry" and unknown fields are ignored, as the standard says.
        return None

    def _dispatch(self) -> Event | None:
        data, event = self._data, self._event
        self._data, self._size, self._event = [], 0, ""
        if not data:
            return None
        return Event(data="\n".join(data), event=event or "message", id=self._last_id)

    def flush(self) -> Event | None:
        return self._dispatch()


def decode(chunks: Iterable[bytes]) -> list[Event]:
    """Every event of a whole body given as chunks (for tests and tools)."""
    lines, events = LineDecoder(), EventDecoder()
    found = []
    for chunk in chunks:
        found.extend(e for line in lines.feed(chunk) if (e := events.line(line)))
    found.extend(e for line in lines.flush() if (e := events.line(line)))
    if (last := events.flush()) is not None:
        found.append(last)
    return found


class EventStream:
    """The events of one streamed 2xx answer, read as they arrive, with failures typed.

    The adapter sets ``started`` once it has passed a chunk on; from then on every failure is an
    ``UpstreamStreamBroken``. Before that, a timeout is an ``UpstreamTimeout``, a dropped
    connection an ``UpstreamConnectionError`` and a malformed answer an ``UpstreamProtocolError``.
    """

    def __init__(self, response: httpx.Response, *, timeout_seconds: float, secret: str) -> None:
        self._chunks = response.aiter_bytes()
        self._lines = LineDecoder()
        self._events = EventDecoder()
        self._pending: deque[Event] = deque()
        self._eof = False
        self._timeout_seconds = timeout_seconds
        self._secret = secret
        self.received_bytes = 0
        self.started = False

    def __aiter__(self) -> "EventStream":
        return self

    async def __anext__(self) -> Event:
        while not self._pending:
            if self._eof:
                raise StopAsyncIteration
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self._eof = True
                chunk = b""
            except httpx.TimeoutException:
                raise self.broken(_timeout(self._timeout_seconds), UpstreamTimeout) from None
            except httpx.TransportError as exc:
                raise self.broken(_transport(exc), UpstreamConnectionError) from None
            except httpx.DecodingError:
                raise self.broken("The provider's stream could not be decoded.") from None
            self.received_bytes += len(chunk)
            try:
                lines = self._lines.flush() if self._eof else self._lines.feed(chunk)
                self._pending.extend(e for line in lines if (e := self._events.line(line)))
                if self._eof and (last := self._events.flush()) is not None:
                    self._pending.append(last)
            except SSEError as exc:
                raise self.broken(str(exc)) from None
        return self._pending.popleft()

    def broken(
        self, reason: str, before: type[UpstreamError] = UpstreamProtocolError
    ) -> UpstreamError:
        """The error to raise for ``reason``: ``before`` until a chunk was passed on."""
        if self.started:
            return UpstreamStreamBroken(f"The stream broke: {reason}")
        return before(reason)

    def json(self, event: Event) -> dict[str, Any]:
        """An event's data as a JSON object, or raise (the event is malformed)."""
        try:
            data = json.loads(event.data)
        except ValueError:
            raise self.broken("An event's data is not JSON.") from None
        if not isinstance(data, dict):
            raise self.broken("An event's data is not a JSON object.")
        return data

    def ended(self, terminator: str) -> UpstreamError:
        """The error for a body that ended before ``terminator`` (an event or a ``data``)."""
        reason = f"No {terminator} before the body ended."
        if not self.started and not self.received_bytes:
            return UpstreamConnectionError("The provider closed the stream before any event.")
        return self.broken(reason)

    def reported(self, status: int | None, kind: Any, payload: Any) -> UpstreamError:
        """The error for an error the provider reported in the stream (``kind``: its type)."""
        label = f" ({kind})" if isinstance(kind, str) and _ERROR_KIND.fullmatch(kind) else ""
        if self.started:
            return UpstreamStreamBroken(f"The provider reported an error mid-stream{label}.")
        if status is not None and 400 <= status < 600:
            body = redact(json.dumps(payload)[:BODY_EXCERPT], self._secret)
            return UpstreamHTTPError(status, None, body)
        return UpstreamProtocolError(f"The provider reported an error{label}.")


@asynccontextmanager
async def open_stream(
    *,
    url: str,
    headers: Mapping[str, str],
    body: Mapping[str, Any],
    timeout_seconds: float,
    secret: str,
) -> AsyncIterator[EventStream]:
    """POST ``body`` as JSON, expecting an event stream; yield its ``EventStream`` once the
    status is 2xx (else raise ``UpstreamHTTPError``). The response is closed on leaving."""
    async with AsyncExitStack() as stack:
        try:
            response = await stack.enter_async_context(
                http.client().stream(
                    "POST",
                    url,
                    json=body,
                    headers=dict(headers),
                    timeout=httpx.Timeout(timeout_seconds),
                )
            )
        except httpx.TimeoutException:
            raise UpstreamTimeout(f"No answer within {timeout_seconds:g} s.") from None
        except httpx.TransportError as exc:
            raise UpstreamConnectionError(_transport(exc)) from None
        if response.status_code >= 300:
            raise UpstreamHTTPError(
                response.status_code,
                parse_retry_after(response.headers.get("retry-after")),
                redact(await _excerpt(response), secret),
            )
        yield EventStream(response, timeout_seconds=timeout_seconds, secret=secret)


async def _excerpt(response: httpx.Response) -> str:
    """Up to ``BODY_EXCERPT`` characters of an error body (what arrived, if it then broke)."""
    text = ""
    try:
        async for piece in response.aiter_text():
            text += piece
            if len(text) >= BODY_EXCERPT:
                break
    except (httpx.TransportError, httpx.DecodingError):
        pass
    return text[:BODY_EXCERPT]
