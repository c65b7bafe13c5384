"""The portfolio: every product a user may see, by lifecycle stage, with its owner team, risk
class, released release, open change requests, target metrics met and cost of the last 30 days.

Reads are scoped by ``catalog.selectors.product_list_for`` (auditors see all). The figures of a
row are correlated subqueries on the product list's one query (released version, open change
requests, 30-day cost, whether a brief with targets is in force), so a page costs the same
number of queries however many products there are.

The one exception is the "metrics met" column: ``metrics.measure`` reads evaluation runs and
gateway traffic per product. Only products whose brief in force names target metrics are
measured (the others show "—" without a query), their briefs and released releases are read in
bulk (2 queries), and each measured product then costs at most ``MEASURE_QUERIES_MAX`` queries
(the released-release lookup ``measure`` makes when there is none, the evaluation runs when a
pass rate is targeted, and the two traffic queries when a gateway metric is). The measured
products are those of the page shown; with ``met=yes|no`` (which depends on the measures) and
in the CSV export they are all matching products with targets.

The export is recorded in the audit trail (``portfolio.exported``) by
``portfolio_export_record``.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import (
    Case,
    Count,
    DecimalField,
    Exists,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.accounts.models import Team, User
from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.catalog.models import Product, RiskClass, Stage
from apps.catalog.selectors import product_list_for
from apps.changes.models import OPEN_STATES, ChangeRequest
from apps.gateway.models import ProviderCall
from apps.releases.models import Release, ReleaseStatus

from .metrics import measure
from .models import BriefStatus, ProductBrief

COST_WINDOW_DAYS = 30
# Queries ``metrics.measure`` makes for one product at most, given its targets and release.
MEASURE_QUERIES_MAX = 4
Q_MAX_LENGTH = 100
EXPORT_BATCH = 500
MET_CHOICES = ("yes", "no", "none")
CSV_COLUMNS = [
    "slug",
    "name",
    "owner_team",
    "stage",
    "risk_class",
    "release",
    "open_change_requests",
    "metrics_met",
    "metrics_total",
    "monthly_cost",
]
_TEAM_SLUG = re.compile(r"^[-a-zA-Z0-9_]{1,64}$")
_CENT = Decimal("0.01")


# --- filters -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PortfolioFilters:
    """The portfolio's GET filters, each valid or empty."""

    stage: str = ""
    risk_class: str = ""
    team: str = ""
    q: str = ""
    met: str = ""

    def as_params(self) -> dict[str, str]:
        """The filters in force, as query parameters (and as the export's audit record)."""
        return {
            name: value
            for name, value in (
                ("stage", self.stage),
                ("risk_class", self.risk_class),
                ("team", self.team),
                ("q", self.q),
                ("met", self.met),
            )
            if value
        }

    @property
    def active(self) -> bool:
        return bool(self.as_params())


def portfolio_filters(params: Mapping[str, Any]) -> tuple[PortfolioFilters, dict[str, str]]:
    """Read the filters from ``params`` (a ``QueryDict``): a value that is not valid is left
    out and explained in the returned errors (by parameter name), never raised."""
    errors: dict[str, str] = {}

    def text(name: str) -> str:
        value = params.get(name, "")
        return value.strip() if isinstance(value, str) else ""

    stage = text("stage")
    if stage and stage not in Stage.values:
        errors["stage"] = (
            f"Stage “{stage[:40]}” is not a lifecycle stage (one of {', '.join(Stage.values)}); "
            "the stage filter is ignored."
        )
        stage = ""
    risk_class = text("risk_class")
    if risk_class and risk_class not in RiskClass.values:
        errors["risk_class"] = (
            f"Risk class “{risk_class[:40]}” is not one of {', '.join(RiskClass.values)}; "
            "the risk filter is ignored."
        )
        risk_class = ""
    team = text("team")
    if team and not _TEAM_SLUG.match(team):
        errors["team"] = "A team is named by its slug (letters, digits, - and _); ignored."
        team = ""
    q = text("q")
    if "\x00" in q:
        errors["q"] = "The search cannot contain NUL characters; ignored."
        q = ""
    elif len(q) > Q_MAX_LENGTH:
        errors["q"] = f"The search is at most {Q_MAX_LENGTH} characters; ignored."
        q = ""
    met = text("met")
    if met and met not in MET_CHOICES:
        errors["met"] = (
            f"“{met[:40]}” is not a metrics filter (yes: all met, no: some not met, none: no "
            "targets); ignored."
        )
        met = ""
    return PortfolioFilters(stage=stage, risk_class=risk_class, team=team, q=q, met=met), errors


