"""Evaluation runs: who may start and see them, every write to them, and the worker's steps.

A run is a release (or a prompt version + a model version) against one suite version. It
records what it ran with when it is created — the suite version, the release's fingerprint, the
content hash of the dataset version the cases were imported from, the harness version — and
moves queued → running → succeeded | failed | cancelled (``RUN_TRANSITIONS``; ``_move`` is the
one place a run's state changes). Results are written by the worker only; no API accepts them.

Who (decided here, documented in docs/evaluations.md):

- a run belongs to the team that owns its target (the release's product, or the prompt
  version's prompt); members of that team see it, whatever their role; auditors and superusers
  see every run; out of scope is a 404;
- product managers, reviewers and admins of that team start runs (a run calls models and costs
  money; reviewers re-run the evidence of what they review); developers and auditors do not;
- whoever started a run, and the team's product managers and admins, cancel it.

The audit trail records ``eval_run.created``, ``eval_run.cancelled`` and ``eval_run.finished``
(by the system, with the state it finished in). Results, counters and progress are worker
telemetry, like the ``gateway.ProviderCall`` each result links to, and are not audited.

How a run runs (``evaluations.tasks`` are the thin Celery wrappers):

- ``eval_run_start`` moves it to running (total = its cases) unless its target cannot be called
  at all (the release's or versions' model has no provider, or it is disabled): then it fails at
  once, with the reason, having called nothing.
- The cases, in suite order, are run by a chain of **chunk** tasks, one at a time per run. A
  chunk starts at rank ``start`` of the cases (``cursor``) and keeps up to ``concurrency`` calls
  in flight with a sliding window (no gap between pages of cases), each call also holding a
  lease of its provider's limiter (``evaluations.limiter``, shared by every worker), for at most
  ``EVALUATIONS_CHUNK_SECONDS`` (30 s); then it lets its last calls finish, moves the cursor and
  the next chunk (on any worker) goes on from there. Results are written as they come, every
  ``EVALUATIONS_FLUSH_SECONDS`` (0.5 s), with ``ignore_conflicts`` on the unique (run, case):
  a case that has a result is never called again and a redelivered chunk writes nothing twice.
  The counters are recounted from the results at every write, never incremented.
- A chunk is idempotent: one whose ``start`` is no longer the run's cursor (it already handed
  on), of an older ``epoch``, or of a run no longer running, does nothing; one redelivered
  before it handed on (its worker died: ``acks_late`` + ``reject_on_worker_lost``) runs again
  the cases of its range that have no result.
- A lost chain is restarted by ``eval_run_recover``: when a worker starts it takes over the runs
  whose last chunk ran on a worker of its name (that chunk died with the previous process), and
  the periodic sweep takes over runs with no sign of life for ``EVALUATIONS_STALL_SECONDS``
  (120 s). Taking over bumps the run's ``epoch`` (chunks of the older chain then do nothing)
  and starts a chain from the first case, which skips every case that has a result. This is
  what makes a run survive a killed worker on the filesystem broker too, which deletes a message
  when it hands it out (so a killed worker's message is gone, not redelivered).
- The chunk that runs out of cases finishes the run: aggregates (``evaluations.aggregates``),
  pass rate, succeeded — or failed when every case's call failed (nothing was evaluated).
- Cancelling stops the run at once; chunks that start later do nothing, calls already in flight
  finish and are recorded (they are paid for), and the figures are recomputed from what ran.

A case passes when all its checks pass (``assertions.run_checks``; no checks at all passes).
A case whose call failed after the pipeline's own retries and fallbacks, or whose variables the
prompt refuses, is an ``error`` result: not passed, no checks, the error text kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.db import connections, transaction
from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from apps.accounts.models import Team, User
from apps.accounts.roles import ADMIN, AUTHOR_ROLES, PRODUCT_MANAGER, REVIEWER
from apps.audit.services import audit_record
from apps.catalog.models import ModelVersion, PromptTemplateVersion
from apps.core.exceptions import ApplicationError, Conflict, Forbidden, NotFound
from apps.releases.models import Release
from apps.releases.selectors import RunTarget, run_target_for

from .aggregates import run_aggregates
from .models import (
    ACTIVE_STATES,
    DEFAULT_CONCURRENCY,
    MAX_CONCURRENCY,
    MIN_CONCURRENCY,
    RUN_TRANSITIONS,
    TERMINAL_STATES,
    CrRole,
    EvalCase,
    EvalResult,
    EvalRun,
    EvalSuite,
    EvalSuiteVersion,
    ResultOutcome,
    RunState,
)
from .selectors import suite_version_list_for

logger = logging.getLogger(__name__)

# Bump when the runner or the meaning of a check changes: results of different harness versions
# are not comparable case by case.
HARNESS_VERSION = "1.0"

DEFAULT_CHUNK_SECONDS = 30.0
DEFAULT_FLUSH_SECONDS = 0.5
DEFAULT_STALL_SECONDS = 120.0
FLUSH_ROWS = 200  # write early when this many results wait
PAGE_CASES = 200  # cases read per query by a chunk
LEASE_REUSE_SECONDS = 1.0  # how long a lane keeps a provider slot for back-to-back calls
ERROR_EXCERPT = 2_000  # characters of an error kept on a result
# Assertion types that call a model (the judge): their checks run off the event loop.
MODEL_CHECKS = frozenset({"llm_judge"})


def chunk_seconds() -> float:
    return float(getattr(settings, "EVALUATIONS_CHUNK_SECONDS", DEFAULT_CHUNK_SECONDS))


def flush_seconds() -> float:
    return float(getattr(settings, "EVALUATIONS_FLUSH_SECONDS", DEFAULT_FLUSH_SECONDS))


def stall_seconds() -> float:
    return float(getattr(settings, "EVALUATIONS_STALL_SECONDS", DEFAULT_STALL_SECONDS))


def task_queue() -> str | None:
    """The Celery queue runs go to (``EVALUATIONS_TASK_QUEUE``; default: Celery's)."""
    return getattr(settings, "EVALUATIONS_TASK_QUEUE", None) or None


# --- permissions -------------------------------------------------------------------------------

RUN_ROLES = frozenset({PRODUCT_MANAGER, REVIEWER, ADMIN})
CANCEL_ROLES = AUTHOR_ROLES


def may_start(user: User, team: Team | None) -> bool:
    """May ``user`` start a run of a target owned by ``team``?"""
    if user.is_superuser:
        return True
    return team is not None and user.has_role(*RUN_ROLES, team=team)


def may_start_anywhere(user: User) -> bool:
    return user.is_superuser or user.has_role(*RUN_ROLES)


def may_cancel(user: User, run: EvalRun) -> bool:
    if user.is_superuser or (run.created_by_id is not None and run.created_by_id == user.pk):
        return True
    return run.team_id is not None and user.has_role(*CANCEL_ROLES, team=run.team)


# --- reads ---------------------------------------------------------------------------------------

RUN_RELATED = (
    "team",
    "suite_version",
    "suite_version__suite",
    "release",
    "release__product",
    "prompt_version",
    "prompt_version__prompt",
    "model_version",
    "model_version__model",
    "change_request",
    "created_by",
    "cancelled_by",
)


def _sees_all(user: User) -> bool:
    return user.is_superuser or user.has_perm("catalog.view_product")


def run_list_for(*, user: User) -> QuerySet[EvalRun]:
    """The runs ``user`` may see (their teams' runs; every run for auditors and superusers),
    newest first, with what the list and detail pages and the API show."""
    qs = EvalRun.objects.select_related(*RUN_RELATED).order_by("-created_at", "pk")
    if _sees_all(user):
        return qs
    return qs.filter(team_id__in=user.team_ids())


def result_list(*, run: EvalRun, outcome: str | None = None) -> QuerySet[EvalResult]:
    """The results of a run the caller already found in scope, in suite order."""
    qs = EvalResult.objects.filter(run=run).select_related("case").order_by("case__position", "pk")
    return qs.filter(outcome=outcome) if outcome else qs


def latest_run(
    *, release: Release, suite_version: EvalSuiteVersion, states=(RunState.SUCCEEDED,)
) -> EvalRun | None:
    """The newest run of ``release`` against ``suite_version`` in one of ``states`` (no scope:
    for services that already checked theirs, such as the change-request gate)."""
    return (
        EvalRun.objects.filter(release=release, suite_version=suite_version, state__in=states)
        .select_related("suite_version", "release")
        .order_by("-created_at")
        .first()
    )


def latest_suite_version(suite: EvalSuite) -> EvalSuiteVersion | None:
    """The newest version of ``suite`` that is not deprecated."""
    return (
        EvalSuiteVersion.objects.filter(suite=suite, deprecated_at__isnull=True)
        .select_related("suite")
        .order_by("-version")
        .first()
    )


# --- creating a run ------------------------------------------------------------------------------


def _check_concurrency(concurrency: Any) -> int:
    if concurrency is None:
        return DEFAULT_CONCURRENCY
    if (
        isinstance(concurrency, bool)
        or not isinstance(concurrency, int)
        or not MIN_CONCURRENCY <= concurrency <= MAX_CONCURRENCY
    ):
        raise ApplicationError(
            "invalid",
            "concurrency is the number of the run's calls in flight at once: a whole number "
            f"from {MIN_CONCURRENCY} to {MAX_CONCURRENCY}.",
            {"concurrency": [f"From {MIN_CONCURRENCY} to {MAX_CONCURRENCY}."]},
        )
    return concurrency


def _check_change_request(change_request, cr_role: str, target: RunTarget) -> None:
    if cr_role not in ("", *CrRole.values):
        raise ApplicationError(
            "invalid",
            f"cr_role is {', '.join(CrRole.values)} or empty, not {cr_role!r}.",
            {"cr_role": ["Not a role of a run in a change request."]},
        )
    if change_request is None:
        if cr_role:
            raise ApplicationError(
                "invalid",
                "A cr_role needs the change request it belongs to.",
                {"change_request": ["Required with cr_role."]},
            )
        return
    if not cr_role:
        raise ApplicationError(
            "invalid",
            "Say what the run is to the change request: its baseline or its proposed release.",
            {"cr_role": ["Required with a change request."]},
        )
    expected_id = (
        change_request.baseline_id if cr_role == CrRole.BASELINE else change_request.proposed_id
    )
    if target.release is None or target.release.pk != expected_id:
        raise ApplicationError(
            "invalid",
            f"A {cr_role} run of a change request runs its {cr_role} release.",
            {"release": [f"Not the change request's {cr_role} release."]},
        )


def _snapshot(run: EvalRun) -> dict:
    suite_version = run.suite_version
    return {
        "state": run.state,
        "suite_version": str(run.suite_version_id),
        "suite": f"{suite_version.suite.slug}@v{suite_version.version}",
        "release": str(run.release_id) if run.release_id else None,
        "prompt_version": str(run.prompt_version_id),
        "model_version": str(run.model_version_id),
        "change_request": str(run.change_request_id) if run.change_request_id else None,
        "cr_role": run.cr_role,
        "concurrency": run.concurrency,
        "total": run.total,
        "release_fingerprint": run.release_fingerprint,
        "dataset_version_hash": run.dataset_version_hash,
        "harness_version": run.harness_version,
    }


def _product_id(run: EvalRun):
    if run.release_id is None:
        return None
    release = run.release
    return release.product_id if release is not None else None


def _enqueue_start(run: EvalRun) -> None:
    from .tasks import start_run

    queue = task_queue()
    options = {"queue": queue} if queue else {}
    run_id = str(run.pk)
    transaction.on_commit(lambda: start_run.apply_async(args=[run_id], **options))


def eval_run_create(
    *,
    actor: User,
    suite_version: EvalSuiteVersion,
    release: Release | None = None,
    prompt_version: PromptTemplateVersion | None = None,
    model_version: ModelVersion | None = None,
    change_request=None,
    cr_role: str = "",
    concurrency: int | None = None,
) -> EvalRun:
    """Queue ``suite_version`` against a release (or a prompt version + a model version).

    Checks, in order: the target is visible to the actor (else 404); the actor may start runs
    in the target's team (else 403); the suite version is visible (404), not deprecated and has
    cases (400); the concurrency and the change-request role make sense (400). Pins what the run
    runs with, records ``eval_run.created`` and enqueues the run when the transaction commits.
    """
    target = run_target_for(
        actor=actor, release=release, prompt_version=prompt_version, model_version=model_version
    )
    if not may_start(actor, target.team):
        raise Forbidden(
            "forbidden",
            f"Only product managers, reviewers and admins of team {target.team.slug} can start "
            "evaluation runs of its products: a run calls a model and costs money. Developers "
            "and auditors read runs but do not start them.",
        )
    if suite_version is None:
        raise ApplicationError(
            "invalid", "Pick the suite version to run.", {"suite_version": ["Required."]}
        )
    found = suite_version_list_for(user=actor).filter(pk=suite_version.pk).first()
    if found is None:
        raise NotFound("not_found", "No such suite version, or it is outside your teams.")
    if found.is_deprecated:
        raise ApplicationError(
            "deprecated",
            f"Suite version {found} is deprecated"
            + (f" ({found.deprecation_reason})" if found.deprecation_reason else "")
            + ": run a current version of the suite.",
            {"suite_version": ["Deprecated."]},
        )
    concurrency = _check_concurrency(concurrency)
    _check_change_request(change_request, cr_role or "", target)
    source = found.source_dataset_version
    with transaction.atomic():
        total = found.cases.count()
        if not total:
            raise ApplicationError(
                "empty_suite",
                f"Suite version {found} has no cases: add cases to the suite first.",
                {"suite_version": ["No cases."]},
            )
        run = EvalRun.objects.create(
            suite_version=found,
            release=target.release,
            prompt_version=target.prompt_version,
            model_version=target.model_version,
            change_request=change_request,
            cr_role=cr_role or "",
            team=target.team,
            concurrency=concurrency,
            total=total,
            release_fingerprint=target.release.fingerprint if target.release else "",
            dataset_version_hash=source.content_hash if source is not None else "",
            harness_version=HARNESS_VERSION,
            created_by=actor,
        )
        audit_record(
            actor=actor,
            verb="eval_run.created",
            obj=run,
            product_id=target.product.pk if target.product else None,
            after=_snapshot(run),
        )
        _enqueue_start(run)
    return run


# --- transitions ----------------------------------------------------------------------------------


def _lock(run_id) -> EvalRun:
    return EvalRun.objects.select_for_update().get(pk=run_id)


def _move(run: EvalRun, to: str, **fields: Any) -> None:
    """The one place a run's state changes; the caller holds the row lock. Writes ``to`` and
    ``fields`` (housekeeping fields only) and mirrors them on ``run``."""
    if to not in RUN_TRANSITIONS[run.state]:
        raise Conflict(
            "invalid_transition",
            f"This run is {run.state}; it cannot become {to}"
            + (
                " (only a queued or running run can be cancelled)."
                if to == RunState.CANCELLED
                else "."
            ),
        )
    now = timezone.now()
    changes: dict[str, Any] = {"state": to, "updated_at": now, **fields}
    if to == RunState.RUNNING and "started_at" not in fields:
        changes["started_at"] = now
    if to in TERMINAL_STATES and "finished_at" not in fields:
        changes["finished_at"] = now
    EvalRun.objects.filter(pk=run.pk).update(**changes)
    for name, value in changes.items():
        setattr(run, name, value)


def _recount(run_id) -> dict[str, Any]:
    """The counters from the results themselves (so a redelivered chunk cannot count twice)."""
    figures = EvalResult.objects.filter(run_id=run_id).aggregate(
        completed=Count("pk"),
        passed=Count("pk", filter=Q(outcome=ResultOutcome.PASS)),
        errored=Count("pk", filter=Q(outcome=ResultOutcome.ERROR)),
        cost=Sum("cost"),
    )
    figures["cost"] = figures["cost"] or Decimal(0)
    return figures


def _figures(run: EvalRun, counts: dict[str, Any], *, finished_at=None) -> dict[str, Any]:
    """Counters, aggregates and pass rate to store on ``run`` (as of ``finished_at``)."""
    run.finished_at = finished_at or run.finished_at
    aggregates = run_aggregates(run)
    return {
        **counts,
        "aggregates": aggregates,
        "pass_rate": counts["passed"] / run.total if run.total else None,
    }


def _audit_finished(run: EvalRun) -> None:
    audit_record(
        actor=None,
        verb="eval_run.finished",
        obj=run,
        product_id=_product_id(run),
        after={
            "state": run.state,
            "total": run.total,
            "completed": run.completed,
            "passed": run.passed,
            "errored": run.errored,
            "pass_rate": run.pass_rate,
            "cost": str(run.cost),
            "error": run.error,
        },
    )


def _finish(run: EvalRun, counts: dict[str, Any]) -> None:
    """End a running run whose every case has a result: succeeded, or failed when every call
    failed (nothing could be evaluated)."""
    now = timezone.now()
    figures = _figures(run, counts, finished_at=now)
    if run.total and counts["errored"] >= run.total:
        first = (
            EvalResult.objects.filter(run=run, outcome=ResultOutcome.ERROR)
            .select_related("case")
            .order_by("case__position")
            .first()
        )
        why = f" The first, {first.case.key}: {first.error}" if first else ""
        _move(
            run,
            RunState.FAILED,
            finished_at=now,
            error=f"Every case's call failed, so nothing was evaluated.{why}"[:ERROR_EXCERPT],
            **figures,
        )
    else:
        _move(run, RunState.SUCCEEDED, finished_at=now, **figures)
    _audit_finished(run)


def eval_run_cancel(*, actor: User, run: EvalRun) -> EvalRun:
    """Stop a queued or running run: cases not yet started are not run; calls already in flight
    finish and are recorded. Records ``eval_run.cancelled``."""
    with transaction.atomic():
        locked = EvalRun.objects.select_for_update().get(pk=run.pk)
        locked = run_list_for(user=actor).filter(pk=locked.pk).first()
        if locked is None:
            raise NotFound("not_found", "No such run, or it is outside your teams.")
        if not may_cancel(actor, locked):
            raise Forbidden(
                "forbidden",
                "Only whoever started this run, or a product manager or admin of team "
                f"{locked.team.slug if locked.team else '?'}, can cancel it.",
            )
        before = locked.state
        counts = _recount(locked.pk)
        now = timezone.now()
        figures = _figures(locked, counts, finished_at=now)
        _move(locked, RunState.CANCELLED, finished_at=now, cancelled_by=actor, **figures)
        audit_record(
            actor=actor,
            verb="eval_run.cancelled",
            obj=locked,
            product_id=_product_id(locked),
            before={"state": before},
            after={
                "state": locked.state,
                "completed": locked.completed,
                "passed": locked.passed,
                "not_run": locked.total - locked.completed,
            },
        )
    return locked


def eval_run_fail(*, run_id, message: str) -> EvalRun:
    """End an active run as failed (the worker, when a chunk keeps breaking)."""
    with transaction.atomic():
        run = _lock(run_id)
        if run.state not in ACTIVE_STATES:
            return run
        now = timezone.now()
        figures = _figures(run, _recount(run.pk), finished_at=now)
        _move(run, RunState.FAILED, finished_at=now, error=message[:ERROR_EXCERPT], **figures)
        _audit_finished(run)
    return run


# --- the worker: starting -------------------------------------------------------------------------


def _pipeline_target(run: EvalRun):
    """The gateway target of a stored run (raises ``ApplicationError`` when it cannot be
    resolved)."""
    from apps.gateway.pipeline import resolve_target

    if run.release_id:
        release = Release.objects.select_related("product", "prompt_version", "model_version").get(
            pk=run.release_id
        )
        return resolve_target(release=release)
    return resolve_target(
        prompt_version=PromptTemplateVersion.objects.get(pk=run.prompt_version_id),
        model_version=ModelVersion.objects.get(pk=run.model_version_id),
    )


def _unrunnable(run: EvalRun) -> str:
    """Why the run cannot call anything at all ("" when it can)."""
    try:
        target = _pipeline_target(run)
    except ApplicationError as exc:
        return f"The run's target cannot be called: {exc.message}"
    legs = [leg for leg in target.legs if not leg.unavailable and leg.provider is not None]
    if not legs:
        reasons = "; ".join(leg.unavailable or "no provider" for leg in target.legs)
        return f"No model of the run's target can be called: {reasons}"
    return ""


def _start_locked(run: EvalRun, worker: str) -> bool:
    """queued → running (the caller holds the row lock), or failed when the target cannot be
    called at all; True when the run now runs."""
    problem = _unrunnable(run)
    if problem:
        figures = _figures(run, _recount(run.pk), finished_at=timezone.now())
        _move(run, RunState.FAILED, error=problem[:ERROR_EXCERPT], **figures)
        _audit_finished(run)
        return False
    total = EvalCase.objects.filter(suite_version_id=run.suite_version_id).count()
    _move(run, RunState.RUNNING, total=total, cursor=0, heartbeat_at=timezone.now(), worker=worker)
    return True


def eval_run_start(*, run_id, worker: str = "") -> tuple[int, int] | None:
    """Move a queued run to running (the worker); returns its first chunk as ``(start,
    epoch)``, or None when there is nothing to do (already started, cancelled, or failed here
    because its target cannot be called). ``eval_run_chunk`` at rank 0 of a queued run starts
    it the same way (the tasks save a broker round trip so)."""
    with transaction.atomic():
        run = _lock(run_id)
        if run.state != RunState.QUEUED or not _start_locked(run, worker[:200]):
            return None
        return 0, run.epoch


# --- the worker: one chunk ------------------------------------------------------------------------


@dataclass
class ChunkOutcome:
    end: int  # the rank after the last case this chunk took (ran or found done)
    exhausted: bool  # no case is left after ``end``
    stopped: bool  # the run stopped this chain (cancelled, ended, or taken over)
    written: int = 0  # results this chunk wrote


def _error_text(exc: ApplicationError) -> str:
    """The refusal's message, with its per-field details when they add to it."""
    details = [
        f"{key}: {message}"
        for key, messages in (exc.extra or {}).items()
        for message in (messages if isinstance(messages, list) else [messages])
        if message not in (None, "") and str(message) not in exc.message
    ]
    return exc.message + (f" ({'; '.join(details)})" if details else "")


def _needs_model(assertions) -> bool:
    for spec in assertions or []:
        if isinstance(spec, dict) and (
            spec.get("type") in MODEL_CHECKS
            or (spec.get("type") == "similarity" and spec.get("method") == "semantic")
        ):
            return True
    return False


def _checks_off_loop(assertions, observation, judge):
    """``run_checks`` in a worker thread (a judge may call a model); its connection is closed
    after, since the thread's lifetime is the event loop's."""
    from .assertions import run_checks

    try:
        return run_checks(assertions, observation, judge=judge)
    finally:
        connections.close_all()


def _page(run: EvalRun, offset: int) -> tuple[list[EvalCase], set]:
    """``PAGE_CASES`` cases of the run from rank ``offset`` (suite order), and which of them
    already have a result."""
    cases = list(
        EvalCase.objects.filter(suite_version_id=run.suite_version_id)
        .order_by("position", "pk")
        .only("pk", "key", "position", "variables", "expected", "assertions")[
            offset : offset + PAGE_CASES
        ]
    )
    done = set(
        EvalResult.objects.filter(run_id=run.pk, case_id__in=[c.pk for c in cases]).values_list(
            "case_id", flat=True
        )
    )
    return cases, done


def _write(run_id, epoch: int, rows: list[EvalResult], worker: str) -> bool:
    """Write results (a case that has one keeps it) and the recounted counters; True while this
    chain should go on (the run is running and still on ``epoch``)."""
    with transaction.atomic():
        run = EvalRun.objects.select_for_update().only("pk", "state", "epoch").get(pk=run_id)
        going = run.state == RunState.RUNNING and run.epoch == epoch
        now = timezone.now()
        fields: dict[str, Any] = {"heartbeat_at": now, "worker": worker[:200]} if going else {}
        if rows:
            EvalResult.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)
            fields.update(_recount(run_id), updated_at=now)
        if fields:  # nothing new and not ours any more: nothing to write
            EvalRun.objects.filter(pk=run_id).update(**fields)
    return going


