"""Time travel: what was live for a product, or one published API, at an instant.

Releases carry their effectivity (``effective_from``/``effective_to``), so "which release was
live at t" is one indexed query (``releases.selectors.release_live_at``). Everything that can
change in place is read from its django-simple-history rows as they were at t: the product
(stage, risk class, owner team), the release's status, the published APIs (status, pinned
release) and their plans (limits, approval). Versions, and a release once frozen, are
immutable, so their current rows are their rows at t.

An instant before the product existed has no state: ``live_at`` raises ``ProductDidNotExist``
(the page says so; the API answers 404 with code ``did_not_exist``).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from apps.catalog.models import DatasetVersion, ModelVersion, Product, PromptTemplateVersion
from apps.changes.models import ChangeRequest, CRState
from apps.core.exceptions import ApplicationError, NotFound
from apps.portal.models import Plan, PublishedAPI
from apps.releases.models import Release, ReleaseDataset, ReleaseStatus
from apps.releases.selectors import release_live_at

from .models import Incident

AT_HELP = (
    "An ISO 8601 instant, such as `2026-05-01T13:30:00Z` or `2026-05-01T15:30:00+02:00`; "
    "without an offset it is read in the server's time zone (UTC by default); a date alone "
    "means its start. Now when omitted or empty."
)
# A "+" of a UTC offset that reached us unencoded reads as a space: "…T10:00:00 02:00".
_OFFSET_AS_SPACE = re.compile(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$")


class ProductDidNotExist(NotFound):
    """The instant is before the product was created."""


def parse_instant(value: Any, *, field_name: str = "at") -> dt.datetime:
    """An aware datetime (in UTC) from ISO 8601 text; now for None or blank.

    Refuses, as a 400 naming the field: text that is not ISO 8601, impossible dates, offsets
    past ±23:59 (``+25:00``) and instants that cannot be represented in UTC.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return timezone.now()
    if isinstance(value, dt.datetime):
        parsed = value
    else:
        text = _OFFSET_AS_SPACE.sub(r"\1+\2", str(value).strip())
        message = (
            f"{text[:40]!r} is not an ISO 8601 instant; use e.g. 2026-05-01T13:30:00Z "
            "or 2026-05-01T15:30:00+02:00."
        )
        try:
            if len(text) <= 10:
                day = dt.date.fromisoformat(text)
                parsed = dt.datetime.combine(day, dt.time.min)
            else:
                parsed = dt.datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            raise ApplicationError("invalid", message, {field_name: [message]}) from None
    try:
        if timezone.is_naive(parsed):
            parsed = timezone.make_aware(parsed)
        parsed = parsed.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        message = "This instant is out of range."
        raise ApplicationError("invalid", message, {field_name: [message]}) from None
    return parsed


# --- what the state is made of ---------------------------------------------------------------


@dataclass(frozen=True)
class ProductAt:
    id: uuid.UUID
    slug: str
    name: str
    stage: str
    risk_class: str
    owner_team_id: uuid.UUID
    owner_team: str  # slug
    from_history: bool  # False: no history row (read from the current row)


@dataclass(frozen=True)
class ReleaseAt:
    release: Release
    status: str  # its status at t

    @property
    def id(self) -> uuid.UUID:
        return self.release.pk

    @property
    def version(self) -> str:
        return self.release.version

    @property
    def fingerprint(self) -> str:
        return self.release.fingerprint


@dataclass(frozen=True)
class PlanAt:
    id: uuid.UUID
    slug: str
    name: str
    requests_per_minute: int
    tokens_per_month: int | None
    approval_required: bool
    active: bool


@dataclass(frozen=True)
class APIAt:
    id: uuid.UUID
    slug: str
    name: str
    status: str
    pinned_release_id: uuid.UUID | None
    serves: ReleaseAt | None  # the release it served at t (pinned, or the product's live one)
    follows: str  # "pinned" or "product"
    plans: list[PlanAt] = field(default_factory=list)


@dataclass(frozen=True)
class LiveState:
    at: dt.datetime
    product: ProductAt
    release: ReleaseAt | None
    prompt_version: PromptTemplateVersion | None = None
    model_version: ModelVersion | None = None
    fallbacks: list[ModelVersion] = field(default_factory=list)
    dataset_versions: list[DatasetVersion] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    apis: list[APIAt] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)  # open (or mitigated) at t


