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


def invalid(field: str, message: str) -> ApplicationError:
    """A 400 about one field: ``"field: message"``, and the message under ``extra[field]``."""
    return ApplicationError("invalid", f"{field}: {message}", {field: [message]})


def clean_text(value: Any, field: str, *, required: bool = False, limit: int = 20_000) -> str:
    """Free text from a person: stripped, at most ``limit`` characters, no NUL (PostgreSQL
    refuses it); empty is refused when ``required``."""
    text = str(value or "").strip()
    if required and not text:
        raise invalid(field, "This field is required.")
    if len(text) > limit:
        raise invalid(field, f"at most {limit} characters.")
    if "\x00" in text:
        raise invalid(field, "text cannot contain NUL.")
    return text
