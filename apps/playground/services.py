"""Every write to playground runs and batch runs.

Starting a run checks, in order: the target is visible to the actor (else 404), the actor may
run in the target's team (else 403, auditors included: a run costs money), the input is good
(else 400 with per-field messages). For a playground run the variables are checked against the
prompt's schema here, by rendering the prompt, so a bad variable is a form error and no run is
created. A batch's rows are read from the dataset version when it is created (at most
``PLAYGROUND_BATCH_MAX_ROWS``) and stored as its items; a row that does not fit the schema is
not refused here but fails on its own, with the schema's message, when the batch runs.

The audit trail records ``playground_run.created``, ``batch_run.created`` and
``batch_run.cancelled``. What the worker writes (state, results, progress) is telemetry, like the
``gateway.ProviderCall`` each result links to, and is not audited.

The worker's side: ``playground_run_execute`` runs one call; ``batch_run_chunk`` runs one chunk
of a batch's rows with at most the batch's ``concurrency`` calls in flight and says which chunk
comes next. A chunk is idempotent: rows already finished are skipped, results are written only
over unfinished rows, counters are recounted from the rows, and the batch's ``cursor`` names the
one chunk allowed to enqueue the next, so a redelivered chunk task changes nothing.
"""

from decimal import Decimal
from typing import Any

import jsonschema
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.services import audit_record
from apps.catalog.models import DatasetVersion, ModelVersion, PromptTemplateVersion
from apps.catalog.prompting import render_messages
from apps.catalog.selectors import (
    dataset_version_list_for,
)
from apps.core.exceptions import ApplicationError, Conflict, Forbidden, NotFound
from apps.releases.models import Release
from apps.releases.selectors import RunTarget, run_target_for

from . import rows as dataset_rows
from .models import (
    BATCH_FINISHED,
    BATCH_TRANSITIONS,
    DEFAULT_CONCURRENCY,
    ITEM_FINISHED,
    ITEM_PENDING,
    MAX_CONCURRENCY,
    MIN_CONCURRENCY,
    RUN_TRANSITIONS,
    BatchItem,
    BatchRun,
    BatchState,
    ItemState,
    PlaygroundRun,
    RunState,
)
from .permissions import may_cancel, may_run

DEFAULT_MAX_ROWS = 10_000
DEFAULT_CHUNK_SIZE = 25
MAX_VARIABLES_BYTES = 100_000


def max_rows() -> int:
    return int(getattr(settings, "PLAYGROUND_BATCH_MAX_ROWS", DEFAULT_MAX_ROWS))


def chunk_size() -> int:
    return max(1, int(getattr(settings, "PLAYGROUND_BATCH_CHUNK_SIZE", DEFAULT_CHUNK_SIZE)))


def task_queue() -> str | None:
    """The Celery queue playground work goes to (``PLAYGROUND_TASK_QUEUE``; default: Celery's)."""
    return getattr(settings, "PLAYGROUND_TASK_QUEUE", None) or None


# --- the target -------------------------------------------------------------------------------


Target = RunTarget  # the shared lookup: apps.releases.selectors.run_target_for


def _require_run(actor: User, target: Target) -> None:
    if not may_run(actor, target.team):
        raise Forbidden(
            "forbidden",
            f"Only members of team {target.team.slug} who build or review its products "
            "(product managers, reviewers, developers, admins) can start runs: a run calls a "
            "model and costs money. Auditors read runs but do not start them.",
        )


def _check_variables_object(variables: Any, field: str = "variables") -> dict:
    if variables is None:
        return {}
    if not isinstance(variables, dict):
        raise ApplicationError(
            "invalid_variables", f"{field} must be a JSON object.", {field: ["Not an object."]}
        )
    if len(repr(variables)) > MAX_VARIABLES_BYTES:
        raise ApplicationError(
            "invalid_variables",
            f"{field} are larger than {MAX_VARIABLES_BYTES:,} characters.",
            {field: ["Too large."]},
        )
    return variables


def _enqueue(task, *args) -> None:
    queue = task_queue()
    options = {"queue": queue} if queue else {}
    transaction.on_commit(lambda: task.apply_async(args=list(args), **options))


