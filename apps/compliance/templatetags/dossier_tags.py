"""Template filters of the dossier page."""

import json

from django import template

from apps.core.hashing import to_jsonable

register = template.Library()


@register.filter
def dossier_json(value) -> str:
    """A value as the dossier's files show it: indented JSON (``—`` when empty)."""
    if value in (None, "", {}, []):
        return "—"
    return json.dumps(to_jsonable(value), indent=2, sort_keys=True, ensure_ascii=False)


@register.filter
def dossier_get(mapping, key):
    """``mapping[key]`` (for keys such as ``from`` and ``to``), or None."""
    try:
        return mapping.get(key)
    except AttributeError:
        return None
