"""Every write to releases: create and edit drafts, freeze, release, deprecate, retire."""

import re
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.services import audit_changes, audit_record
from apps.catalog.models import DatasetVersion, ModelVersion, Product, PromptTemplateVersion
from apps.catalog.services import require_writable
from apps.core.exceptions import ApplicationError, Conflict, Forbidden
from apps.core.hashing import content_hash
from apps.core.history import as_actor
from apps.core.models import UNSET as _UNSET

from .models import RELEASE_TRANSITIONS, Release, ReleaseDataset, ReleaseStatus

SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
CACHE_MODES = ("off", "exact")
DEFAULT_SETTINGS: dict[str, Any] = {
    "fallback": [],
    "cache": {"mode": "off", "ttl_seconds": 0},
    "timeout_seconds": 30,
    "max_retries": 2,
    "max_tokens": None,
}


def _invalid(field: str, message: str) -> ApplicationError:
    return ApplicationError("invalid", f"{field}: {message}", {field: [message]})


def _number(value: Any, field: str, *, low: float, high: float, integer: bool = False):
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(field, "must be a number.")
    if integer and not isinstance(value, int):
        raise _invalid(field, "must be a whole number.")
    if not low <= value <= high:
        raise _invalid(field, f"must be between {low:g} and {high:g}.")
    return value


def normalize_settings(
    raw: Any, *, product: Product, primary: ModelVersion
) -> tuple[dict[str, Any], list[ModelVersion]]:
    """Validate gateway settings; returns them with defaults filled in, and the fallback chain."""
    if raw in (None, ""):
        raw = {}
    if not isinstance(raw, dict):
        raise _invalid("settings", "must be an object.")
    unknown = sorted(set(raw) - set(DEFAULT_SETTINGS))
    if unknown:
        raise _invalid(
            "settings", f"unknown keys {', '.join(unknown)}; known: {', '.join(DEFAULT_SETTINGS)}."
        )
    out = {**DEFAULT_SETTINGS, **raw}
    cache = out["cache"]
    if not isinstance(cache, dict) or cache.get("mode", "off") not in CACHE_MODES:
        raise _invalid("settings.cache", "mode must be one of off, exact.")
    ttl = cache.get("ttl_seconds", 0)
    _number(ttl, "settings.cache.ttl_seconds", low=0, high=30 * 86400, integer=True)
    if cache.get("mode") == "exact" and ttl <= 0:
        raise _invalid("settings.cache.ttl_seconds", "must be positive when the cache is on.")
    out["cache"] = {"mode": cache.get("mode", "off"), "ttl_seconds": ttl}
    _number(out["timeout_seconds"], "settings.timeout_seconds", low=0.1, high=600)
    _number(out["max_retries"], "settings.max_retries", low=0, high=10, integer=True)
    if out["max_tokens"] is not None:
        _number(out["max_tokens"], "settings.max_tokens", low=1, high=1_000_000, integer=True)

    chain_ids = out["fallback"]
    if not isinstance(chain_ids, list) or len(chain_ids) > 5:
        raise _invalid("settings.fallback", "must be a list of at most 5 model version ids.")
    chain: list[ModelVersion] = []
    for i, raw_id in enumerate(chain_ids):
        try:
            mv_id = uuid.UUID(str(raw_id))
        except ValueError:
            raise _invalid(f"settings.fallback[{i}]", "is not a model version id.") from None
        mv = ModelVersion.objects.select_related("model").filter(pk=mv_id).first()
        if mv is None or mv.model.owner_team_id != product.owner_team_id:
            raise _invalid(f"settings.fallback[{i}]", "no such model version in this team.")
        if mv.pk == primary.pk or mv in chain:
            raise _invalid(f"settings.fallback[{i}]", "repeats a model already in the chain.")
        chain.append(mv)
    out["fallback"] = [str(mv.pk) for mv in chain]
    return out, chain


def release_fingerprint(
    *,
    prompt_version: PromptTemplateVersion,
    model_version: ModelVersion,
    dataset_versions: Iterable[DatasetVersion],
    settings: dict,
    fallback: list[ModelVersion],
) -> str:
    """sha256 over the canonical content: the versions' content hashes and the settings."""
    return content_hash(
        {
            "prompt_version": prompt_version.content_hash,
            "model_version": model_version.content_hash,
            "dataset_versions": sorted(dv.content_hash for dv in dataset_versions),
            "settings": {**settings, "fallback": [mv.content_hash for mv in fallback]},
        }
    )