# --- playground runs --------------------------------------------------------------------------


def playground_run_create(
    *,
    actor: User,
    release: Release | None = None,
    prompt_version: PromptTemplateVersion | None = None,
    model_version: ModelVersion | None = None,
    variables: dict | None = None,
) -> PlaygroundRun:
    """Queue one call of the target with ``variables``; the worker runs it.

    The variables are checked against the prompt's schema first (by rendering the prompt in the
    sandbox): a bad variable is a 400 with per-field messages, and no run is created.
    """
    target = run_target_for(
        actor=actor, release=release, prompt_version=prompt_version, model_version=model_version
    )
    _require_run(actor, target)
    variables = _check_variables_object(variables)
    pv = target.prompt_version
    render_messages(pv.messages, pv.variables_schema, variables)  # raises invalid_variables
    from .tasks import run_playground

    with transaction.atomic():
        run = PlaygroundRun.objects.create(**target.fields(), variables=variables, created_by=actor)
        audit_record(
            actor=actor,
            verb="playground_run.created",
            obj=run,
            product_id=target.product.pk if target.product else None,
            after={
                "release": str(target.release.pk) if target.release else None,
                "prompt_version": str(pv.pk),
                "model_version": str(target.model_version.pk),
                "variables": sorted(variables),
            },
        )
        _enqueue(run_playground, str(run.pk))
    return run


def _move_run(run: PlaygroundRun, to: str) -> None:
    """The one place a playground run's state changes; the caller holds the row lock."""
    if to not in RUN_TRANSITIONS[run.state]:
        raise Conflict("invalid_transition", f"This run is {run.state}; it cannot become {to}.")
    now = timezone.now()
    run.state = to
    if to == RunState.RUNNING:
        run.started_at = now
    if not RUN_TRANSITIONS[to]:
        run.finished_at = now


def _lock_run(run_id) -> PlaygroundRun:
    return PlaygroundRun.objects.select_for_update().get(pk=run_id)


def _error_text(exc: ApplicationError) -> str:
    """The refusal's message, with its per-field details when they add to it."""
    details = []
    for key, messages in (exc.extra or {}).items():
        for message in messages if isinstance(messages, list) else [messages]:
            text = f"{key}: {message}"
            if str(message) not in exc.message and message not in (None, ""):
                details.append(text)
    return exc.message + (f" ({'; '.join(details)})" if details else "")


def _pipeline_target(obj: PlaygroundRun | BatchRun):
    """The gateway target of a stored run, or an ApplicationError when it is gone."""
    from apps.gateway.pipeline import resolve_target

    if obj.release_id:
        release = Release.objects.select_related("product", "prompt_version", "model_version").get(
            pk=obj.release_id
        )
        return resolve_target(release=release)
    if obj.prompt_version_id and obj.model_version_id:
        return resolve_target(
            prompt_version=PromptTemplateVersion.objects.get(pk=obj.prompt_version_id),
            model_version=ModelVersion.objects.get(pk=obj.model_version_id),
        )
    raise ApplicationError(
        "target_missing", "The release or versions this run was started with were deleted."
    )


def playground_run_execute(*, run_id) -> PlaygroundRun:
    """Run a queued playground run (the worker). A finished run is left as it is."""
    from apps.gateway.models import CallSource
    from apps.gateway.pipeline import UpstreamFailed, run_chat_sync

    with transaction.atomic():
        run = _lock_run(run_id)
        if run.done:
            return run
        if run.state == RunState.QUEUED:
            _move_run(run, RunState.RUNNING)
            run.save(update_fields=["state", "started_at"])
    outcome: dict[str, Any]
    try:
        target = _pipeline_target(run)
        result = run_chat_sync(target, variables=run.variables, source=CallSource.PLAYGROUND)
    except UpstreamFailed as exc:
        failed = exc.result
        outcome = {
            "state": RunState.FAILED,
            "error_code": exc.code,
            "error_message": exc.message,
            "messages": failed.messages,
            "latency_ms": failed.latency_ms,
            "call_id": failed.call_id,
            "provider_model": failed.provider_model,
        }
    except ApplicationError as exc:
        outcome = {
            "state": RunState.FAILED,
            "error_code": exc.code,
            "error_message": _error_text(exc),
        }
    else:
        outcome = {
            "state": RunState.SUCCEEDED,
            "output": result.output,
            "messages": result.messages,
            "tokens_in": result.tokens_in,
            "tokens_out": result.tokens_out,
            "cost": result.cost,
            "latency_ms": result.latency_ms,
            "ttft_ms": result.ttft_ms,
            "call_id": result.call_id,
            "provider_model": result.provider_model,
            "cache_hit": result.cache_hit,
        }
    return _finish_run(run_id, **outcome)