# --- the rows ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricsSummary:
    met: int
    total: int

    @property
    def all_met(self) -> bool:
        return self.met == self.total


@dataclass(frozen=True)
class PortfolioRow:
    product: Product
    release: str
    open_change_requests: int
    monthly_cost: Decimal
    metrics: MetricsSummary | None  # None: the brief in force names no target metric

    @property
    def metrics_label(self) -> str:
        if self.metrics is None:
            return "—"
        return f"{self.metrics.met} of {self.metrics.total} met"

    def csv_values(self) -> list[Any]:
        p = self.product
        return [
            p.slug,
            p.name,
            p.owner_team.slug,
            p.stage,
            p.risk_class,
            self.release,
            self.open_change_requests,
            "" if self.metrics is None else self.metrics.met,
            "" if self.metrics is None else self.metrics.total,
            f"{self.monthly_cost:.2f}",
        ]


@dataclass(frozen=True)
class StageCount:
    stage: str
    count: int
    percent: float  # of the products counted in the summary


@dataclass
class Portfolio:
    """The matching products (annotated, in stage order) and the count per stage of the
    products matching every filter but the stage."""

    products: QuerySet[Product]
    summary: list[StageCount]
    total: int
    now: dt.datetime
    _measured: dict[Any, MetricsSummary | None] = field(default_factory=dict)

    def rows(self, products: Iterable[Product]) -> list[PortfolioRow]:
        """The rows of ``products`` (from ``self.products``): metrics measured only for those
        with targets not measured yet."""
        products = list(products)
        todo = [p for p in products if p.has_targets and p.pk not in self._measured]
        self._measured.update(_measure_all(todo, now=self.now))
        return [
            PortfolioRow(
                product=p,
                release=p.released_version or "",
                open_change_requests=p.open_change_requests,
                monthly_cost=Decimal(p.monthly_cost or 0).quantize(_CENT),
                metrics=self._measured.get(p.pk) if p.has_targets else None,
            )
            for p in products
        ]

    def all_rows(self, batch: int = EXPORT_BATCH) -> Iterator[PortfolioRow]:
        """Every matching row (the export), read and measured ``batch`` products at a time."""
        chunk: list[Product] = []
        for product in self.products.iterator(chunk_size=batch):
            chunk.append(product)
            if len(chunk) == batch:
                yield from self.rows(chunk)
                chunk = []
        if chunk:
            yield from self.rows(chunk)


def _stage_rank() -> Case:
    return Case(
        *(When(stage=stage, then=Value(i)) for i, stage in enumerate(Stage.values)),
        default=Value(len(Stage.values)),
        output_field=IntegerField(),
    )


def _annotated(qs: QuerySet[Product], *, now: dt.datetime) -> QuerySet[Product]:
    """Each product's figures as correlated subqueries: one query for a page of rows."""
    released = Release.objects.filter(
        product=OuterRef("pk"), status=ReleaseStatus.RELEASED
    ).order_by("-created_at")
    open_crs = (
        ChangeRequest.objects.filter(product=OuterRef("pk"), state__in=OPEN_STATES)
        .order_by()
        .values("product")
        .annotate(n=Count("pk"))
        .values("n")[:1]
    )
    cost = (
        ProviderCall.objects.filter(
            product=OuterRef("pk"), created_at__gte=now - dt.timedelta(days=COST_WINDOW_DAYS)
        )
        .order_by()
        .values("product")
        .annotate(total=Sum("cost"))
        .values("total")[:1]
    )
    money = DecimalField(max_digits=20, decimal_places=8)
    return qs.annotate(
        stage_rank=_stage_rank(),
        released_version=Subquery(released.values("version")[:1]),
        open_change_requests=Coalesce(Subquery(open_crs, output_field=IntegerField()), 0),
        monthly_cost=Coalesce(
            Subquery(cost, output_field=money), Value(Decimal(0), output_field=money)
        ),
        has_targets=Exists(_briefs_with_targets().filter(product=OuterRef("pk"))),
    )