@dataclass
class _Chunk:
    """One chunk's calls: ``run.concurrency`` lanes take the chunk's cases in suite order, one
    call at a time each, so that many calls are in flight with no gap between cases or pages.
    A lane holds a lease of the provider's limiter for back-to-back calls up to
    ``LEASE_REUSE_SECONDS``, then gives it back and queues again (runs sharing a provider take
    turns at least that often). Results are buffered and written every ``flush_seconds``."""

    run: EvalRun
    target: Any
    start: int
    epoch: int
    worker: str
    deadline: float
    judge: Any
    buffer: list[EvalResult] = field(default_factory=list)
    stop: bool = False
    written: int = 0
    failure: BaseException | None = None
    # The cases read ahead, and where the chunk stands in the run's ranks.
    pending: deque = field(default_factory=deque)
    offset: int = 0  # the rank of the next case to read
    end: int = 0  # the rank after the last case handed to a lane (or found done)
    taken: int = 0  # cases handed to lanes (a chunk takes at least one, whatever the time)
    exhausted: bool = False

    async def run_all(self) -> ChunkOutcome:
        from apps.gateway import pipeline

        from .limiter import Limiter, aclose_clients

        # The limiter of the first provider that can be called (the chain's primary, or the
        # fallback that stands in for a missing one).
        primary = next((leg.provider for leg in self.target.legs if leg.provider), None)
        self.limiter = Limiter.for_provider(primary)
        self.wake = asyncio.Event()
        self.reading = asyncio.Lock()
        self.offset = self.end = self.start
        done_flushing = asyncio.Event()
        flusher = asyncio.create_task(self._flusher(done_flushing))
        try:
            lanes = max(1, self.run.concurrency)
            await asyncio.gather(*(self._lane() for _ in range(lanes)))
            done_flushing.set()
            self.wake.set()
            await flusher
            await self._flush()
        finally:
            done_flushing.set()
            if not flusher.done():
                flusher.cancel()
            await self.limiter.aclose()
            await aclose_clients()
            await pipeline.aclose()
        if self.failure is not None:
            raise self.failure
        # Out of cases when every page was read and what is left of the last one is done.
        exhausted = self.exhausted and all(case is None for case in self.pending)
        return ChunkOutcome(
            end=self.offset if exhausted else self.end,
            exhausted=exhausted,
            stopped=self.stop,
            written=self.written,
        )

    async def _next_case(self) -> EvalCase | None:
        """The next case without a result, or None when the chunk is over (no case left, the
        time is up, or the run stopped this chain)."""
        while True:
            if self.stop or (self.taken and time.monotonic() >= self.deadline):
                return None
            if self.pending:
                case = self.pending.popleft()
                self.end += 1
                if case is not None:
                    self.taken += 1
                    return case
                continue  # a case that already has a result
            if self.exhausted:
                return None
            async with self.reading:
                if not self.pending and not self.exhausted:
                    cases, done = await sync_to_async(_page, thread_sensitive=True)(
                        self.run, self.offset
                    )
                    self.offset += len(cases)
                    self.exhausted = len(cases) < PAGE_CASES
                    self.pending = deque(None if c.pk in done else c for c in cases)

    async def _lane(self) -> None:
        from apps.gateway import pipeline
        from apps.gateway.models import CallSource

        lease, leased_at = None, 0.0
        try:
            while (case := await self._next_case()) is not None:
                if lease is not None and time.monotonic() - leased_at >= LEASE_REUSE_SECONDS:
                    await self.limiter.release(lease)
                    lease = None
                if lease is None:
                    lease, leased_at = await self.limiter.acquire(), time.monotonic()
                try:
                    result: Any = await pipeline.run_chat(
                        self.target, variables=case.variables, source=CallSource.EVALUATION
                    )
                except ApplicationError as exc:  # UpstreamFailed (recorded) or bad variables
                    result = exc
                self.buffer.append(await self._result(case, result))
                if len(self.buffer) >= FLUSH_ROWS:
                    self.wake.set()
        except Exception as exc:  # a bug: stop the chunk; the task's retry runs what is left
            logger.exception("evaluation run %s: a call broke", self.run.pk)
            self.failure = self.failure or exc
            self.stop = True
        finally:
            if lease is not None:
                await self.limiter.release(lease)

    async def _result(self, case: EvalCase, result: Any) -> EvalResult:
        from apps.gateway.pipeline import UpstreamFailed

        from .assertions import Observation, run_checks

        base = {"run_id": self.run.pk, "case_id": case.pk}
        if isinstance(result, UpstreamFailed):
            failed = result.result
            return EvalResult(
                **base,
                outcome=ResultOutcome.ERROR,
                error=result.message[:ERROR_EXCERPT],
                latency_ms=failed.latency_ms,
                call_id=failed.call_id,
            )
        if isinstance(result, ApplicationError):
            return EvalResult(
                **base, outcome=ResultOutcome.ERROR, error=_error_text(result)[:ERROR_EXCERPT]
            )
        observation = Observation(
            output=result.output,
            expected=case.expected,
            latency_ms=result.latency_ms,
            cost=result.cost,
            variables=case.variables,
        )
        if _needs_model(case.assertions):
            checks = await sync_to_async(_checks_off_loop, thread_sensitive=False)(
                case.assertions, observation, self.judge
            )
        else:
            checks = run_checks(case.assertions, observation, judge=self.judge)
        passed = all(check.passed for check in checks)
        return EvalResult(
            **base,
            outcome=ResultOutcome.PASS if passed else ResultOutcome.FAIL,
            output=result.output,
            checks=[check.as_dict() for check in checks],
            latency_ms=result.latency_ms,
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
            cost=result.cost,
            call_id=result.call_id,
        )

    async def _flusher(self, done: asyncio.Event) -> None:
        interval = flush_seconds()
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=interval)
            self.wake.clear()
            if done.is_set():
                return
            await self._flush()

    async def _flush(self) -> None:
        from apps.gateway import recorder

        rows, self.buffer = self.buffer, []
        await recorder.flush()  # the ProviderCall rows the results point at
        going = await sync_to_async(_write, thread_sensitive=True)(
            self.run.pk, self.epoch, rows, self.worker
        )
        self.written += len(rows)
        if not going:
            self.stop = True


