"""What changes between two releases: prompt lines, model fields, datasets, settings."""

from typing import Any

from apps.catalog.prompting import line_diff

from .models import Release


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def dict_changes(old: dict | None, new: dict | None) -> list[dict]:
    """``[{"key", "from", "to"}]`` for every leaf that differs (dotted keys)."""
    a, b = _flatten(old or {}), _flatten(new or {})
    a.pop("", None)
    b.pop("", None)
    return [
        {"key": key, "from": a.get(key), "to": b.get(key)}
        for key in sorted(set(a) | set(b))
        if a.get(key) != b.get(key)
    ]


def _datasets(release: Release | None) -> dict[str, str]:
    if release is None:
        return {}
    return {
        str(link.dataset_version_id): str(link.dataset_version)
        for link in release.dataset_links.all()
    }


def release_diff(baseline: Release | None, proposed: Release) -> dict:
    old_pv = baseline.prompt_version if baseline else None
    new_pv = proposed.prompt_version
    old_mv = baseline.model_version if baseline else None
    new_mv = proposed.model_version
    prompt_lines = line_diff(
        old_pv.messages if old_pv else [],
        new_pv.messages,
        str(old_pv) if old_pv else "(none)",
        str(new_pv),
    )
    model_fields = []
    if old_mv is None or old_mv.pk != new_mv.pk:
        for field in ("provider", "provider_model", "base_model"):
            before = getattr(old_mv, field) if old_mv else None
            after = getattr(new_mv, field)
            if before != after:
                model_fields.append({"key": field, "from": before, "to": after})
        model_fields += [
            {**c, "key": f"parameters.{c['key']}"}
            for c in dict_changes(old_mv.parameters if old_mv else {}, new_mv.parameters)
        ]
    prompt_params = dict_changes(old_pv.parameters if old_pv else {}, new_pv.parameters)
    old_ds, new_ds = _datasets(baseline), _datasets(proposed)
    return {
        "prompt": {
            "changed": old_pv is None or old_pv.pk != new_pv.pk,
            "from": str(old_pv) if old_pv else None,
            "to": str(new_pv),
            "lines": prompt_lines,
            "parameters": prompt_params,
        },
        "model": {
            "changed": old_mv is None or old_mv.pk != new_mv.pk,
            "from": str(old_mv) if old_mv else None,
            "to": str(new_mv),
            "fields": model_fields,
        },
        "datasets": {
            "added": sorted(v for k, v in new_ds.items() if k not in old_ds),
            "removed": sorted(v for k, v in old_ds.items() if k not in new_ds),
            "unchanged": sorted(v for k, v in new_ds.items() if k in old_ds),
        },
        "settings": dict_changes(baseline.settings if baseline else {}, proposed.settings),
    }


def change_kind(baseline: Release | None, diff: dict) -> str:
    if baseline is None:
        return "initial_release"
    parts = [
        name
        for name, changed in (
            ("prompt_change", diff["prompt"]["changed"]),
            ("model_change", diff["model"]["changed"]),
            ("dataset_change", bool(diff["datasets"]["added"] or diff["datasets"]["removed"])),
            ("settings_change", bool(diff["settings"])),
        )
        if changed
    ]
    if not parts:
        return "no_change"
    return parts[0] if len(parts) == 1 else "combined"