def _finish_run(run_id, *, state: str, **fields: Any) -> PlaygroundRun:
    with transaction.atomic():
        run = _lock_run(run_id)
        if run.done:
            return run
        if run.state == RunState.QUEUED and state == RunState.SUCCEEDED:
            _move_run(run, RunState.RUNNING)
        _move_run(run, state)
        for name, value in fields.items():
            setattr(run, name, value)
        run.save()
    return run


def playground_run_fail(*, run_id, code: str, message: str) -> PlaygroundRun:
    """End an unfinished run as failed (the worker, when the run itself broke)."""
    return _finish_run(run_id, state=RunState.FAILED, error_code=code, error_message=message)


# --- batch runs -------------------------------------------------------------------------------


def _check_concurrency(concurrency: Any) -> int:
    if (
        isinstance(concurrency, bool)
        or not isinstance(concurrency, int)
        or not MIN_CONCURRENCY <= concurrency <= MAX_CONCURRENCY
    ):
        raise ApplicationError(
            "invalid",
            f"concurrency is the number of calls in flight at once: a whole number from "
            f"{MIN_CONCURRENCY} to {MAX_CONCURRENCY}.",
            {"concurrency": [f"From {MIN_CONCURRENCY} to {MAX_CONCURRENCY}."]},
        )
    return concurrency


def _check_defaults(schema: dict, defaults: dict) -> None:
    """The values given for every row must be declared variables of the right type (the
    schema's ``required`` is left to the rows, which may supply them)."""
    declared = (schema or {}).get("properties") or {}
    if declared:
        unknown = sorted(set(defaults) - set(declared))
        if unknown:
            raise ApplicationError(
                "invalid_variables",
                f"The prompt declares no variable named {', '.join(unknown)}.",
                {f"variables.{name}": ["Not a variable of this prompt."] for name in unknown},
            )
    partial = {k: v for k, v in (schema or {}).items() if k != "required"}
    validator = jsonschema.Draft202012Validator({"type": "object", **partial})
    errors = sorted(validator.iter_errors(defaults), key=lambda e: list(e.path))
    if errors:
        fields: dict[str, list[str]] = {}
        for err in errors:
            path = ".".join(str(p) for p in err.path)
            fields.setdefault(f"variables.{path}" if path else "variables", []).append(err.message)
        raise ApplicationError(
            "invalid_variables",
            f"The values for every row do not match the prompt's schema: {errors[0].message}",
            fields,
        )


def _batch_snapshot(batch: BatchRun) -> dict:
    return {
        "state": batch.state,
        "release": str(batch.release_id) if batch.release_id else None,
        "prompt_version": str(batch.prompt_version_id) if batch.prompt_version_id else None,
        "model_version": str(batch.model_version_id) if batch.model_version_id else None,
        "dataset_version": str(batch.dataset_version_id) if batch.dataset_version_id else None,
        "total": batch.total,
        "concurrency": batch.concurrency,
    }


