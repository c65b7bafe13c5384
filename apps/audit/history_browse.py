"""The full history of any object, field by field, from django-simple-history.

``object_type`` is ``app_label.model`` (the ``AuditEvent.object_type`` spelling, such as
``catalog.product``); every model registered with simple-history (``apps.core.history``) can be
browsed, even after the object was deleted (its historical rows remain). Each version says who
(``history_username``, kept when the user is gone), when, what kind of change (``+`` created,
``~`` changed, ``-`` deleted) and, field by field, the old and the new value — simple-history's
``diff_against`` over the editable tracked fields, so the fields a model excludes from its
history (a provider's ``secret_encrypted``, an API key's ``key_hash``, a user's ``password``)
never appear. Fields that hold secret material but are tracked (a personal token's
``token_hash``) show as "(redacted)", never their value.

One query reads all the versions of the object (capped at ``MAX_VERSIONS``, newest kept);
foreign keys show as the related object's id, with no further query.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.apps import apps
from django.core.exceptions import ValidationError
from django.db.models import Model

from apps.core.hashing import to_jsonable

MAX_VERSIONS = 1000
REDACTED = "(redacted)"
SECRET_FIELDS = frozenset(
    {"password", "token_hash", "key_hash", "secret", "secret_encrypted", "api_key"}
)
TYPES = {"+": "created", "~": "changed", "-": "deleted"}


class UnknownObjectType(LookupError):
    """Not a model, or a model without history."""


@dataclass(frozen=True)
class FieldChange:
    field: str
    label: str
    old: Any
    new: Any

    @property
    def old_text(self) -> str:
        return display(self.old)

    @property
    def new_text(self) -> str:
        return display(self.new)


@dataclass(frozen=True)
class Version:
    history_id: Any
    at: datetime
    who: str
    type: str  # "+", "~" or "-"
    reason: str
    changes: list[FieldChange] = field(default_factory=list)

    @property
    def type_label(self) -> str:
        return TYPES.get(self.type, self.type)


@dataclass(frozen=True)
class ObjectHistory:
    object_type: str
    object_id: str
    verbose_name: str
    title: str  # the object's string at its newest version
    exists: bool  # False once the object is deleted
    versions: list[Version]  # newest first
    truncated: bool


def display(value: Any) -> str:
    """A value as a person reads it in the history (JSON for structures, "—" for nothing)."""
    if value is None or value == "":
        return "—"
    if isinstance(value, dict | list):
        return json.dumps(to_jsonable(value), indent=2, ensure_ascii=False, sort_keys=True)
    return str(to_jsonable(value))


def history_model_for(object_type: str) -> type[Model]:
    """The model named ``app_label.model``, when it keeps a history; UnknownObjectType else."""
    app_label, _, model_name = object_type.strip().partition(".")
    if not app_label or not model_name:
        raise UnknownObjectType(object_type)
    try:
        model = apps.get_model(app_label, model_name)
    except LookupError:
        raise UnknownObjectType(object_type) from None
    manager = getattr(model._meta, "simple_history_manager_attribute", None)
    if manager is None or model._meta.label_lower != object_type.strip().lower():
        raise UnknownObjectType(object_type)
    return model


def is_browsable(object_type: str) -> bool:
    try:
        history_model_for(object_type)
    except UnknownObjectType:
        return False
    return True


def _safe(name: str, value: Any) -> Any:
    return REDACTED if name in SECRET_FIELDS and value not in (None, "") else value


def _tracked(record) -> list:
    return [f for f in record.tracked_fields if f.editable]


def _label(model: type[Model], name: str) -> str:
    try:
        return str(model._meta.get_field(name).verbose_name)
    except Exception:
        return name


def _title(record) -> str:
    try:
        return str(record.instance)
    except Exception:
        return str(record.instance.pk)


def object_history(*, object_type: str, object_id: str) -> ObjectHistory | None:
    """The versions of one object, newest first; None when it has none (never existed).

    Raises UnknownObjectType for a type that is not a model with history.
    """
    model = history_model_for(object_type)
    pk_field = model._meta.pk
    try:
        pk = pk_field.to_python(object_id)
    except (ValidationError, ValueError, TypeError):
        return None
    manager = getattr(model, model._meta.simple_history_manager_attribute)
    records = list(
        manager.model.objects.filter(**{pk_field.attname: pk}).order_by(
            "-history_date", "-history_id"
        )[: MAX_VERSIONS + 1]
    )
    if not records:
        return None
    truncated = len(records) > MAX_VERSIONS
    records = records[:MAX_VERSIONS]
    records.reverse()  # oldest first, to diff each against the one before it

    versions: list[Version] = []
    previous = None
    for record in records:
        changes: list[FieldChange] = []
        if previous is not None and record.history_type == "~":
            delta = record.diff_against(previous)
            changes = [
                FieldChange(
                    change.field,
                    _label(model, change.field),
                    _safe(change.field, change.old),
                    _safe(change.field, change.new),
                )
                for change in delta.changes
            ]
        elif record.history_type in ("+", "~"):  # created (or the first version we keep)
            changes = [
                FieldChange(
                    f.name, str(f.verbose_name), None, _safe(f.name, getattr(record, f.attname))
                )
                for f in _tracked(record)
                if f is not pk_field and f.name != pk_field.name
            ]
        versions.append(
            Version(
                history_id=record.history_id,
                at=record.history_date,
                who=getattr(record, "history_username", "") or "system",
                type=record.history_type,
                reason=record.history_change_reason or "",
                changes=changes,
            )
        )
        previous = record
    newest = records[-1]
    alive = next((r for r in reversed(records) if r.history_type != "-"), newest)
    versions.reverse()
    return ObjectHistory(
        object_type=model._meta.label_lower,
        object_id=str(pk),
        verbose_name=str(model._meta.verbose_name),
        title=_title(alive),
        exists=newest.history_type != "-",
        versions=versions,
        truncated=truncated,
    )
