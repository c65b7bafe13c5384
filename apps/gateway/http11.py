"""A lean keep-alive HTTP/1.1 client for one thing: the non-streaming JSON POST of a provider
call to a plain ``http://`` upstream (a local vLLM, Ollama or llama.cpp; the test and bench
upstreams).

httpx costs about a millisecond of CPU per call, most of what the gateway adds in front of a
local upstream; this costs a tenth of that. It is used by ``providers.sse.post_json`` only,
when ``enabled()`` (by default: while the subscribers' gateway serves a request); ``https://``
URLs, URLs it does not handle (``target`` says None) and every streaming call keep using the
shared httpx client (``gateway.http``): over the WAN a millisecond does not matter.

The pool is one per running event loop (as ``gateway.http``'s client is): idle connections per
(host, port), at most ``MAX_IDLE_PER_HOST`` each, closed once idle ``IDLE_EXPIRY_SECONDS``; a
connection is taken most-recently-used first and checked on the way out (one the server has
closed is dropped). ``aclose`` closes the running loop's pool (``http.aclose`` calls it, so the
short-lived loops of sync callers close their sockets). There is no cap on open connections:
each call in flight has its own.

The retry: POST is not idempotent, so a request is never sent twice, but for one case. A
kept-alive connection the server closed while it sat idle (its keep-alive timeout, a restart)
shows only once it is used: the write fails, or the read finds the end of the stream before
any byte of a response. When that happens on a *reused* connection and not one byte of a
response was read, the request is sent once more on a fresh connection; a fresh connection
that fails is never retried (the pipeline's own retries apply). The server may, in that one
case, have read the request before it closed the connection without answering (a crash
mid-request): the same risk every keep-alive client takes, and the price of not failing calls
on connections that went stale.

Failures raise what ``sse.post_json`` raises for httpx's, with the same messages: the whole
call (connect, write, read) not done within ``timeout_seconds`` → ``UpstreamTimeout``; a
connection that could not be made, or broke, or an answer that is not HTTP →
``UpstreamConnectionError`` (``"<httpx's exception name> talking to the provider."``). The
status, headers and body are returned to ``post_json``, which maps them as it does httpx's.

The response is parsed with httptools (installed with ``uvicorn[standard]``), else h11 (which
httpx itself depends on). Nothing here logs or puts a header into a message (they carry the
provider's secret).
"""

import asyncio
import codecs
import contextlib
import contextvars
import functools
import re
import socket
import weakref
import zlib
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

from .http import UpstreamConnectionError, UpstreamProtocolError, UpstreamTimeout

try:
    import httptools
except ImportError:  # pragma: no cover - the fallback is tested by forcing it
    httptools = None
import h11

# Set while the subscribers' gateway (``portal.gateway.app``) serves a request: the default
# setting uses this client there only (see ``enabled``).
in_gateway: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "http11_in_gateway", default=False
)

MAX_IDLE_PER_HOST = 50
IDLE_EXPIRY_SECONDS = 30.0
READ_SIZE = 64 * 1024
USER_AGENT = "plm-portal-gateway"

_TARGET_OK = re.compile(r"[!#-~]*")  # printable ASCII, no space (a request-target as is)
_HEADER_OK = re.compile(r"[\t -~]*")  # printable ASCII and tab: no CR, LF or NUL
_CHARSET = re.compile(r"""charset\s*=\s*["']?([\w.:-]+)""", re.IGNORECASE)


class Target(NamedTuple):
    host: str
    port: int
    host_header: str
    path: str  # the request-target: path and query


class Response(NamedTuple):
    status: int
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    content: bytes

    def text(self) -> str:
        """The body decoded as httpx would: the Content-Type charset, else UTF-8."""
        encoding = "utf-8"
        found = _CHARSET.search(self.headers.get("content-type", ""))
        if found:
            with contextlib.suppress(LookupError):
                encoding = codecs.lookup(found.group(1)).name
        return self.content.decode(encoding, errors="replace")