def _product_at(product: Product, at: dt.datetime) -> ProductAt:
    row = (
        Product.history.filter(id=product.pk, history_date__lte=at)
        .select_related("owner_team")
        .order_by("-history_date", "-history_id")
        .first()
    )
    if row is None or row.history_type == "-":
        if row is None and product.created_at <= at:  # no history kept: the current row
            team = product.owner_team
            return ProductAt(
                product.pk,
                product.slug,
                product.name,
                product.stage,
                product.risk_class,
                team.pk,
                team.slug,
                False,
            )
        raise ProductDidNotExist(
            "did_not_exist",
            f"Product {product.slug} did not exist at {at.isoformat()} "
            f"(it was created {product.created_at.isoformat()}).",
        )
    return ProductAt(
        row.id,
        row.slug,
        row.name,
        row.stage,
        row.risk_class,
        row.owner_team_id,
        row.owner_team.slug if row.owner_team else "",
        True,
    )


def _statuses_at(release_ids: list, at: dt.datetime) -> dict:
    """{release id: status at t} from the releases' history (one query)."""
    if not release_ids:
        return {}
    rows = (
        Release.history.filter(id__in=release_ids, history_date__lte=at)
        .order_by("id", "-history_date", "-history_id")
        .values_list("id", "status")
    )
    out: dict = {}
    for rid, status in rows:
        out.setdefault(rid, status)
    return out


def _release_at(release: Release | None, status: str | None, *, live: bool) -> ReleaseAt | None:
    if release is None:
        return None
    status = status or release.status
    if live and status in (ReleaseStatus.DRAFT, ReleaseStatus.CANDIDATE):
        # Effectivity is the authority: its history row is written an instant after it.
        status = ReleaseStatus.RELEASED
    return ReleaseAt(release, status)


def _latest_rows(history_qs, at: dt.datetime) -> list:
    """The newest history row of each object at t, dropping the ones deleted by then."""
    rows = history_qs.filter(history_date__lte=at).order_by("id", "-history_date", "-history_id")
    latest: dict = {}
    for row in rows:
        latest.setdefault(row.id, row)
    return [row for row in latest.values() if row.history_type != "-"]


def _releases(ids) -> dict:
    return {
        r.pk: r
        for r in Release.objects.select_related(
            "prompt_version", "prompt_version__prompt", "model_version", "model_version__model"
        ).filter(pk__in=ids)
    }


def _apis_at(api_history_qs, at: dt.datetime, product_live: Release | None) -> list[APIAt]:
    api_rows = sorted(_latest_rows(api_history_qs, at), key=lambda r: r.slug)
    if not api_rows:
        return []
    plan_rows = _latest_rows(Plan.history.filter(api_id__in=[r.id for r in api_rows]), at)
    pinned_ids = {r.release_id for r in api_rows if r.release_id}
    releases = _releases(pinned_ids - ({product_live.pk} if product_live else set()))
    if product_live is not None:
        releases[product_live.pk] = product_live
    statuses = _statuses_at(list(releases), at)
    plans: dict = {}
    for p in sorted(plan_rows, key=lambda p: (p.requests_per_minute, p.slug)):
        plans.setdefault(p.api_id, []).append(
            PlanAt(
                p.id,
                p.slug,
                p.name,
                p.requests_per_minute,
                p.tokens_per_month,
                p.approval_required,
                p.active,
            )
        )
    out = []
    for r in api_rows:
        served = releases.get(r.release_id) if r.release_id else product_live
        out.append(
            APIAt(
                id=r.id,
                slug=r.slug,
                name=r.name,
                status=r.status,
                pinned_release_id=r.release_id,
                serves=_release_at(
                    served,
                    statuses.get(served.pk) if served else None,
                    live=served is not None and served == product_live,
                ),
                follows="pinned" if r.release_id else "product",
                plans=plans.get(r.id, []),
            )
        )
    return out


def _incidents_active_at(product: Product, at: dt.datetime) -> list[Incident]:
    """Incidents that had occurred by t and were not yet resolved then (by their dates)."""
    from django.db.models import Q

    return list(
        Incident.objects.select_related("release")
        .filter(product=product, occurred_at__lte=at, created_at__lte=at)
        .filter(Q(resolved_at__isnull=True) | Q(resolved_at__gt=at))
        .order_by("-occurred_at")
    )


