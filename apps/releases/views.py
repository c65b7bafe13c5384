"""Release pages: a product's releases, one release's bill of materials, the draft form.

Reads go through the selectors (out of scope is a 404), writes through the services; a service's
refusal is shown on the form.
"""

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from apps.audit.models import AuditEvent
from apps.catalog import selectors as catalog_selectors
from apps.catalog.models import ModelVersion
from apps.core.exceptions import ApplicationError
from apps.core.pages import refuse_or_404

from . import selectors, services
from .diff import change_kind, release_diff
from .forms import FALLBACK_SLOTS, MAX_FALLBACK_SLOTS, ReleaseForm, release_initial
from .models import Release, ReleaseStatus

PAGE_SIZE = 25
EVENT_LIMIT = 50


# --- helpers (read-only) -----------------------------------------------------------------------


def _add_service_error(form, exc: ApplicationError, aliases: dict[str, str]) -> None:
    refuse_or_404(exc)
    for key, errors in exc.extra.items():
        name = aliases.get(key, key)
        if name in form.fields:
            for error in errors if isinstance(errors, list) else [errors]:
                form.add_error(name, str(error))
    form.add_error(None, exc.message)


def _can_change(user, product) -> bool:
    return user.has_perm("catalog.change_product", product)


def _semver_key(version: str) -> tuple[int, int, int] | None:
    if not services.SEMVER.match(version or ""):
        return None
    core = version.split("-", 1)[0].split("+", 1)[0]
    major, minor, patch = (int(part) for part in core.split("."))
    return major, minor, patch


def next_version(versions: list[str]) -> str:
    """A suggestion for a new release: the highest version so far with its minor bumped."""
    keys = [k for k in (_semver_key(v) for v in versions) if k is not None]
    if not keys:
        return "1.0.0"
    major, minor, _ = max(keys)
    return f"{major}.{minor + 1}.0"


def _display(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, dict | list | bool):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def model_version_names(ids) -> dict[str, str]:
    """``{id: "model@v3"}`` for the model versions named in fallback chains (one query)."""
    wanted = {str(i) for i in ids if i}
    if not wanted:
        return {}
    found = ModelVersion.objects.filter(pk__in=wanted).select_related("model")
    return {str(mv.pk): str(mv) for mv in found}


def fallback_chain(release: Release, names: dict[str, str] | None = None) -> list[dict]:
    ids = [str(i) for i in (release.settings or {}).get("fallback") or []]
    names = names if names is not None else model_version_names(ids)
    return [{"id": i, "name": names.get(i, i)} for i in ids]


def _chain_text(ids, names: dict[str, str]) -> str:
    if not ids:
        return "none"
    return " → ".join(names.get(str(i), str(i)) for i in ids)


def release_diff_context(baseline: Release | None, proposed: Release) -> dict:
    """``release_diff`` shaped for ``releases/partials/diff.html``."""
    diff = release_diff(baseline, proposed)
    chains = [proposed.settings.get("fallback") or []]
    if baseline is not None:
        chains.append(baseline.settings.get("fallback") or [])
    names = model_version_names([i for chain in chains for i in chain])
    settings_rows = []
    for change in diff["settings"]:
        if change["key"] == "fallback":
            before, after = _chain_text(change["from"], names), _chain_text(change["to"], names)
        else:
            before, after = _display(change["from"]), _display(change["to"])
        settings_rows.append({"key": change["key"].replace("_", " "), "from": before, "to": after})
    lines = diff["prompt"]["lines"]
    model_rows = [
        {"key": c["key"], "from": _display(c["from"]), "to": _display(c["to"])}
        for c in diff["model"]["fields"]
    ]
    prompt_params = [
        {"key": c["key"], "from": _display(c["from"]), "to": _display(c["to"])}
        for c in diff["prompt"]["parameters"]
    ]
    datasets = diff["datasets"]
    return {
        "baseline": baseline,
        "proposed": proposed,
        "diff": diff,
        "kind": change_kind(baseline, diff),
        "prompt_rows": lines,
        "prompt_params": prompt_params,
        "prompt_added": sum(1 for r in lines if r["op"] == "+"),
        "prompt_removed": sum(1 for r in lines if r["op"] == "-"),
        "model_rows": model_rows,
        "settings_rows": settings_rows,
        "datasets_changed": bool(datasets["added"] or datasets["removed"]),
    }


def _form_choices(user, product, release: Release | None = None) -> dict:
    """The versions a release of ``product`` may be made of: the team's, not deprecated (but
    a draft keeps what it already has)."""
    team = product.owner_team_id
    keep_pv = [release.prompt_version_id] if release else []
    keep_mv = [release.model_version_id] if release else []
    keep_dv = [link.dataset_version_id for link in release.dataset_links.all()] if release else []
    prompt_versions = (
        catalog_selectors.prompt_version_list_for(user=user)
        .filter(prompt__owner_team_id=team)
        .filter(Q(deprecated_at__isnull=True) | Q(pk__in=keep_pv))
        .order_by("prompt__slug", "-version")
    )
    all_model_versions = (
        catalog_selectors.model_version_list_for(user=user)
        .filter(model__owner_team_id=team)
        .prefetch_related(None)
        .order_by("model__slug", "-version")
    )
    dataset_versions = (
        catalog_selectors.dataset_version_list_for(user=user)
        .filter(dataset__owner_team_id=team)
        .filter(Q(deprecated_at__isnull=True) | Q(pk__in=keep_dv))
        .order_by("dataset__slug", "-version")
    )
    return {
        "prompt_versions": prompt_versions,
        "model_versions": all_model_versions.filter(
            Q(deprecated_at__isnull=True) | Q(pk__in=keep_mv)
        ),
        "dataset_versions": dataset_versions,
        "fallback_versions": all_model_versions,
    }