def _run_chunk_calls(run: EvalRun, target, *, start: int, epoch: int, worker: str) -> ChunkOutcome:
    from .judging import Judge

    chunk = _Chunk(
        run=run,
        target=target,
        start=start,
        epoch=epoch,
        worker=worker,
        deadline=time.monotonic() + chunk_seconds(),
        judge=Judge(),
    )
    return async_to_sync(chunk.run_all)()


def eval_run_chunk(*, run_id, start: int = 0, epoch: int = 0, worker: str = "") -> int | None:
    """Run the chunk of ``run_id`` that begins at case rank ``start`` (the worker); returns the
    rank the next chunk begins at, or None when this chunk hands nothing on (the run finished,
    stopped, or this chunk is stale or a duplicate). The chunk at rank 0 of a queued run starts
    the run first. See the module's docstring."""
    worker = worker[:200]
    with transaction.atomic():
        run = _lock(run_id)
        queued = run.state == RunState.QUEUED and start == 0 and epoch == run.epoch
        if queued and not _start_locked(run, worker):
            return None
        if run.state != RunState.RUNNING or run.epoch != epoch or run.cursor != start:
            return None
        EvalRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now(), worker=worker)
    try:
        target = _pipeline_target(run)
    except ApplicationError as exc:
        eval_run_fail(run_id=run_id, message=f"The run's target cannot be called: {exc.message}")
        return None
    outcome = _run_chunk_calls(run, target, start=start, epoch=epoch, worker=worker)
    return _end_chunk(run_id, start=start, epoch=epoch, outcome=outcome, worker=worker)


