"""Shared REST plumbing: pagination and the one error shape ``{"code", "message", "fields"}``."""

import uuid
from collections.abc import Callable
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Model, ProtectedError, QuerySet
from django.http import Http404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, filters, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .exceptions import ApplicationError


class Pagination(PageNumberPagination):
    page_size = 25
    page_size_query_param = "page_size"
    max_page_size = 200


def _join(path: str, sub: str) -> str:
    return f"{path}{sub}" if sub.startswith("[") else f"{path}.{sub}"


def _flatten(detail: Any) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for key, value in detail.items():
            # DRF's ListField/DictField report item errors keyed by index: ``messages[0].role``.
            name = f"[{key}]" if isinstance(key, int) else str(key)
            if isinstance(value, dict):
                for sub, msgs in _flatten(value).items():
                    out[_join(name, sub)] = msgs
            elif isinstance(value, list) and value and isinstance(value[0], dict):
                for i, item in enumerate(value):
                    for sub, msgs in _flatten(item).items():
                        out[_join(f"{name}[{i}]", sub)] = msgs
            else:
                out[name] = [str(v) for v in (value if isinstance(value, list) else [value])]
        return out
    if isinstance(detail, list):
        return {"non_field_errors": [str(v) for v in detail]}
    return {"non_field_errors": [str(detail)]}


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    return {"code": code, "message": message, "fields": fields or {}}


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, ApplicationError):
        fields = {k: v if isinstance(v, list) else [str(v)] for k, v in exc.extra.items()}
        return Response(error_body(exc.code, exc.message, fields), status=exc.status)
    if isinstance(exc, DjangoValidationError):
        fields = _flatten(exc.message_dict) if hasattr(exc, "error_dict") else {}
        message = "; ".join(exc.messages) or "Invalid input."
        return Response(error_body("invalid", message, fields), status=400)
    if isinstance(exc, ProtectedError):
        return Response(
            error_body(
                "protected",
                "This object is referenced by others and cannot be deleted; deprecate it instead.",
            ),
            status=409,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        first = next(iter(fields.items()), None)
        message = f"{first[0]}: {first[1][0]}" if first else "Invalid input."
        if first and first[0] == "non_field_errors":
            message = first[1][0]
        response.data = error_body("invalid", message, fields)
        response.status_code = status.HTTP_400_BAD_REQUEST
    elif isinstance(exc, exceptions.APIException):
        detail = exc.detail
        code = exc.get_codes() if not isinstance(exc.get_codes(), dict | list) else exc.default_code
        response.data = error_body(str(code), str(detail))
    return response


# --- Helpers for the API modules of the domain apps ------------------------------------------


class ErrorSerializer(serializers.Serializer):
    """The one error shape, for the OpenAPI schema."""

    code = serializers.CharField(help_text="A stable machine name, such as `immutable`.")
    message = serializers.CharField(help_text="A sentence a person can act on.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Per-field messages, keyed by field path.",
    )


_ERROR_DESCRIPTIONS = {
    400: "Invalid input.",
    401: "Not authenticated, or the token is invalid, expired or revoked.",
    403: "Authenticated, but the role does not allow this.",
    404: "No such object, or it is outside the user's scope.",
    405: "The method is not offered here.",
    409: "Conflicts with the object's state (immutable, referenced, invalid transition).",
}


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """``@extend_schema(responses={...})`` entries documenting the error shape."""
    return {
        code: OpenApiResponse(ErrorSerializer, description=_ERROR_DESCRIPTIONS.get(code, ""))
        for code in statuses
    }


class ScopedPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """A related object looked up among what the requesting user may see.

    ``selector`` is a ``*_list_for(user=...)`` function; an object outside the user's scope
    reads as "does not exist", like a 404. ``model`` only types the field for the schema.
    """

    def __init__(self, *, model: type[Model], selector: Callable[..., QuerySet], **kwargs):
        self.selector = selector
        if not kwargs.get("read_only"):
            kwargs["queryset"] = model._default_manager.all()
        super().__init__(**kwargs)

    def get_queryset(self) -> QuerySet:
        request = self.context.get("request")
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return self.queryset.none()
        return self.selector(user=user)

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, str | uuid.UUID):
            self.fail("incorrect_type", data_type=type(data).__name__)
        try:
            uuid.UUID(str(data))
        except ValueError:
            self.fail("does_not_exist", pk_value=data)
        return super().to_internal_value(data)


def _check_json(value: Any, path: str = "") -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise serializers.ValidationError(f"{path or 'value'}: text cannot contain NUL.")
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in str(key):
                raise serializers.ValidationError("Keys cannot contain NUL.")
            _check_json(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{path}[{i}]")


class JSONObjectField(serializers.DictField):
    """A JSON object of any content that every database can store (no NUL characters)."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        _check_json(value)
        return value


class SearchFilter(filters.SearchFilter):
    """DRF's search, with the searched fields named in the schema."""

    def get_schema_operation_parameters(self, view):
        params = super().get_schema_operation_parameters(view)
        fields = getattr(view, "search_fields", None)
        if fields:
            names = ", ".join(f.lstrip("^=@$").replace("__", ".") for f in fields)
            for param in params:
                param["description"] = f"Case-insensitive search in: {names}."
        return params


class OrderingFilter(filters.OrderingFilter):
    """DRF's ordering, with the whitelisted fields named in the schema."""

    def get_schema_operation_parameters(self, view):
        params = super().get_schema_operation_parameters(view)
        fields = getattr(view, "ordering_fields", None)
        if isinstance(fields, list | tuple):
            for param in params:
                param["description"] = (
                    f"Order by {', '.join(fields)}; prefix a field with `-` for descending order, "
                    "separate several with commas. Other names are ignored."
                )
        return params


FILTER_BACKENDS = [DjangoFilterBackend, SearchFilter, OrderingFilter]