def _require_change(actor: User, product: Product) -> None:
    if not actor.has_perm("catalog.change_product", product):
        raise Forbidden("forbidden", f"You may not change the releases of {product.slug}.")
    require_writable(product)


def _check_parts(
    *,
    product: Product,
    prompt_version: PromptTemplateVersion,
    model_version: ModelVersion,
    dataset_versions: list[DatasetVersion],
) -> None:
    team = product.owner_team_id
    parts = [
        ("prompt_version", prompt_version, prompt_version.prompt),
        ("model_version", model_version, model_version.model),
    ]
    parts += [("dataset_versions", dv, dv.dataset) for dv in dataset_versions]
    for field, version, artifact in parts:
        if artifact.owner_team_id != team:
            raise _invalid(field, f"{version} belongs to another team.")
        if version.is_deprecated:
            raise _invalid(field, f"{version} is deprecated and cannot go into a new release.")


def _snapshot(release: Release) -> dict:
    return {
        "version": release.version,
        "status": release.status,
        "prompt_version": str(release.prompt_version_id),
        "model_version": str(release.model_version_id),
        "dataset_versions": sorted(str(d.dataset_version_id) for d in release.dataset_links.all()),
        "settings": release.settings,
        "notes": release.notes,
        "fingerprint": release.fingerprint,
    }


def release_create(
    *,
    actor: User,
    product: Product,
    version: str,
    prompt_version: PromptTemplateVersion,
    model_version: ModelVersion,
    dataset_versions: Iterable[DatasetVersion] = (),
    settings: Any = None,
    notes: str = "",
) -> Release:
    """A new draft release of ``product``."""
    version = (version or "").strip()
    if not SEMVER.match(version):
        raise _invalid("version", "must be a semantic version such as 1.2.0.")
    dataset_versions = list(dict.fromkeys(dataset_versions))
    with transaction.atomic():
        product = Product.objects.select_for_update().get(pk=product.pk)
        _require_change(actor, product)
        if product.releases.filter(version=version).exists():
            raise Conflict(
                "duplicate",
                f"{product.slug} already has a release {version}.",
                {"version": ["Already used."]},
            )
        _check_parts(
            product=product,
            prompt_version=prompt_version,
            model_version=model_version,
            dataset_versions=dataset_versions,
        )
        clean, chain = normalize_settings(settings, product=product, primary=model_version)
        release = as_actor(
            Release(
                product=product,
                version=version,
                prompt_version=prompt_version,
                model_version=model_version,
                settings=clean,
                notes=notes,
                created_by=actor,
                fingerprint=release_fingerprint(
                    prompt_version=prompt_version,
                    model_version=model_version,
                    dataset_versions=dataset_versions,
                    settings=clean,
                    fallback=chain,
                ),
            ),
            actor,
        )
        release.save()
        for dv in dataset_versions:
            as_actor(ReleaseDataset(release=release, dataset_version=dv), actor).save()
        audit_record(
            actor=actor,
            verb="release.created",
            obj=release,
            product_id=product.pk,
            after=_snapshot(release),
        )
    return release


