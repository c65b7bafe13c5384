"""What a release's dossier says, gathered in a fixed number of queries.

``dossier_collect`` reads everything the dossier holds about one release and returns it as
plain, JSON-ready sections (``DossierContent``); ``render`` turns the sections into files and
the HTML page shows the same sections. Nothing here writes.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Prefetch, Q
from django.utils.dateparse import parse_datetime

from apps.audit.models import AuditEvent
from apps.catalog.models import DatasetVersion, ModelVersion, ModelVersionDataset
from apps.catalog.prompting import messages_as_text
from apps.changes.models import Approval, ChangeRequest
from apps.core.hashing import to_jsonable
from apps.evaluations.models import EvalResult, EvalRun
from apps.portal.models import APIKey, PublishedAPI, Subscription
from apps.releases.models import Release, ReleaseDataset

# What an access event may show of its before/after: states, reasons, names, prefixes and
# times. Anything else (whatever a future service might add) is left out, so no secret or
# hash can reach the dossier through an audit event.
ACCESS_EVENT_FIELDS = frozenset(
    {
        "state",
        "reason",
        "decision_reason",
        "justification",
        "plan",
        "api",
        "application",
        "name",
        "prefix",
        "new_prefix",
        "new_key",
        "expires_at",
        "new_expires_at",
        "grace_ends_at",
        "revoked_at",
    }
)
PURGED_OUTPUT = "(output purged under the retention policy)"


@dataclass
class DossierContent:
    release: Release
    inventory: dict
    model_cards: list[dict]
    datasheets: list[dict]
    prompts: list[dict]
    prompt_diff: dict
    runs: list[dict]
    results: dict[str, list[dict]]
    changes: list[dict]
    effectivity: list[dict]
    apis: list[dict]
    access_events: list[dict]
    incidents: list[dict]
    checkpoint: dict | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def product(self):
        return self.release.product


def _user(user) -> str | None:
    return user.get_username() if user is not None else None


def _ref(obj) -> dict | None:
    """A version as the dossier names it elsewhere: id, label, content hash."""
    if obj is None:
        return None
    return {"id": str(obj.pk), "label": str(obj), "content_hash": obj.content_hash}


def _release_ref(release: Release | None) -> dict | None:
    if release is None:
        return None
    return {
        "id": str(release.pk),
        "version": release.version,
        "status": release.status,
        "fingerprint": release.fingerprint,
    }


def _money(value) -> str:
    """A cost as a plain decimal (``0.00000000``, never ``0E-8``)."""
    return format(value, "f")


def _stem(slug: str, version: int) -> str:
    return f"{slug}-v{version}"


# --- the release and its product ---------------------------------------------------------------


def _release(release: Release) -> Release:
    return (
        Release.objects.select_related(
            "product",
            "product__owner_team",
            "product__created_by",
            "prompt_version",
            "prompt_version__prompt",
            "prompt_version__created_by",
            "model_version",
            "model_version__model",
            "created_by",
        )
        .prefetch_related(
            Prefetch(
                "dataset_links",
                queryset=ReleaseDataset.objects.select_related(
                    "dataset_version", "dataset_version__dataset"
                ),
            )
        )
        .get(pk=release.pk)
    )


def _inventory(release: Release) -> dict:
    product = release.product
    stages = [
        {
            "seq": e.seq,
            "at": e.at,
            "by": e.actor_username,
            "from": (e.before or {}).get("stage"),
            "to": (e.after or {}).get("stage"),
            "verb": e.verb,
        }
        for e in AuditEvent.objects.filter(
            object_type="catalog.product",
            object_id=str(product.pk),
            verb__in=["product.created", "product.stage_changed"],
        ).order_by("seq")
    ]
    fallback = [str(i) for i in (release.settings or {}).get("fallback") or []]
    return {
        "product": {
            "id": str(product.pk),
            "slug": product.slug,
            "name": product.name,
            "owner_team": {"slug": product.owner_team.slug, "name": product.owner_team.name},
            "intended_use": product.intended_use,
            "risk_class": product.risk_class,
            "lifecycle_stage": product.stage,
            "created_at": product.created_at,
            "created_by": _user(product.created_by),
        },
        "lifecycle_history": stages,
        "release": {
            **_release_ref(release),
            "notes": release.notes,
            "created_at": release.created_at,
            "created_by": _user(release.created_by),
            "frozen_at": release.frozen_at,
            "effective_from": release.effective_from,
            "effective_to": release.effective_to,
            "settings": release.settings,
            "bill_of_materials": {
                "prompt_version": _ref(release.prompt_version),
                "model_version": _ref(release.model_version),
                "fallback_model_versions": fallback,
                "dataset_versions": [
                    _ref(link.dataset_version) for link in release.dataset_links.all()
                ],
            },
        },
    }


# --- model cards and datasheets -------------------------------------------------------------


def _model_versions(release: Release) -> list[ModelVersion]:
    fallback = [str(i) for i in (release.settings or {}).get("fallback") or []]
    ids = [str(release.model_version_id), *fallback]
    found = {
        str(mv.pk): mv
        for mv in ModelVersion.objects.filter(pk__in=ids)
        .select_related("model", "base_version", "base_version__model", "created_by")
        .prefetch_related(
            Prefetch(
                "lineage",
                queryset=ModelVersionDataset.objects.select_related(
                    "dataset_version", "dataset_version__dataset"
                ),
            )
        )
    }
    ordered: list[ModelVersion] = []
    for i in ids:
        if i in found and found[i] not in ordered:
            ordered.append(found[i])
    return ordered


def _model_card(mv: ModelVersion, release: Release) -> dict:
    lineage = list(mv.lineage.all())
    primary = mv.pk == release.model_version_id
    return {
        "file": _stem(mv.model.slug, mv.version),
        "role": "primary" if primary else "fallback",
        "id": str(mv.pk),
        "label": str(mv),
        "model": {"slug": mv.model.slug, "name": mv.model.name},
        "version": mv.version,
        "content_hash": mv.content_hash,
        "provider": mv.provider,
        "provider_model": mv.provider_model,
        "parameters": mv.parameters,
        "base_model": mv.base_model,
        "base_version": _ref(mv.base_version),
        "lineage": [
            {
                "purpose": link.purpose,
                "dataset_version": _ref(link.dataset_version),
                "sha256": link.dataset_version.sha256,
            }
            for link in lineage
        ],
        "model_card": mv.model_card,
        "changelog": mv.changelog,
        "created_at": mv.created_at,
        "created_by": _user(mv.created_by),
        "deprecated_at": mv.deprecated_at,
        "deprecation_reason": mv.deprecation_reason,
    }


def _datasheets(release: Release, model_versions: list[ModelVersion]) -> list[dict]:
    uses: dict[str, list[str]] = {}
    for link in release.dataset_links.all():
        uses.setdefault(str(link.dataset_version_id), []).append(f"release {release.version}")
    for mv in model_versions:
        for link in mv.lineage.all():
            uses.setdefault(str(link.dataset_version_id), []).append(f"{link.purpose} of {mv}")
    if not uses:
        return []
    versions = DatasetVersion.objects.filter(pk__in=list(uses)).select_related(
        "dataset", "parent", "parent__dataset", "created_by"
    )
    sheets = [
        {
            "file": _stem(dv.dataset.slug, dv.version),
            "id": str(dv.pk),
            "label": str(dv),
            "dataset": {
                "slug": dv.dataset.slug,
                "name": dv.dataset.name,
                "description": dv.dataset.description,
            },
            "version": dv.version,
            "used_as": sorted(uses[str(dv.pk)]),
            "content_hash": dv.content_hash,
            "sha256": dv.sha256,
            "uri": dv.uri,
            "file_name": dv.file.name if dv.file else "",
            "format": dv.format,
            "size_bytes": dv.size_bytes,
            "row_count": dv.row_count,
            "schema": dv.schema,
            "source": dv.source,
            "licence": dv.licence,
            "pii_class": dv.pii_class,
            "retention_until": dv.retention_until,
            "parent": _ref(dv.parent),
            "changelog": dv.changelog,
            "created_at": dv.created_at,
            "created_by": _user(dv.created_by),
            "deprecated_at": dv.deprecated_at,
        }
        for dv in versions
    ]
    return sorted(sheets, key=lambda s: s["file"])


# --- prompts and the diff from the previous release -----------------------------------------


def previous_release(release: Release) -> Release | None:
    """The release of the same product released before this one (or, for a release never
    released, the latest one that was)."""
    qs = Release.objects.filter(product_id=release.product_id, effective_from__isnull=False)
    qs = qs.exclude(pk=release.pk)
    if release.effective_from is not None:
        qs = qs.filter(effective_from__lt=release.effective_from)
    return (
        qs.select_related("prompt_version", "prompt_version__prompt", "prompt_version__created_by")
        .order_by("-effective_from")
        .first()
    )


def _prompt(pv, used_by: str) -> dict:
    return {
        "file": _stem(pv.prompt.slug, pv.version),
        "used_by": used_by,
        "id": str(pv.pk),
        "label": str(pv),
        "prompt": {"slug": pv.prompt.slug, "name": pv.prompt.name},
        "version": pv.version,
        "content_hash": pv.content_hash,
        "messages": pv.messages,
        "variables_schema": pv.variables_schema,
        "parameters": pv.parameters,
        "changelog": pv.changelog,
        "created_at": pv.created_at,
        "created_by": _user(pv.created_by),
        "deprecated_at": pv.deprecated_at,
    }


def _json_lines(value: Any) -> list[str]:
    return json.dumps(to_jsonable(value), indent=2, sort_keys=True).splitlines()


def prompt_diff_text(old, new, old_label: str, new_label: str) -> str:
    """A unified diff of two prompt versions: messages, then variables schema and parameters."""
    parts = []
    for title, a, b in (
        ("messages", messages_as_text(old.messages), messages_as_text(new.messages)),
        ("variables_schema", _json_lines(old.variables_schema), _json_lines(new.variables_schema)),
        ("parameters", _json_lines(old.parameters), _json_lines(new.parameters)),
    ):
        lines = list(
            difflib.unified_diff(
                a, b, f"{old_label} {title}", f"{new_label} {title}", lineterm="", n=3
            )
        )
        parts.append(f"## {title}\n" + ("\n".join(lines) if lines else "(no change)") + "\n")
    return "\n".join(parts)


def _prompts(release: Release) -> tuple[list[dict], dict]:
    pv = release.prompt_version
    prompts = [_prompt(pv, f"release {release.version}")]
    previous = previous_release(release)
    if previous is None:
        text = (
            f"First release: {release.product.slug} has no release released before "
            f"{release.version}, so there is no earlier prompt to compare with.\n\n"
            f"Prompt of this release: {pv} ({pv.content_hash}).\n"
        )
        return prompts, {"file": "diff-first-release.txt", "previous": None, "text": text}
    old = previous.prompt_version
    header = (
        f"Prompt of release {release.version}: {pv} ({pv.content_hash})\n"
        f"compared with the prompt of the previous released release {previous.version}: "
        f"{old} ({old.content_hash})\n\n"
    )
    if old.pk == pv.pk:
        body = "The same prompt version: no change.\n"
    else:
        prompts.append(_prompt(old, f"previous release {previous.version}"))
        body = prompt_diff_text(
            old, pv, f"{old} (release {previous.version})", f"{pv} (release {release.version})"
        )
    return prompts, {
        "file": f"diff-from-{previous.version}.txt",
        "previous": _release_ref(previous),
        "text": header + body,
    }


# --- evaluations ------------------------------------------------------------------------------


def purge_cutoff() -> datetime | None:
    """The latest cutoff of the payload purges (``compliance.retention`` records each purge as
    an audit event ``payloads.purged``): a result older than it with no output was purged."""
    cutoffs = [
        parse_datetime(str((after or {}).get("cutoff") or ""))
        for after in AuditEvent.objects.filter(verb="payloads.purged").values_list(
            "after", flat=True
        )
    ]
    return max((c for c in cutoffs if c is not None), default=None)


def _purged(result: EvalResult, cutoff: datetime | None) -> bool:
    return cutoff is not None and result.output == "" and result.created_at < cutoff


def _evaluations(release: Release) -> tuple[list[dict], dict[str, list[dict]]]:
    runs = list(
        EvalRun.objects.filter(release=release)
        .select_related(
            "suite_version",
            "suite_version__suite",
            "prompt_version__prompt",
            "model_version__model",
            "created_by",
        )
        .order_by("created_at", "pk")
    )
    results: dict[str, list[dict]] = {str(run.pk): [] for run in runs}
    cutoff = purge_cutoff() if runs else None
    if runs:
        for r in (
            EvalResult.objects.filter(run__in=[run.pk for run in runs])
            .select_related("case")
            .order_by("run_id", "case__position", "pk")
        ):
            results[str(r.run_id)].append(
                {
                    "case": r.case.key,
                    "position": r.case.position,
                    "outcome": r.outcome,
                    "passed": r.outcome == "pass",
                    "checks": r.checks,
                    "output": PURGED_OUTPUT if _purged(r, cutoff) else r.output,
                    "output_purged": _purged(r, cutoff),
                    "error": r.error,
                    "latency_ms": r.latency_ms,
                    "tokens_in": r.tokens_in,
                    "tokens_out": r.tokens_out,
                    "cost": _money(r.cost),
                }
            )
    rows = [
        {
            "id": str(run.pk),
            "results_file": f"evaluations/{run.pk}-results.json",
            "suite": run.suite_version.suite.slug,
            "suite_version": run.suite_version.version,
            "suite_version_hash": run.suite_version.content_hash,
            "state": run.state,
            "total": run.total,
            "completed": run.completed,
            "passed": run.passed,
            "failed": run.failed_count,
            "errored": run.errored,
            "pass_rate": run.pass_rate,
            "cost": _money(run.cost),
            "aggregates": run.aggregates,
            "release_fingerprint": run.release_fingerprint,
            "prompt_version": str(run.prompt_version),
            "model_version": str(run.model_version),
            "dataset_version_hash": run.dataset_version_hash,
            "harness_version": run.harness_version,
            "change_request": str(run.change_request_id) if run.change_request_id else None,
            "cr_role": run.cr_role,
            "created_at": run.created_at,
            "created_by": _user(run.created_by),
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "error": run.error,
        }
        for run in runs
    ]
    return rows, results


# --- change requests and their signatures -----------------------------------------------------


def _changes(release: Release) -> list[dict]:
    crs = list(
        ChangeRequest.objects.filter(proposed=release)
        .select_related("baseline", "requested_by", "implemented_by")
        .prefetch_related(
            Prefetch("approvals", queryset=Approval.objects.order_by("created_at", "pk"))
        )
        .order_by("created_at", "pk")
    )
    if not crs:
        return []
    events: dict[str, list[dict]] = {str(cr.pk): [] for cr in crs}
    for e in AuditEvent.objects.filter(
        object_type="changes.changerequest", object_id__in=list(events)
    ).order_by("seq"):
        events[e.object_id].append(
            {
                "seq": e.seq,
                "at": e.at,
                "by": e.actor_username,
                "verb": e.verb,
                "from": (e.before or {}).get("state"),
                "to": (e.after or {}).get("state"),
            }
        )
    return [
        {
            "id": str(cr.pk),
            "title": cr.title,
            "rationale": cr.rationale,
            "kind": cr.kind,
            "risk": cr.risk,
            "impact": cr.impact,
            "state": cr.state,
            "fingerprint": cr.fingerprint,
            "baseline": _release_ref(cr.baseline),
            "proposed": _release_ref(release),
            "policy": cr.policy_snapshot,
            "requested_by": _user(cr.requested_by),
            "created_at": cr.created_at,
            "submitted_at": cr.submitted_at,
            "decided_at": cr.decided_at,
            "implemented_at": cr.implemented_at,
            "implemented_by": _user(cr.implemented_by),
            "approvals": [
                {
                    "id": str(a.pk),
                    "reviewer": a.reviewer_username,
                    "role": a.role,
                    "required": a.required,
                    "decision": a.decision,
                    "comment": a.comment,
                    "fingerprint": a.fingerprint,
                    "valid_for_final_content": a.fingerprint == cr.fingerprint,
                    "signed_at": a.created_at,
                    "evidence": a.evidence,
                }
                for a in cr.approvals.all()
            ],
            "history": events[str(cr.pk)],
        }
        for cr in crs
    ]


# --- published APIs, plans and access ---------------------------------------------------------


def _apis(release: Release) -> tuple[list[dict], list[dict]]:
    """The APIs pinned to this release, and (if it was ever released) those following the
    product's current release; then the subscription and key events of their subscribers."""
    serving = Q(release=release)
    if release.effective_from is not None:
        serving |= Q(release__isnull=True)
    apis = list(
        PublishedAPI.objects.filter(serving, product_id=release.product_id)
        .select_related("successor")
        .prefetch_related(
            "plans",
            Prefetch(
                "subscriptions",
                queryset=Subscription.objects.select_related(
                    "application", "application__owner", "plan", "requested_by", "decided_by"
                ).order_by("created_at", "pk"),
            ),
        )
        .order_by("slug")
    )
    subscriptions = [sub for api in apis for sub in api.subscriptions.all()]
    app_ids = {sub.application_id for sub in subscriptions}
    keys = (
        list(APIKey.objects.filter(application_id__in=app_ids).select_related("application"))
        if app_ids
        else []
    )
    rows = []
    for api in apis:
        pinned = api.release_id == release.pk
        subscribed = {s.application_id for s in api.subscriptions.all()}
        rows.append(
            {
                "id": str(api.pk),
                "slug": api.slug,
                "name": api.name,
                "status": api.status,
                "serves": (
                    "pinned to this release"
                    if pinned
                    else "follows the product's current release (served this release while it "
                    "was the released one)"
                ),
                "summary": api.summary,
                "published_at": api.published_at,
                "deprecated_at": api.deprecated_at,
                "sunset_at": api.sunset_at,
                "retired_at": api.retired_at,
                "successor": api.successor.slug if api.successor_id else None,
                "plans": [
                    {
                        "slug": p.slug,
                        "name": p.name,
                        "requests_per_minute": p.requests_per_minute,
                        "tokens_per_month": p.tokens_per_month,
                        "approval_required": p.approval_required,
                        "active": p.active,
                        "terms": p.terms,
                    }
                    for p in sorted(api.plans.all(), key=lambda p: (p.requests_per_minute, p.slug))
                ],
                "subscriptions": [
                    {
                        "id": str(s.pk),
                        "application": s.application.name,
                        "application_owner": _user(s.application.owner),
                        "plan": s.plan.slug,
                        "state": s.state,
                        "requested_by": _user(s.requested_by),
                        "requested_at": s.created_at,
                        "decided_by": _user(s.decided_by),
                        "decided_at": s.decided_at,
                        "decision_reason": s.decision_reason,
                    }
                    for s in api.subscriptions.all()
                ],
                "keys": [
                    {
                        "id": str(k.pk),
                        "application": k.application.name,
                        "name": k.name,
                        "prefix": k.prefix,
                        "created_at": k.created_at,
                        "expires_at": k.expires_at,
                        "revoked_at": k.revoked_at,
                        "grace_ends_at": k.grace_ends_at,
                    }
                    for k in sorted(keys, key=lambda k: (k.created_at, str(k.pk)))
                    if k.application_id in subscribed
                ],
            }
        )
    api_slugs = {api.pk: api.slug for api in apis}
    sub_ids = {str(s.pk): s for s in subscriptions}
    key_ids = {str(k.pk): k for k in keys}
    if not sub_ids and not key_ids:
        return rows, []
    events = AuditEvent.objects.filter(
        Q(object_type="portal.subscription", object_id__in=list(sub_ids), verb__startswith="sub")
        | Q(object_type="portal.apikey", object_id__in=list(key_ids), verb__startswith="key.")
    ).order_by("seq")
    access = []
    for e in events:
        subject: dict[str, Any]
        if e.object_type == "portal.subscription":
            s = sub_ids[e.object_id]
            subject = {
                "subscription": e.object_id,
                "api": api_slugs.get(s.api_id),
                "application": s.application.name,
                "plan": s.plan.slug,
            }
        else:
            k = key_ids[e.object_id]
            subject = {"key": e.object_id, "prefix": k.prefix, "application": k.application.name}
        access.append(
            {
                "seq": e.seq,
                "at": e.at,
                "by": e.actor_username,
                "verb": e.verb,
                **subject,
                "before": _allowed(e.before),
                "after": _allowed(e.after),
            }
        )
    return rows, access