def batch_run_create(
    *,
    actor: User,
    dataset_version: DatasetVersion,
    release: Release | None = None,
    prompt_version: PromptTemplateVersion | None = None,
    model_version: ModelVersion | None = None,
    variables: dict | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> BatchRun:
    """Queue the target over every row of ``dataset_version`` (one row = one set of variables,
    over the ``variables`` given for every row); the worker runs it chunk by chunk."""
    target = run_target_for(
        actor=actor, release=release, prompt_version=prompt_version, model_version=model_version
    )
    _require_run(actor, target)
    if dataset_version is None:
        raise ApplicationError(
            "invalid", "Pick the dataset version to run over.", {"dataset_version": ["Required."]}
        )
    found = dataset_version_list_for(user=actor).filter(pk=dataset_version.pk).first()
    if found is None:
        raise NotFound("not_found", "No such dataset version, or it is outside your teams.")
    concurrency = _check_concurrency(concurrency)
    defaults = _check_variables_object(variables)
    _check_defaults(target.schema, defaults)
    limit = max_rows()
    rows = dataset_rows.read_rows(found, schema=target.schema, limit=limit)
    from .tasks import run_batch_chunk

    with transaction.atomic():
        batch = BatchRun.objects.create(
            **target.fields(),
            dataset_version=found,
            variables=defaults,
            concurrency=concurrency,
            total=len(rows),
            chunk_size=chunk_size(),
            created_by=actor,
        )
        BatchItem.objects.bulk_create(
            (
                BatchItem(
                    batch=batch,
                    index=i,
                    variables=dataset_rows.row_variables(
                        row, schema=target.schema, defaults=defaults
                    ),
                )
                for i, row in enumerate(rows)
            ),
            batch_size=500,
        )
        audit_record(
            actor=actor,
            verb="batch_run.created",
            obj=batch,
            product_id=target.product.pk if target.product else None,
            after={**_batch_snapshot(batch), "variables": sorted(defaults)},
        )
        _enqueue(run_batch_chunk, str(batch.pk), 0)
    return batch


def _lock_batch(batch_id) -> BatchRun:
    return BatchRun.objects.select_for_update().get(pk=batch_id)


def _move_batch(batch: BatchRun, to: str) -> None:
    """The one place a batch's state changes; the caller holds the row lock."""
    if to not in BATCH_TRANSITIONS[batch.state]:
        raise Conflict(
            "invalid_transition",
            f"This batch is {batch.state}; it cannot become {to}.",
        )
    now = timezone.now()
    batch.state = to
    if to == BatchState.RUNNING:
        batch.started_at = now
    if to in BATCH_FINISHED:
        batch.finished_at = now


def _recount(batch: BatchRun) -> None:
    """Progress from the rows themselves (so a redelivered chunk cannot count twice)."""
    figures = batch.items.aggregate(
        succeeded=Count("pk", filter=Q(state=ItemState.SUCCEEDED)),
        failed=Count("pk", filter=Q(state=ItemState.FAILED)),
        tokens_in=Sum("tokens_in"),
        tokens_out=Sum("tokens_out"),
        cost=Sum("cost"),
    )
    batch.succeeded_count = figures["succeeded"]
    batch.failed_count = figures["failed"]
    batch.tokens_in = figures["tokens_in"] or 0
    batch.tokens_out = figures["tokens_out"] or 0
    batch.cost = figures["cost"] or Decimal(0)


PROGRESS_FIELDS = ["succeeded_count", "failed_count", "tokens_in", "tokens_out", "cost"]


def _item_outcome(result: Any) -> dict[str, Any]:
    from apps.gateway.pipeline import UpstreamFailed

    now = timezone.now()
    if isinstance(result, UpstreamFailed):
        return {
            "state": ItemState.FAILED,
            "error_code": result.code,
            "error": result.message,
            "latency_ms": result.result.latency_ms,
            "call_id": result.result.call_id,
            "finished_at": now,
        }
    if isinstance(result, ApplicationError):
        return {
            "state": ItemState.FAILED,
            "error_code": result.code,
            "error": _error_text(result),
            "finished_at": now,
        }
    return {
        "state": ItemState.SUCCEEDED,
        "output": result.output,
        "tokens_in": result.tokens_in,
        "tokens_out": result.tokens_out,
        "cost": result.cost,
        "latency_ms": result.latency_ms,
        "call_id": result.call_id,
        "error_code": "",
        "error": "",
        "finished_at": now,
    }


def batch_run_chunk(*, batch_id, start: int) -> int | None:
    """Run the unfinished rows of the chunk that begins at row ``start`` (the worker); returns
    where the next chunk begins, or None when this chunk enqueues nothing more.

    Rows already finished are skipped and results are written only over unfinished rows, so a
    chunk delivered twice calls nothing twice once the first delivery is done; only the chunk
    the batch's ``cursor`` names moves it on, so a redelivered chunk does not start a second
    chain. A batch that was cancelled or has ended runs nothing more.
    """
    from apps.gateway.models import CallSource
    from apps.gateway.pipeline import run_many_sync

    with transaction.atomic():
        batch = _lock_batch(batch_id)
        if batch.state in BATCH_FINISHED:
            return None
        if batch.state == BatchState.QUEUED:
            _move_batch(batch, BatchState.RUNNING)
            batch.save(update_fields=["state", "started_at"])
        end = start + batch.chunk_size
        items = list(
            batch.items.filter(index__gte=start, index__lt=end, state__in=ITEM_PENDING).order_by(
                "index"
            )
        )
        if items:
            BatchItem.objects.filter(pk__in=[i.pk for i in items]).update(state=ItemState.RUNNING)
    if items:
        try:
            target = _pipeline_target(batch)
        except ApplicationError as exc:
            results: list[Any] = [exc] * len(items)
        else:
            results = run_many_sync(
                target,
                [{"variables": item.variables} for item in items],
                concurrency=batch.concurrency,
                source=CallSource.BATCH,
            )
        with transaction.atomic():
            for item, result in zip(items, results, strict=True):
                BatchItem.objects.filter(pk=item.pk).exclude(state__in=ITEM_FINISHED).update(
                    **_item_outcome(result)
                )
    with transaction.atomic():
        batch = _lock_batch(batch_id)
        _recount(batch)
        if batch.state in BATCH_FINISHED or batch.cursor != start:
            batch.save(update_fields=PROGRESS_FIELDS)
            return None
        if end < batch.total:
            batch.cursor = end
            batch.save(update_fields=[*PROGRESS_FIELDS, "cursor"])
            return end
        if batch.succeeded_count or not batch.total:
            _move_batch(batch, BatchState.SUCCEEDED)
        else:
            _move_batch(batch, BatchState.FAILED)
            first = batch.items.filter(state=ItemState.FAILED).order_by("index").first()
            batch.error_message = "Every row failed" + (
                f"; row {first.index}: {first.error}" if first else "."
            )
        batch.save(update_fields=[*PROGRESS_FIELDS, "state", "finished_at", "error_message"])
    return None


def _stop_pending(batch: BatchRun, note: str) -> None:
    batch.items.filter(state__in=ITEM_PENDING).update(state=ItemState.CANCELLED, error=note)


def batch_run_cancel(*, actor: User, batch: BatchRun) -> BatchRun:
    """Stop a queued or running batch: rows not yet started are not run. Calls already in
    flight finish and are recorded (they are paid for)."""
    with transaction.atomic():
        batch = BatchRun.objects.select_for_update().select_related("team").get(pk=batch.pk)
        if not may_cancel(actor, batch):
            raise Forbidden(
                "forbidden",
                "Only whoever started this batch, or a product manager or admin of team "
                f"{batch.team.slug}, can cancel it.",
            )
        before = batch.state
        _move_batch(batch, BatchState.CANCELLED)
        batch.cancelled_by = actor
        _stop_pending(batch, "Not run: the batch was cancelled.")
        _recount(batch)
        batch.save()
        audit_record(
            actor=actor,
            verb="batch_run.cancelled",
            obj=batch,
            product_id=batch.product_id,
            before={"state": before},
            after={
                "state": batch.state,
                "succeeded": batch.succeeded_count,
                "failed": batch.failed_count,
                "not_run": batch.total - batch.done_count,
            },
        )
    return batch


def batch_run_fail(*, batch_id, message: str) -> BatchRun:
    """End an active batch as failed (the worker, when a chunk keeps breaking)."""
    with transaction.atomic():
        batch = _lock_batch(batch_id)
        if batch.state in BATCH_FINISHED:
            return batch
        _move_batch(batch, BatchState.FAILED)
        batch.error_message = message
        _stop_pending(batch, f"Not run: the batch stopped: {message}")
        _recount(batch)
        batch.save()
    return batch