def _briefs_with_targets() -> QuerySet[ProductBrief]:
    return ProductBrief.objects.filter(status=BriefStatus.IN_FORCE).exclude(target_metrics=[])


def _measure_all(products: list[Product], *, now: dt.datetime) -> dict[Any, MetricsSummary | None]:
    """``metrics.measure`` for each of ``products``, their briefs and released releases read in
    two queries (none without products): see the module's docstring for the bound."""
    if not products:
        return {}
    pks = [p.pk for p in products]
    targets = dict(
        _briefs_with_targets()
        .filter(product_id__in=pks)
        .order_by()
        .values_list("product_id", "target_metrics")
    )
    releases = {
        r.product_id: r
        for r in Release.objects.filter(product_id__in=pks, status=ReleaseStatus.RELEASED)
    }
    out: dict[Any, MetricsSummary | None] = {}
    for product in products:
        wanted = targets.get(product.pk)
        if not wanted:
            out[product.pk] = None
            continue
        measured = measure(
            product=product, targets=wanted, release=releases.get(product.pk), now=now
        )
        out[product.pk] = MetricsSummary(
            met=sum(1 for m in measured if m.met is True), total=len(measured)
        )
    return out


def portfolio_for(
    *, user: User, filters: PortfolioFilters, now: dt.datetime | None = None
) -> Portfolio:
    """The portfolio ``user`` may see, narrowed by ``filters``."""
    now = now or timezone.now()
    qs = _annotated(product_list_for(user=user), now=now)
    if filters.risk_class:
        qs = qs.filter(risk_class=filters.risk_class)
    if filters.team:
        qs = qs.filter(owner_team__slug=filters.team)
    if filters.q:
        qs = qs.filter(Q(name__icontains=filters.q) | Q(slug__icontains=filters.q))
    measured: dict[Any, MetricsSummary | None] = {}
    if filters.met == "none":
        qs = qs.filter(has_targets=False)
    elif filters.met in ("yes", "no"):
        # Depends on the measures: every matching product with targets is measured.
        candidates = list(qs.filter(has_targets=True).order_by("pk"))
        measured = _measure_all(candidates, now=now)
        want_all = filters.met == "yes"
        keep = [pk for pk, m in measured.items() if m is not None and m.all_met is want_all]
        qs = qs.filter(pk__in=keep)
    counts = dict(qs.order_by().values_list("stage").annotate(n=Count("pk")))
    total = sum(counts.values())
    summary = [
        StageCount(
            stage=stage,
            count=counts.get(stage, 0),
            percent=round(100 * counts.get(stage, 0) / total, 2) if total else 0.0,
        )
        for stage in Stage.values
    ]
    if filters.stage:
        qs = qs.filter(stage=filters.stage)
    qs = qs.order_by("stage_rank", "name", "slug", "pk")
    return Portfolio(products=qs, summary=summary, total=total, now=now, _measured=measured)


def portfolio_teams(*, user: User) -> QuerySet[Team]:
    """The owner teams of the products ``user`` may see (the team filter's choices)."""
    return (
        Team.objects.filter(pk__in=product_list_for(user=user).values("owner_team_id"))
        .order_by("slug")
        .only("slug", "name")
    )


# --- the CSV export ----------------------------------------------------------------------------


class _Echo:
    def write(self, value: str) -> str:
        return value


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # A cell a spreadsheet would run as a formula is quoted as text (CSV injection).
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def portfolio_csv_lines(rows: Iterable[PortfolioRow]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for row in rows:
        yield writer.writerow([_cell(v) for v in row.csv_values()])


def portfolio_export_record(
    *, actor: User, count: int, filters: dict[str, str], ip_address: str = ""
) -> AuditEvent:
    """Record that ``actor`` exported ``count`` portfolio rows matching ``filters``."""
    with transaction.atomic():
        return audit_record(
            actor=actor,
            verb="portfolio.exported",
            object_type="catalog.product",
            object_id="",
            object_repr="product portfolio (csv)",
            after={"format": "csv", "count": count, "filters": filters},
            ip_address=ip_address,
        )