def _end_chunk(run_id, *, start: int, epoch: int, outcome: ChunkOutcome, worker: str) -> int | None:
    with transaction.atomic():
        run = _lock(run_id)
        counts = _recount(run.pk)
        if run.state == RunState.CANCELLED:
            if outcome.written:  # calls that were in flight at the cancel: refresh the figures
                figures = _figures(run, counts)
                EvalRun.objects.filter(pk=run.pk).update(**figures, updated_at=timezone.now())
            return None
        if run.state != RunState.RUNNING or run.epoch != epoch or run.cursor != start:
            return None
        if not outcome.exhausted:
            EvalRun.objects.filter(pk=run.pk).update(
                cursor=outcome.end, heartbeat_at=timezone.now(), worker=worker[:200]
            )
            return outcome.end
        if counts["completed"] >= run.total:
            _finish(run, counts)
            return None
        # Every rank was taken but some cases have no result: run the chain once more from
        # the first case (it skips the cases done), unless this chunk already was that pass.
        missing = run.total - counts["completed"]
        if start == 0 and not outcome.written:
            figures = _figures(run, counts, finished_at=timezone.now())
            _move(
                run,
                RunState.FAILED,
                error=f"{missing} case(s) could not be run and have no result.",
                **figures,
            )
            _audit_finished(run)
            return None
        logger.warning("evaluation run %s: %d case(s) without a result; once more", run_id, missing)
        EvalRun.objects.filter(pk=run.pk).update(cursor=0, heartbeat_at=timezone.now())
        return 0


