"""Reads of playground and batch runs, scoped to the teams a user belongs to.

A run belongs to the team that owns its target (the release's product, or the prompt). Members
of that team see it, whatever their role; auditors and superusers see every run (they hold the
model-level view permission on products, as in ``catalog.selectors``). Out of scope is a 404.
"""

from django.db.models import QuerySet

from apps.accounts.models import User

from .models import BatchItem, BatchRun, PlaygroundRun

_TARGET = (
    "team",
    "created_by",
    "product",
    "release",
    "release__product",
    "prompt_version",
    "prompt_version__prompt",
    "model_version",
    "model_version__model",
)


def _sees_all(user: User) -> bool:
    return user.is_superuser or user.has_perm("catalog.view_product")


def _scoped(user: User, qs: QuerySet) -> QuerySet:
    if _sees_all(user):
        return qs
    return qs.filter(team_id__in=user.team_ids())


def playground_run_list_for(*, user: User) -> QuerySet[PlaygroundRun]:
    return _scoped(user, PlaygroundRun.objects.select_related(*_TARGET))


def batch_run_list_for(*, user: User) -> QuerySet[BatchRun]:
    qs = BatchRun.objects.select_related(
        *_TARGET, "cancelled_by", "dataset_version", "dataset_version__dataset"
    )
    return _scoped(user, qs)


def batch_item_list(*, batch: BatchRun, state: str | None = None) -> QuerySet[BatchItem]:
    """The rows of a batch the caller already found in scope, in dataset order."""
    qs = BatchItem.objects.filter(batch=batch).order_by("index")
    return qs.filter(state=state) if state else qs


RESULT_FIELDS = (
    "index",
    "variables",
    "state",
    "output",
    "tokens_in",
    "tokens_out",
    "cost",
    "latency_ms",
    "error",
    "call_id",
)


def batch_results(batch: BatchRun):
    """One dict per row, in dataset order, read in chunks (a 10,000-row batch is not loaded at
    once): ``index, variables, state, output, tokens_in, tokens_out, cost`` (a decimal string,
    as in the API), ``latency_ms, error, call_id``."""
    rows = BatchItem.objects.filter(batch=batch).order_by("index").values_list(*RESULT_FIELDS)
    for values in rows.iterator(chunk_size=1000):
        row = dict(zip(RESULT_FIELDS, values, strict=True))
        row["cost"] = str(row["cost"])
        row["call_id"] = str(row["call_id"]) if row["call_id"] else None
        yield row