def release_update(
    *,
    actor: User,
    release: Release,
    version: Any = _UNSET,
    prompt_version: Any = _UNSET,
    model_version: Any = _UNSET,
    dataset_versions: Any = _UNSET,
    settings: Any = _UNSET,
    notes: Any = _UNSET,
) -> Release:
    """Edit a draft. A release that was ever submitted for review is frozen."""
    with transaction.atomic():
        release = Release.objects.select_for_update().select_related("product").get(pk=release.pk)
        _require_change(actor, release.product)
        if not release.is_editable:
            raise Conflict(
                "frozen",
                f"Release {release} is {release.status}"
                + (" and was submitted for review" if release.frozen_at else "")
                + ": it can no longer be edited; create a new draft instead.",
            )
        before = _snapshot(release)
        if version is not _UNSET:
            version = (version or "").strip()
            if not SEMVER.match(version):
                raise _invalid("version", "must be a semantic version such as 1.2.0.")
            if release.product.releases.filter(version=version).exclude(pk=release.pk).exists():
                raise Conflict(
                    "duplicate",
                    f"{release.product.slug} already has {version}.",
                    {"version": ["Already used."]},
                )
            release.version = version
        if prompt_version is not _UNSET:
            release.prompt_version = prompt_version
        if model_version is not _UNSET:
            release.model_version = model_version
        if notes is not _UNSET:
            release.notes = notes or ""
        datasets = (
            list(dict.fromkeys(dataset_versions))
            if dataset_versions is not _UNSET
            else [
                link.dataset_version
                for link in release.dataset_links.select_related("dataset_version__dataset")
            ]
        )
        _check_parts(
            product=release.product,
            prompt_version=release.prompt_version,
            model_version=release.model_version,
            dataset_versions=datasets,
        )
        raw_settings = release.settings if settings is _UNSET else settings
        clean, chain = normalize_settings(
            raw_settings, product=release.product, primary=release.model_version
        )
        release.settings = clean
        release.fingerprint = release_fingerprint(
            prompt_version=release.prompt_version,
            model_version=release.model_version,
            dataset_versions=datasets,
            settings=clean,
            fallback=chain,
        )
        as_actor(release, actor).save()
        if dataset_versions is not _UNSET:
            wanted = {dv.pk for dv in datasets}
            for link in release.dataset_links.all():
                if link.dataset_version_id not in wanted:
                    as_actor(link, actor).delete()
            have = set(release.dataset_links.values_list("dataset_version_id", flat=True))
            for dv in datasets:
                if dv.pk not in have:
                    as_actor(ReleaseDataset(release=release, dataset_version=dv), actor).save()
        after = _snapshot(release)
        audit_changes(
            actor=actor,
            verb="release.updated",
            obj=release,
            product_id=release.product_id,
            before=before,
            after=after,
        )
    return release


def _move(
    *, actor: User | None, release: Release, to: str, verb: str, at: datetime | None = None
) -> Release:
    """The one place a release's status changes; the caller holds the row lock."""
    current = release.status
    if to not in RELEASE_TRANSITIONS[current]:
        raise Conflict(
            "invalid_transition",
            f"Release {release} is {current} and cannot become {to}.",
        )
    release.status = to
    as_actor(release, actor).save()
    audit_record(
        actor=actor,
        verb=verb,
        obj=release,
        product_id=release.product_id,
        before={"status": current},
        after={"status": to, "at": at},
    )
    return release


def release_freeze(*, actor: User, release: Release) -> Release:
    """Called when a change request proposing ``release`` is submitted: candidate, frozen."""
    with transaction.atomic():
        release = Release.objects.select_for_update().select_related("product").get(pk=release.pk)
        if release.frozen_at is None:
            release.frozen_at = timezone.now()
        if release.status == ReleaseStatus.DRAFT:
            return _move(
                actor=actor, release=release, to=ReleaseStatus.CANDIDATE, verb="release.frozen"
            )
        if release.status != ReleaseStatus.CANDIDATE:
            raise Conflict(
                "invalid_transition",
                f"Release {release} is {release.status}; only a draft can be proposed.",
            )
        as_actor(release, actor).save()
    return release


def release_release(*, actor: User, release: Release) -> Release:
    """Make ``release`` the product's released release; the previous one is deprecated.

    Locks the product row first, so two releases of one product are serialized; the partial
    unique constraint backs this up.
    """
    with transaction.atomic():
        Product.objects.select_for_update().get(pk=release.product_id)
        release = Release.objects.select_for_update().select_related("product").get(pk=release.pk)
        if release.status != ReleaseStatus.CANDIDATE:
            raise Conflict(
                "invalid_transition",
                f"Release {release} is {release.status}; only a candidate can be released.",
            )
        now = timezone.now()
        current = (
            Release.objects.select_for_update()
            .filter(product_id=release.product_id, status=ReleaseStatus.RELEASED)
            .first()
        )
        if current is not None:
            current.effective_to = now
            _move(
                actor=actor,
                release=current,
                to=ReleaseStatus.DEPRECATED,
                verb="release.deprecated",
                at=now,
            )
        release.effective_from = now
        release.effective_to = None
        _move(
            actor=actor, release=release, to=ReleaseStatus.RELEASED, verb="release.released", at=now
        )
    return release


def release_retire(*, actor: User, release: Release) -> Release:
    with transaction.atomic():
        release = Release.objects.select_for_update().select_related("product").get(pk=release.pk)
        _require_change(actor, release.product)
        if release.status == ReleaseStatus.DEPRECATED and release.effective_to is None:
            release.effective_to = timezone.now()
        return _move(actor=actor, release=release, to=ReleaseStatus.RETIRED, verb="release.retired")