def _parts(release: Release) -> dict[str, Any]:
    """A release's prompt, model, fallback chain, dataset versions and settings (2 queries)."""
    fallback_ids = [
        uuid.UUID(str(i)) for i in (release.settings or {}).get("fallback") or [] if _is_uuid(i)
    ]
    by_id = {
        mv.pk: mv for mv in ModelVersion.objects.select_related("model").filter(pk__in=fallback_ids)
    }
    return {
        "prompt_version": release.prompt_version,
        "model_version": release.model_version,
        "fallbacks": [by_id[i] for i in fallback_ids if i in by_id],
        "dataset_versions": [
            link.dataset_version
            for link in ReleaseDataset.objects.select_related(
                "dataset_version", "dataset_version__dataset"
            ).filter(release=release)
        ],
        "settings": dict(release.settings or {}),
    }


def live_at(*, product: Product, at: dt.datetime) -> LiveState:
    """Everything in force for ``product`` at ``at``: the product's own fields then, its live
    release with every artifact version, fallback and gateway setting, its published APIs and
    their plans then. A fixed number of queries, whatever the number of APIs and plans.

    Raises ``ProductDidNotExist`` (a 404) when ``at`` is before the product was created.
    """
    at = parse_instant(at)
    product_at = _product_at(product, at)
    live = release_live_at(product=product, at=at)
    state: dict[str, Any] = {}
    if live is not None:
        live = (
            Release.objects.select_related(
                "prompt_version",
                "prompt_version__prompt",
                "model_version",
                "model_version__model",
            )
            .filter(pk=live.pk)
            .first()
        )
        state = _parts(live)
    apis = _apis_at(PublishedAPI.history.filter(product_id=product.pk), at, live)
    statuses = _statuses_at([live.pk], at) if live is not None else {}
    return LiveState(
        at=at,
        product=product_at,
        release=_release_at(live, statuses.get(live.pk) if live else None, live=True),
        apis=apis,
        incidents=_incidents_active_at(product, at),
        **state,
    )


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class APILiveState:
    at: dt.datetime
    api: APIAt
    product: ProductAt
    live: LiveState | None  # the full state of the release it served (None: served none)


def api_live_at(*, api: PublishedAPI, at: dt.datetime) -> APILiveState:
    """What one published API served at ``at``: its status and plans then, and the release it
    served (its pinned release then, or the product's live release then) with all its parts.

    Raises ``ProductDidNotExist`` (a 404, code ``did_not_exist``) when the API (or its
    product) did not exist yet at ``at``.
    """
    at = parse_instant(at)
    state = live_at(product=api.product, at=at)
    api_at = next((a for a in state.apis if a.id == api.pk), None)
    if api_at is None:
        raise ProductDidNotExist(
            "did_not_exist",
            f"API {api.slug} did not exist at {at.isoformat()} "
            f"(it was created {api.created_at.isoformat()}).",
        )
    if api_at.serves is None:
        live = None
    elif state.release is not None and api_at.serves.id == state.release.id:
        live = state
    else:
        live = _state_of_release(state, api_at.serves)
    return APILiveState(at=at, api=api_at, product=state.product, live=live)


def _state_of_release(base: LiveState, served: ReleaseAt) -> LiveState:
    """``base`` with the release parts replaced by those of a pinned release."""
    return LiveState(
        at=base.at,
        product=base.product,
        release=served,
        **_parts(served.release),
        apis=base.apis,
        incidents=base.incidents,
    )


# --- the effectivity timeline ----------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    release: Release
    start: dt.datetime
    end: dt.datetime | None  # None: still live
    status: str  # the release's status now
    change_request: ChangeRequest | None  # the implemented change that released it

    @property
    def version(self) -> str:
        return self.release.version


@dataclass(frozen=True)
class Marker:
    incident: Incident
    at: dt.datetime


def effectivity_timeline(*, product: Product) -> list[Period | Marker]:
    """The product's live periods in order (release, from, to, status, the change request that
    implemented it) and its incidents as markers at their ``occurred_at``, sorted by time.
    Three queries, whatever the number of releases and incidents."""
    releases = list(
        Release.objects.filter(product=product, effective_from__isnull=False).order_by(
            "effective_from"
        )
    )
    changes: dict = {}
    for cr in ChangeRequest.objects.filter(product=product, state=CRState.IMPLEMENTED).order_by(
        "implemented_at"
    ):
        changes.setdefault(cr.proposed_id, cr)
    items: list[Period | Marker] = [
        Period(r, r.effective_from, r.effective_to, r.status, changes.get(r.pk)) for r in releases
    ]
    items += [
        Marker(i, i.occurred_at)
        for i in Incident.objects.select_related("release").filter(product=product)
    ]
    return sorted(items, key=lambda item: item.start if isinstance(item, Period) else item.at)
