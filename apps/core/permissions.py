"""Every django-guardian grant and removal goes through here; callers audit them."""

from collections.abc import Iterable

from django.contrib.auth.models import Group
from django.db.models import Model
from guardian.shortcuts import assign_perm, remove_perm


def perm_name(model: type[Model] | Model, verb: str) -> str:
    meta = model._meta
    return f"{meta.app_label}.{verb}_{meta.model_name}"


def grant_to_group(*, group: Group, perms: Iterable[str], obj: Model) -> list[str]:
    granted = []
    for perm in perms:
        assign_perm(perm, group, obj)
        granted.append(perm)
    return granted


def remove_from_group(*, group: Group, perms: Iterable[str], obj: Model) -> list[str]:
    removed = []
    for perm in perms:
        remove_perm(perm, group, obj)
        removed.append(perm)
    return removed
