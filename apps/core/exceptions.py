"""The one domain error. Services raise it; the API and pages turn it into a response."""

from typing import Any


class ApplicationError(Exception):
    """A refusal a person can act on.

    ``code`` is a stable machine name (``immutable``, ``invalid_transition``...), ``message`` a
    sentence for people, ``extra`` per-field messages (``{"field": ["why"]}``), ``status`` the
    HTTP status the API answers with.
    """

    status = 400

    def __init__(
        self,
        code: str,
        message: str,
        extra: dict[str, Any] | None = None,
        *,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra or {}
        if status is not None:
            self.status = status


class Conflict(ApplicationError):
    status = 409


class Forbidden(ApplicationError):
    status = 403


class NotFound(ApplicationError):
    status = 404
