"""Gateway errors, always in OpenAI's shape: ``{"error": {"message", "type", "code", "param"}}``."""

from __future__ import annotations

import json
from collections.abc import Sequence

Header = tuple[bytes, bytes]

INVALID_REQUEST = "invalid_request_error"


class GatewayError(Exception):
    """A refusal with its HTTP status, OpenAI error ``type`` and ``code``, and extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        code: str | None = None,
        param: str | None = None,
        headers: Sequence[Header] = (),
        outcome: str = "rejected",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = list(headers)
        self.outcome = outcome

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.code, self.param)


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": type_, "code": code, "param": param}}
    ).encode()


def unauthorized(message: str, code: str = "invalid_api_key") -> GatewayError:
    return GatewayError(
        401, message, code=code, headers=[(b"www-authenticate", b'Bearer realm="plm-portal"')]
    )


def bad_request(message: str, *, param: str | None = None, code: str = "invalid_request"):
    return GatewayError(400, message, code=code, param=param)


def not_found(message: str, *, code: str = "model_not_found", param: str | None = "model"):
    return GatewayError(404, message, code=code, param=param)