def enabled() -> bool:
    """Whether a provider call made now uses this client (for a URL it takes).

    ``settings.GATEWAY_LEAN_HTTP``: ``gateway`` (the default) — in the subscribers' gateway
    only, where a millisecond is most of what it adds; ``1``/``all`` — everywhere; ``0`` —
    nowhere. Celery workers keep httpx by default: with the lean client, an evaluation run
    whose prefork pool process was killed mid-chunk did not finish (not understood yet)."""
    from django.conf import settings

    value = getattr(settings, "GATEWAY_LEAN_HTTP", "gateway")
    if isinstance(value, bool):
        return value
    value = str(value).strip().lower()
    if value in ("1", "true", "yes", "on", "all"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    return in_gateway.get()


@functools.lru_cache(maxsize=256)
def target(url: str) -> Target | None:
    """Where a plain ``http://`` URL points, or None when this client does not take it
    (another scheme, credentials in the URL, a path that would need escaping)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() != "http" or not parts.hostname or "@" in parts.netloc:
        return None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not _TARGET_OK.fullmatch(path) or not path.startswith("/"):
        return None
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port in (None, 80) else f"{shown}:{port}"
    return Target(host, port or 80, host_header, path)


# ---- the pool ---------------------------------------------------------------------------------


@dataclass(eq=False)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def usable(self) -> bool:
        return not (
            self.writer.is_closing() or self.reader.at_eof() or self.reader.exception() is not None
        )

    def close(self) -> None:
        self.writer.close()


class _Pool:
    def __init__(self) -> None:
        self.idle: dict[tuple[str, int], deque[_Connection]] = {}

    def take(self, key: tuple[str, int], now: float) -> _Connection | None:
        idle = self.idle.get(key)
        while idle:
            found = idle.pop()  # the most recently used: the least likely to have gone stale
            if now - found.idle_since < IDLE_EXPIRY_SECONDS and found.usable():
                return found
            found.close()
        return None

    def give(self, key: tuple[str, int], connection: _Connection, now: float) -> None:
        idle = self.idle.setdefault(key, deque())
        while idle and now - idle[0].idle_since >= IDLE_EXPIRY_SECONDS:
            idle.popleft().close()
        if len(idle) >= MAX_IDLE_PER_HOST:
            connection.close()
            return
        connection.idle_since = now
        idle.append(connection)

    def connections(self) -> list[_Connection]:
        return [c for idle in self.idle.values() for c in idle]


_pools: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pool]" = weakref.WeakKeyDictionary()


def _pool(loop: asyncio.AbstractEventLoop) -> _Pool:
    found = _pools.get(loop)
    if found is None:
        found = _pools[loop] = _Pool()
    return found


async def aclose() -> None:
    """Close the running loop's idle connections (before that loop itself ends)."""
    found = _pools.pop(asyncio.get_running_loop(), None)
    if found is None:
        return
    connections = found.connections()
    found.idle.clear()
    for connection in connections:
        connection.close()
    if connections:
        try:
            async with asyncio.timeout(1):
                await asyncio.gather(
                    *(c.writer.wait_closed() for c in connections), return_exceptions=True
                )
        except TimeoutError:
            pass


# ---- one exchange -----------------------------------------------------------------------------


class _Failed(Exception):
    """The exchange failed; ``label`` names it as httpx would; ``silent``: not one byte of a
    response was read (the request may be retried on a fresh connection, if this one was
    reused)."""

    def __init__(self, label: str, silent: bool) -> None:
        super().__init__(label)
        self.label = label
        self.silent = silent


class _Malformed(Exception):
    pass


def _add(headers: dict[str, str], name: bytes, value: bytes) -> None:
    key, text = name.decode("latin-1").lower(), value.decode("latin-1")
    headers[key] = f"{headers[key]}, {text}" if key in headers else text


class _HttptoolsParser:
    """Response bytes in; ``done`` once a whole (final, non-1xx) response was read."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.headers_done = False
        self.done = False
        self.keep_alive = False

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        _add(self.headers, name, value)

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.done:
            self.keep_alive = False  # more than one answer to one request
        elif 100 <= self.status < 200:  # an interim answer (100 Continue): the real one follows
            self.headers, self.body, self.headers_done = {}, [], False
        else:
            self.done = True
            self.keep_alive = self._parser.should_keep_alive()

    def feed(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            if not self.done:
                raise _Malformed from None
            self.keep_alive = False  # bytes after the answer: the connection is not reusable

    def eof(self) -> None:
        """The server closed the connection: the answer ends here if it is read to the end."""
        if self.done:
            return
        delimited = "content-length" in self.headers or "transfer-encoding" in self.headers
        if self.headers_done and not delimited and self.status not in (204, 304):
            self.done, self.keep_alive = True, False
            return
        raise _Malformed


class _H11Parser:
    """The same, with h11 (when httptools is missing)."""

    def __init__(self) -> None:
        self._conn = h11.Connection(h11.CLIENT)
        # h11 parses an answer only to a request it saw sent: tell it one (the bytes it makes
        # are dropped; ours were written already).
        self._conn.send(h11.Request(method="POST", target="/", headers=[("Host", "x")]))
        self._conn.send(h11.EndOfMessage())
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.headers_done = False
        self.done = False
        self.keep_alive = False

    def _drain(self) -> None:
        while not self.done:
            event = self._conn.next_event()
            if event is h11.NEED_DATA:
                return
            if isinstance(event, h11.Response):
                self.status = event.status_code
                for name, value in event.headers:
                    key, text = name.decode("latin-1"), value.decode("latin-1")
                    self.headers[key] = (
                        f"{self.headers[key]}, {text}" if key in self.headers else text
                    )
                self.headers_done = True
            elif isinstance(event, h11.Data):
                self.body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self.done = True
                self.keep_alive = self._conn.their_state is h11.DONE and (
                    self._conn.our_state is h11.DONE
                )
            elif event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                raise _Malformed
            # h11.InformationalResponse: skipped, the real answer follows

    def feed(self, data: bytes) -> None:
        try:
            self._conn.receive_data(data)
            self._drain()
        except h11.ProtocolError:
            raise _Malformed from None

    def eof(self) -> None:
        if self.done:
            return
        try:
            self._conn.receive_data(b"")
            self._drain()
        except h11.ProtocolError:
            raise _Malformed from None
        if not self.done:
            raise _Malformed


def _parser() -> _HttptoolsParser | _H11Parser:
    return _HttptoolsParser() if httptools is not None else _H11Parser()


def _decoded(parser: _HttptoolsParser | _H11Parser) -> bytes:
    content = b"".join(parser.body)
    coding = parser.headers.get("content-encoding", "").strip().lower()
    if coding in ("", "identity"):
        return content
    # Nothing asked for it (no Accept-Encoding is sent), but decode what httpx would.
    try:
        if coding in ("gzip", "x-gzip"):
            return zlib.decompress(content, zlib.MAX_WBITS | 16)
        if coding == "deflate":
            try:
                return zlib.decompress(content)
            except zlib.error:
                return zlib.decompress(content, -zlib.MAX_WBITS)
    except zlib.error:
        pass
    raise UpstreamProtocolError("The provider's answer could not be decoded.")


async def _exchange(connection: _Connection, request: bytes) -> tuple[Response, bool]:
    """Send ``request`` and read the whole answer: (the answer, whether the connection may be
    kept), or raise ``_Failed``."""
    try:
        connection.writer.write(request)
        await connection.writer.drain()
    except (OSError, RuntimeError):
        raise _Failed("WriteError", silent=True) from None
    parser = _parser()
    received = 0
    reader = connection.reader
    while not parser.done:
        try:
            data = await reader.read(READ_SIZE)
        except OSError:
            raise _Failed("ReadError", silent=not received) from None
        try:
            if not data:
                if not received:
                    raise _Failed("RemoteProtocolError", silent=True)
                parser.eof()
                break
            received += len(data)
            parser.feed(data)
        except _Malformed:
            raise _Failed("RemoteProtocolError", silent=False) from None
    answer = Response(parser.status, parser.headers, _decoded(parser))
    return answer, parser.keep_alive and "close" not in parser.headers.get("connection", "")


async def _connect(host: str, port: int) -> _Connection:
    try:
        reader, writer = await asyncio.open_connection(host, port, limit=READ_SIZE)
    except OSError:
        raise _Failed("ConnectError", silent=False) from None
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return _Connection(reader, writer)


def _request(to: Target, headers: dict[str, str], content: bytes) -> bytes:
    lines = [f"POST {to.path} HTTP/1.1", f"Host: {to.host_header}"]
    given = set()
    for name, value in headers.items():
        lower = name.lower()
        if lower in ("host", "content-length", "content-type", "transfer-encoding", "connection"):
            continue
        if not _HEADER_OK.fullmatch(value) or not _TARGET_OK.fullmatch(name) or ":" in name:
            # as httpx's LocalProtocolError; the value is never put into a message
            raise UpstreamConnectionError("LocalProtocolError talking to the provider.")
        given.add(lower)
        lines.append(f"{name}: {value}")
    if "accept" not in given:
        lines.append("Accept: */*")
    if "user-agent" not in given:
        lines.append(f"User-Agent: {USER_AGENT}")
    lines.append("Content-Type: application/json")
    lines.append(f"Content-Length: {len(content)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + content


async def post(
    to: Target, headers: dict[str, str], content: bytes, timeout_seconds: float
) -> Response:
    """POST ``content`` (JSON) to ``to`` and return the whole answer, or raise
    ``UpstreamTimeout`` / ``UpstreamConnectionError``."""
    request = _request(to, headers, content)
    loop = asyncio.get_running_loop()
    pool = _pool(loop)
    key = (to.host, to.port)
    connection: _Connection | None = None
    try:
        async with asyncio.timeout(timeout_seconds):
            connection = pool.take(key, loop.time())
            reused = connection is not None
            if connection is None:
                connection = await _connect(to.host, to.port)
            try:
                answer, keep = await _exchange(connection, request)
            except _Failed as failed:
                connection.close()
                connection = None
                if not (reused and failed.silent):
                    raise
                # A stale kept-alive connection, and no byte of an answer: once, on a fresh one.
                connection = await _connect(to.host, to.port)
                answer, keep = await _exchange(connection, request)
    except TimeoutError:
        if connection is not None:
            connection.close()
        raise UpstreamTimeout(f"No answer within {timeout_seconds:g} s.") from None
    except _Failed as failed:
        if connection is not None:
            connection.close()
        raise UpstreamConnectionError(f"{failed.label} talking to the provider.") from None
    except BaseException:  # cancelled: the connection is mid-exchange, never reusable
        if connection is not None:
            connection.close()
        raise
    if keep:
        pool.give(key, connection, loop.time())
    else:
        connection.close()
    return answer