def _allowed(values: dict | None) -> dict:
    return {k: v for k, v in (values or {}).items() if k in ACCESS_EVENT_FIELDS}


# --- incidents, effectivity, the checkpoint ---------------------------------------------------


def _incidents(release: Release) -> list[dict]:
    from apps.compliance.selectors import incident_list_for_release

    return [
        {
            "id": str(i.pk),
            "title": i.title,
            "severity": i.severity,
            "status": i.status,
            "description": i.description,
            "actions_taken": i.actions_taken,
            "occurred_at": i.occurred_at,
            "resolved_at": i.resolved_at,
            "closed_at": getattr(i, "closed_at", None),
            "filed_by": _user(i.filed_by),
            "created_at": i.created_at,
        }
        for i in incident_list_for_release(release)
    ]


def _effectivity(release: Release) -> list[dict]:
    """The product's live periods and its incidents in time order (``effectivity_timeline``)."""
    from apps.compliance.timetravel import Period, effectivity_timeline

    rows = []
    for item in effectivity_timeline(product=release.product):
        if isinstance(item, Period):
            cr = item.change_request
            rows.append(
                {
                    "kind": "period",
                    "release": _release_ref(item.release),
                    "this_release": item.release.pk == release.pk,
                    "from": item.start,
                    "to": item.end,
                    "change_request": {"id": str(cr.pk), "title": cr.title} if cr else None,
                }
            )
        else:
            incident = item.incident
            rows.append(
                {
                    "kind": "incident",
                    "at": item.at,
                    "incident": {
                        "id": str(incident.pk),
                        "title": incident.title,
                        "severity": incident.severity,
                        "status": incident.status,
                        "release": incident.release.version if incident.release_id else None,
                    },
                }
            )
    return rows