def _slots(release: Release | None) -> int:
    chain = ((release.settings or {}).get("fallback") or []) if release else []
    return max(FALLBACK_SLOTS, min(len(chain), MAX_FALLBACK_SLOTS))


def _product_or_404(request: HttpRequest, pk):
    return get_object_or_404(catalog_selectors.product_list_for(user=request.user), pk=pk)


def _release_or_404(request: HttpRequest, pk) -> Release:
    return get_object_or_404(selectors.release_list_for(user=request.user), pk=pk)


# --- pages -------------------------------------------------------------------------------------


@login_required
def release_list(request, pk):
    """All releases of a product, newest first."""
    product = _product_or_404(request, pk)
    releases = selectors.release_list_for(user=request.user).filter(product=product)
    page = Paginator(releases.order_by("-created_at", "pk"), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "releases/release_list.html",
        {"product": product, "page": page, "can_change": _can_change(request.user, product)},
    )


@login_required
@require_http_methods(["GET", "POST"])
def release_create(request, pk):
    product = _product_or_404(request, pk)
    if not _can_change(request.user, product):
        raise PermissionDenied(f"You may not create releases of {product.slug}.")
    existing = selectors.release_list_for(user=request.user).filter(product=product)
    start = existing.filter(status=ReleaseStatus.RELEASED).first() or existing.first()
    initial = release_initial(start) if start else {}
    initial["version"] = next_version(list(existing.values_list("version", flat=True)))
    form = ReleaseForm(
        request.POST or None,
        initial=initial,
        fallback_slots=_slots(start),
        **_form_choices(request.user, product),
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            release = services.release_create(
                actor=request.user,
                product=product,
                version=data["version"],
                prompt_version=data["prompt_version"],
                model_version=data["model_version"],
                dataset_versions=list(data["dataset_versions"]),
                settings=form.gateway_settings(),
                notes=data["notes"],
            )
        except ApplicationError as exc:
            _add_service_error(form, exc, form.service_aliases())
        except ValidationError as exc:
            form.add_error(None, exc.messages)
        else:
            messages.success(request, f"Draft release {release.version} created.")
            return redirect("release_detail", pk=release.pk)
    return render(
        request,
        "releases/release_form.html",
        {"product": product, "form": form, "start": start, "release": None},
    )


@login_required
@require_http_methods(["GET", "POST"])
def release_edit(request, pk):
    release = _release_or_404(request, pk)
    product = release.product
    if not _can_change(request.user, product):
        raise PermissionDenied(f"You may not change the releases of {product.slug}.")
    if not release.is_editable:
        messages.error(
            request,
            f"Release {release.version} is {release.status}"
            + (" and was submitted for review" if release.frozen_at else "")
            + ": it can no longer be edited; create a new draft instead.",
        )
        return redirect("release_detail", pk=release.pk)
    initial = {**release_initial(release), "version": release.version, "notes": release.notes}
    form = ReleaseForm(
        request.POST or None,
        initial=initial,
        fallback_slots=_slots(release),
        **_form_choices(request.user, product, release),
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            release = services.release_update(
                actor=request.user,
                release=release,
                version=data["version"],
                prompt_version=data["prompt_version"],
                model_version=data["model_version"],
                dataset_versions=list(data["dataset_versions"]),
                settings=form.gateway_settings(),
                notes=data["notes"],
            )
        except ApplicationError as exc:
            _add_service_error(form, exc, form.service_aliases())
        except ValidationError as exc:
            form.add_error(None, exc.messages)
        else:
            messages.success(request, f"Release {release.version} saved.")
            return redirect("release_detail", pk=release.pk)
    return render(
        request,
        "releases/release_form.html",
        {"product": product, "form": form, "start": None, "release": release},
    )


@login_required
def release_detail(request, pk):
    release = _release_or_404(request, pk)
    product = release.product
    can_change = _can_change(request.user, product)
    current = (
        selectors.release_list_for(user=request.user)
        .filter(product=product, status=ReleaseStatus.RELEASED)
        .exclude(pk=release.pk)
        .first()
    )
    comparison = None
    if current is not None and release.status in (ReleaseStatus.DRAFT, ReleaseStatus.CANDIDATE):
        comparison = release_diff_context(current, release)
    events = list(
        AuditEvent.objects.filter(object_id=str(release.pk)).order_by("-seq")[:EVENT_LIMIT]
    )
    settings = release.settings or {}
    cache = settings.get("cache") or {}
    return render(
        request,
        "releases/release_detail.html",
        {
            "release": release,
            "product": product,
            "can_change": can_change,
            "can_edit": can_change and release.is_editable,
            "can_propose": can_change
            and release.status in (ReleaseStatus.DRAFT, ReleaseStatus.CANDIDATE),
            "current": current,
            "comparison": comparison,
            "fallback": fallback_chain(release),
            "cache": cache,
            "settings": settings,
            "events": events,
        },
    )