# --- the worker: restarting lost chains -----------------------------------------------------------


@dataclass(frozen=True)
class Restart:
    """What ``eval_run_recover`` asks the tasks to enqueue: ``start_run`` (``start`` is None) or
    the first chunk of a new chain."""

    run_id: str
    start: int | None = None
    epoch: int = 0


def eval_run_recover(*, worker: str = "", stall: float | None = None) -> list[Restart]:
    """Take over lost runs (the worker, at its start and periodically).

    A running run is lost when its last chunk ran on ``worker`` (a worker of that name is just
    starting, so that chunk died with its previous process) or when no chunk has shown a sign
    of life for ``stall`` seconds (``EVALUATIONS_STALL_SECONDS``). Its epoch is bumped (chunks
    of the lost chain then do nothing) and a new chain starts from the first case. A run still
    queued after ``stall`` seconds gets its start again (a duplicate start does nothing)."""
    stall = stall_seconds() if stall is None else stall
    cutoff = timezone.now() - timedelta(seconds=stall)
    lost = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True)
    if worker:
        lost |= Q(worker=worker)
    restarts: list[Restart] = []
    for run_id in EvalRun.objects.filter(lost, state=RunState.RUNNING).values_list("pk", flat=True):
        with transaction.atomic():
            run = _lock(run_id)
            still_lost = run.state == RunState.RUNNING and (
                run.heartbeat_at is None
                or run.heartbeat_at < cutoff
                or (worker and run.worker == worker)
            )
            if not still_lost:
                continue
            epoch = run.epoch + 1
            EvalRun.objects.filter(pk=run.pk).update(
                epoch=epoch, cursor=0, heartbeat_at=timezone.now(), worker=""
            )
            logger.warning(
                "evaluation run %s: chain lost (last on %s); restarting it as epoch %d",
                run.pk,
                run.worker or "?",
                epoch,
            )
            restarts.append(Restart(str(run.pk), 0, epoch))
    queued = EvalRun.objects.filter(state=RunState.QUEUED, created_at__lt=cutoff)
    restarts.extend(Restart(str(pk)) for pk in queued.values_list("pk", flat=True))
    return restarts
