"""The one shared pool of HTTP connections to providers, and the errors a provider call raises.

An ``httpx.AsyncClient`` is bound to the event loop that first used it, so the pool is one client
per running loop: under the ASGI server that is one client for the whole process; a sync caller
(``pipeline.call_chat_sync``) runs in a short-lived loop of its own and closes that loop's client
when it is done (``aclose``). Every provider adapter takes its client from ``client()``; none
makes its own.

Per-request timeouts are passed by the caller; the client's own (``DEFAULT_TIMEOUT``) is only a
backstop. Nothing here logs request headers (they carry the provider's secret).
"""

import asyncio
import weakref

import httpx

# A generous pool: many concurrent calls share keep-alive connections per provider host.
DEFAULT_TIMEOUT = httpx.Timeout(600)
LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=30)

_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]" = (
    weakref.WeakKeyDictionary()
)


def client() -> httpx.AsyncClient:
    """The shared client of the running event loop (made on first use)."""
    loop = asyncio.get_running_loop()
    found = _clients.get(loop)
    if found is None or found.is_closed:
        found = httpx.AsyncClient(limits=LIMITS, timeout=DEFAULT_TIMEOUT, follow_redirects=False)
        _clients[loop] = found
    return found


async def aclose() -> None:
    """Close the running loop's client, if it has one, and the lean client's idle connections
    (``http11``) (before that loop itself ends)."""
    found = _clients.pop(asyncio.get_running_loop(), None)
    try:
        if found is not None:
            await found.aclose()
    finally:
        from . import http11  # the lean client's pool of the same loop (it imports this module)

        await http11.aclose()


class UpstreamError(Exception):
    """A provider call that failed. ``retryable`` says whether trying again may help."""

    retryable = False
    status_code: int | None = None

    @property
    def error_class(self) -> str:
        return type(self).__name__


class UpstreamTimeout(UpstreamError):
    retryable = True


class UpstreamConnectionError(UpstreamError):
    retryable = True


class UpstreamHTTPError(UpstreamError):
    """The provider answered with a non-2xx status: 429 and 5xx are retryable, 4xx never."""

    def __init__(self, status: int, retry_after: float | None = None, body: str = "") -> None:
        super().__init__(f"The provider answered HTTP {status}.")
        self.status_code = status
        self.retry_after = retry_after
        self.body = body

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.status_code == 429 or self.status_code >= 500


class UpstreamProtocolError(UpstreamError):
    """A 2xx answer that is not a chat completion (not JSON, or not an object)."""


class UpstreamStreamBroken(UpstreamError):
    """A streamed answer that started and then broke: the connection dropped or went silent, an
    event was malformed or reported an error, or the stream ended without its terminating event.

    Not retryable: part of the answer has already been passed on to the caller.
    """

    retryable = False