def checkpoint_dict(checkpoint) -> dict | None:
    """The latest audit checkpoint as the manifest carries it (``at`` exactly as signed)."""
    if checkpoint is None:
        return None
    at = checkpoint.at
    return {
        "seq": checkpoint.seq,
        "head_hash": checkpoint.head_hash,
        "at": at if isinstance(at, str) else at.isoformat(),
        "key_id": checkpoint.key_id,
        "signature": checkpoint.signature,
    }


def _checkpoint() -> dict | None:
    from apps.audit.checkpoints import checkpoint_latest

    return checkpoint_dict(checkpoint_latest())


# --- all of it --------------------------------------------------------------------------------


def dossier_collect(*, release: Release) -> DossierContent:
    """Everything the dossier of ``release`` holds (the caller has checked the scope)."""
    release = _release(release)
    model_versions = _model_versions(release)
    prompts, diff = _prompts(release)
    runs, results = _evaluations(release)
    apis, access = _apis(release)
    return DossierContent(
        release=release,
        inventory=_inventory(release),
        model_cards=[_model_card(mv, release) for mv in model_versions],
        datasheets=_datasheets(release, model_versions),
        prompts=prompts,
        prompt_diff=diff,
        runs=runs,
        results=results,
        changes=_changes(release),
        effectivity=_effectivity(release),
        apis=apis,
        access_events=access,
        incidents=_incidents(release),
        checkpoint=_checkpoint(),
    )
