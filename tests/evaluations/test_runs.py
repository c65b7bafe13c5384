"""Evaluation runs through the real pipeline and the built-in provider: the services, the chunk
chain, idempotency, cancel, failures, recovery of lost chains and the figures.

The worker's steps are called in the test's own process and transaction here
(``run_helpers.drain``); ``test_worker.py`` runs them in real worker processes.
"""

from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.accounts.roles import ADMIN, AUDITOR, DEVELOPER, REVIEWER
from apps.core.exceptions import ApplicationError
from apps.evaluations import runs, tasks
from apps.evaluations import services as suites
from apps.evaluations.aggregates import Row, aggregate, percentile, vary_value
from apps.evaluations.models import EvalResult, EvalRun
from apps.gateway.models import ProviderCall

from ..api_suite import last_seq, verbs_since
from ..factories import member, model_version, prompt_with_versions
from ..playground.factories import dataset_version
from .factories import case_dict, suite_with_cases
from .run_helpers import drain, failing_case, pm, runnable, started

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    return pm()


@pytest.fixture
def team(owner):
    return owner.memberships.first().team


@pytest.fixture
def rel(owner):
    return runnable(owner)


@pytest.fixture(autouse=True)
def _fast_retries(settings):
    settings.GATEWAY_BACKOFF_BASE_SECONDS = 0.001
    settings.GATEWAY_BACKOFF_CAP_SECONDS = 0.002


def results_of(run) -> dict[str, str]:
    return dict(EvalResult.objects.filter(run=run).values_list("case__key", "outcome"))


# --- a run from start to end ---------------------------------------------------------------------


def test_a_run_calls_every_case_once_and_records_its_figures(owner, rel):
    """GIVEN a suite of two passing cases and one failing case against a release
    WHEN the run is created and the worker's steps run
    THEN each case has one result linked to its ProviderCall (source evaluation), the counters
    and figures come from the results, and the trail holds created then finished."""
    version = suite_with_cases(owner, cases=[case_dict("a"), case_dict("b"), failing_case("c")])
    seq = last_seq()
    run = runs.eval_run_create(actor=owner, suite_version=version, release=rel)
    assert run.state == "queued" and run.total == 3 and run.team == rel.product.owner_team
    assert verbs_since(seq) == Counter({"eval_run.created": 1})
    assert drain(run) == 1  # one chunk: the cases fit in its time budget
    run.refresh_from_db()
    assert run.state == "succeeded" and run.started_at and run.finished_at
    assert (run.total, run.completed, run.passed, run.errored) == (3, 3, 2, 0)
    assert run.failed_count == 1
    assert run.pass_rate == pytest.approx(2 / 3)
    assert results_of(run) == {"a": "pass", "b": "pass", "c": "fail"}
    calls = ProviderCall.objects.filter(pk__in=run.results.values("call_id"))
    assert calls.count() == 3 and set(calls.values_list("source", flat=True)) == {"evaluation"}
    assert run.cost == sum(r.cost for r in run.results.all()) > 0
    agg = run.aggregates
    assert agg["pass_rate"] == pytest.approx(2 / 3)
    assert agg["per_assertion"] == {"contains": pytest.approx(2 / 3)}
    assert agg["assertion_counts"] == {"contains": {"passed": 2, "total": 3}}
    assert agg["latency_ms"]["p50"] is not None and agg["latency_ms"]["p95"] is not None
    assert agg["tokens"]["in"] > 0 and agg["tokens"]["out"] > 0
    assert Decimal(agg["cost"]) == run.cost
    assert agg["errored"] == 0 and agg["duration_seconds"] >= 0
    failed = run.results.get(case__key="c")
    assert failed.failed_checks[0]["type"] == "contains"
    assert "nowhere-to-be-seen" in failed.failed_checks[0]["detail"]
    assert failed.output == "[builtin] say c"
    assert verbs_since(seq) == Counter({"eval_run.created": 1, "eval_run.finished": 1})


def test_a_run_records_what_it_ran_with(owner, rel, team):
    """GIVEN a suite version imported from a dataset version
    THEN the run pins the suite version, the release fingerprint, the dataset version's content
    hash and the harness version."""
    dv = dataset_version(owner, [{"q": "say a"}], team=team)
    made = suite_with_cases(owner, team, [case_dict("a")])
    version = suites.suite_version_create(
        actor=owner,
        suite=made.suite,
        cases=[case_dict("a"), case_dict("b")],
        source_dataset_version=dv,
    )
    run = runs.eval_run_create(actor=owner, suite_version=version, release=rel)
    assert run.suite_version == version
    assert run.release_fingerprint == rel.fingerprint and len(run.release_fingerprint) == 64
    assert run.dataset_version_hash == dv.content_hash
    assert run.harness_version == runs.HARNESS_VERSION
    assert (run.prompt_version, run.model_version) == (rel.prompt_version, rel.model_version)


def test_a_prompt_version_and_model_version_pair_runs_too(owner, team):
    """GIVEN no release, a prompt version and a model version of the team
    THEN the run is scoped to the prompt's team and has no release fingerprint."""
    runnable(owner)
    _, (pv,) = prompt_with_versions(owner, "Answer.", team=team)
    mv = model_version(owner, team)
    version = suite_with_cases(owner, team)
    run = runs.eval_run_create(
        actor=owner, suite_version=version, prompt_version=pv, model_version=mv, concurrency=2
    )
    assert (run.team, run.release, run.release_fingerprint, run.concurrency) == (team, None, "", 2)
    drain(run)
    run.refresh_from_db()
    assert (run.state, run.passed) == ("succeeded", 2)


def test_the_task_runs_the_start_and_the_chunks(owner, rel):
    """``start_run`` starts the run and runs its first chunk in the same task."""
    run = started(owner, rel)
    assert tasks.start_run.apply(args=[str(run.pk)]).get() is None  # nothing left to hand on
    run.refresh_from_db()
    assert (run.state, run.completed) == ("succeeded", 2)


# --- refusals ------------------------------------------------------------------------------------


def _refused(code, **kwargs):
    with pytest.raises(ApplicationError) as caught:
        runs.eval_run_create(**kwargs)
    assert caught.value.code == code, caught.value.message
    return caught.value


def test_bad_input_is_refused_with_a_message_and_nothing_is_created(owner, rel, team):
    version = suite_with_cases(owner, team)
    seq = last_seq()
    both = _refused(
        "invalid",
        actor=owner,
        suite_version=version,
        release=rel,
        prompt_version=rel.prompt_version,
    )
    assert "not both" in both.message
    neither = _refused("invalid", actor=owner, suite_version=version)
    assert set(neither.extra) >= {"release", "prompt_version", "model_version"}
    assert (
        "suite_version" in _refused("invalid", actor=owner, suite_version=None, release=rel).extra
    )
    for bad in (0, 33, True, "4"):
        error = _refused(
            "invalid", actor=owner, suite_version=version, release=rel, concurrency=bad
        )
        assert "concurrency" in error.extra
    lonely = _refused(
        "invalid", actor=owner, suite_version=version, release=rel, cr_role="baseline"
    )
    assert "change_request" in lonely.extra
    odd = _refused("invalid", actor=owner, suite_version=version, release=rel, cr_role="odd")
    assert "cr_role" in odd.extra
    suites.suite_version_deprecate(actor=owner, version=version, reason="Superseded")
    gone = _refused("deprecated", actor=owner, suite_version=version, release=rel)
    assert "Superseded" in gone.message
    assert EvalRun.objects.count() == 0
    assert verbs_since(seq) == Counter({"eval_suite_version.deprecated": 1})


def test_a_change_request_run_must_run_the_requests_release(owner, rel, team):
    from apps.changes import services as changes

    from ..factories import release

    proposed = release(owner, rel.product, version="2.0.0")
    cr = changes.change_request_create(
        actor=owner, product=rel.product, title="New", rationale="Why", proposed=proposed
    )
    version = suite_with_cases(owner, team)
    wrong = _refused(
        "invalid",
        actor=owner,
        suite_version=version,
        release=rel,
        change_request=cr,
        cr_role="proposed",
    )
    assert "release" in wrong.extra
    _refused("invalid", actor=owner, suite_version=version, release=proposed, change_request=cr)
    run = runs.eval_run_create(
        actor=owner, suite_version=version, release=proposed, change_request=cr, cr_role="proposed"
    )
    assert (run.change_request, run.cr_role) == (cr, "proposed")


def test_who_may_start_a_run(owner, rel, team):
    """Product managers, reviewers and admins of the team start runs; developers and auditors
    of the team are refused (403); a release outside one's teams is a 404."""
    version = suite_with_cases(owner, team)
    for role in (REVIEWER, ADMIN):
        runs.eval_run_create(actor=member(role, team), suite_version=version, release=rel)
    for role in (DEVELOPER, AUDITOR):
        error = _refused("forbidden", actor=member(role, team), suite_version=version, release=rel)
        assert error.status == 403
    outsider = pm()
    assert _refused("not_found", actor=outsider, suite_version=version, release=rel).status == 404
    # A suite of another team is out of scope too.
    theirs = suite_with_cases(outsider)
    assert _refused("not_found", actor=owner, suite_version=theirs, release=rel).status == 404
    assert EvalRun.objects.count() == 2


def test_who_sees_a_run(owner, rel, team):
    run = started(owner, rel)
    assert list(runs.run_list_for(user=member(DEVELOPER, team))) == [run]
    assert list(runs.run_list_for(user=member(AUDITOR))) == [run]  # auditors read every run
    assert list(runs.run_list_for(user=pm())) == []


# --- idempotency ---------------------------------------------------------------------------------


def test_a_chunk_delivered_twice_calls_and_counts_each_case_once(owner, rel):
    """GIVEN a running run whose first chunk ran its cases but died before handing on (its
    message is delivered again)
    WHEN the same chunk runs again, and then once more after it handed on
    THEN the second delivery calls nothing and writes nothing, the third does nothing at all,
    and the counters equal the results."""
    run = started(owner, rel, cases=[case_dict(k) for k in "abcde"])
    assert runs.eval_run_start(run_id=run.pk) == (0, 0)
    target = runs._pipeline_target(run)
    first = runs._run_chunk_calls(run, target, start=0, epoch=0, worker="w")  # then "killed"
    assert (first.written, first.exhausted) == (5, True)
    calls = ProviderCall.objects.count()
    rows = set(EvalResult.objects.filter(run=run).values_list("pk", "case_id", "outcome"))
    assert runs.eval_run_chunk(run_id=run.pk, start=0, epoch=0) is None  # redelivered: finishes
    assert ProviderCall.objects.count() == calls  # no case was called again
    assert set(EvalResult.objects.filter(run=run).values_list("pk", "case_id", "outcome")) == rows
    run.refresh_from_db()
    figures = (run.state, run.completed, run.passed, run.errored, run.cost)
    assert figures[:4] == ("succeeded", 5, 5, 0)
    assert runs.eval_run_chunk(run_id=run.pk, start=0, epoch=0) is None  # and again
    run.refresh_from_db()
    assert (run.state, run.completed, run.passed, run.errored, run.cost) == figures
    assert EvalResult.objects.filter(run=run).count() == 5


def test_a_chain_of_chunks_and_a_stale_chunk(owner, rel, settings):
    """GIVEN chunks with no time budget (each takes one case)
    THEN the chain runs one chunk per case, each handing on to the next rank, and a chunk whose
    rank the cursor has passed does nothing."""
    settings.EVALUATIONS_CHUNK_SECONDS = 0
    run = started(owner, rel, cases=[case_dict(k) for k in "abcd"], concurrency=1)
    assert runs.eval_run_start(run_id=run.pk) == (0, 0)
    assert runs.eval_run_chunk(run_id=run.pk, start=0, epoch=0) == 1
    assert runs.eval_run_chunk(run_id=run.pk, start=0, epoch=0) is None  # stale: cursor is 1
    assert runs.eval_run_chunk(run_id=run.pk, start=1, epoch=0) == 2
    run.refresh_from_db()
    assert (run.state, run.completed, run.cursor) == ("running", 2, 2)
    assert runs.eval_run_chunk(run_id=run.pk, start=2, epoch=0) == 3
    assert runs.eval_run_chunk(run_id=run.pk, start=3, epoch=0) is None  # the last: finishes
    run.refresh_from_db()
    assert (run.state, run.completed, run.passed) == ("succeeded", 4, 4)
    assert ProviderCall.objects.count() == 4


def test_a_queued_run_is_started_once(owner, rel):
    run = started(owner, rel)
    assert runs.eval_run_start(run_id=run.pk) == (0, 0)
    assert runs.eval_run_start(run_id=run.pk) is None  # a duplicate start does nothing


# --- cancel --------------------------------------------------------------------------------------


def test_cancelling_a_queued_run_runs_nothing(owner, rel):
    run = started(owner, rel)
    seq = last_seq()
    cancelled = runs.eval_run_cancel(actor=owner, run=run)
    assert (cancelled.state, cancelled.cancelled_by, cancelled.completed) == ("cancelled", owner, 0)
    assert cancelled.finished_at is not None
    assert verbs_since(seq) == Counter({"eval_run.cancelled": 1})
    assert runs.eval_run_chunk(run_id=run.pk, start=0, epoch=0) is None  # a later chunk: nothing
    assert EvalResult.objects.filter(run=run).count() == 0
    assert ProviderCall.objects.count() == 0


def test_cancelling_a_running_run_stops_its_chain_and_keeps_what_ran(owner, rel, settings):
    settings.EVALUATIONS_CHUNK_SECONDS = 0
    run = started(owner, rel, cases=[case_dict("a"), failing_case("b"), case_dict("c")])
    runs.eval_run_start(run_id=run.pk)
    assert runs.eval_run_chunk(run_id=run.pk, start=0, epoch=0) == 1
    runs.eval_run_cancel(actor=owner, run=run)
    assert runs.eval_run_chunk(run_id=run.pk, start=1, epoch=0) is None
    run.refresh_from_db()
    assert (run.state, run.completed, run.passed) == ("cancelled", 1, 1)
    assert run.aggregates["completed"] == 1 and run.aggregates["pass_rate"] == pytest.approx(1 / 3)
    assert results_of(run) == {"a": "pass"}
    with pytest.raises(ApplicationError) as caught:
        runs.eval_run_cancel(actor=owner, run=run)
    assert (caught.value.code, caught.value.status) == ("invalid_transition", 409)


def test_who_may_cancel(owner, rel, team):
    """Whoever started the run, and product managers and admins of its team; not another
    reviewer, a developer or an auditor (403); an outsider does not see it (404)."""
    reviewer = member(REVIEWER, team)
    version = suite_with_cases(owner, team)
    theirs = runs.eval_run_create(actor=reviewer, suite_version=version, release=rel)
    for role in (REVIEWER, DEVELOPER, AUDITOR):
        with pytest.raises(ApplicationError) as caught:
            runs.eval_run_cancel(actor=member(role, team), run=theirs)
        assert caught.value.status == 403, role
    with pytest.raises(ApplicationError) as caught:
        runs.eval_run_cancel(actor=pm(), run=theirs)
    assert caught.value.status == 404
    assert runs.eval_run_cancel(actor=reviewer, run=theirs).state == "cancelled"
    mine = runs.eval_run_create(actor=reviewer, suite_version=version, release=rel)
    assert runs.eval_run_cancel(actor=member(ADMIN, team), run=mine).state == "cancelled"


# --- failures ------------------------------------------------------------------------------------


def test_a_run_whose_model_has_no_provider_fails_at_once(owner, team):
    """GIVEN a release whose model version names a provider that does not exist
    THEN the run fails at its start, says why, and calls nothing."""
    from ..factories import release

    rel = release(owner)  # its model version names the provider "builtin", never made here
    run = started(owner, rel)
    seq = last_seq()
    assert drain(run) == 0
    run.refresh_from_db()
    assert run.state == "failed" and run.finished_at
    assert "provider 'builtin' does not exist" in run.error
    assert ProviderCall.objects.count() == 0 and run.completed == 0
    assert verbs_since(seq) == Counter({"eval_run.finished": 1})


def test_a_run_whose_every_call_fails_fails(owner, team):
    """GIVEN the provider fails every call (after the pipeline's retries)
    THEN every result is an error with the reason, counted as not passed, and the run fails."""
    from ..playground.factories import builtin

    builtin(failure_rate=1.0)
    from ..factories import release

    rel = release(owner, settings={"max_retries": 1})
    run = started(owner, rel, cases=[case_dict("a"), case_dict("b")])
    drain(run)
    run.refresh_from_db()
    assert (run.state, run.completed, run.passed, run.errored) == ("failed", 2, 0, 2)
    assert run.pass_rate == 0
    assert "Every case's call failed" in run.error and "503" in run.error
    error = run.results.first()
    assert error.outcome == "error" and error.checks == [] and error.call is not None
    assert "2 attempt(s)" in error.error


def test_a_case_the_prompt_refuses_is_an_error_and_the_others_run(owner, rel):
    run = started(owner, rel, cases=[case_dict("a"), case_dict("b", variables={})])
    drain(run)
    run.refresh_from_db()
    assert (run.state, run.passed, run.errored) == ("succeeded", 1, 1)
    refused = run.results.get(case__key="b")
    assert refused.outcome == "error" and "q" in refused.error and refused.call is None
    assert run.aggregates["latency_ms"]["p50"] is not None  # the errors are left out


def test_a_chunk_that_keeps_breaking_fails_the_run(owner, rel, monkeypatch):
    run = started(owner, rel)

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(runs, "_run_chunk_calls", broken)
    tasks.start_run.apply(args=[str(run.pk)])  # eager: its retries run at once
    run.refresh_from_db()
    assert run.state == "failed" and "the database went away" in run.error
    assert f"broke {tasks.MAX_RETRIES + 1} times" in run.error


# --- lost chains ---------------------------------------------------------------------------------


def test_a_chain_lost_with_its_worker_is_taken_over_and_counts_each_case_once(owner, rel, settings):
    """GIVEN a running run whose chunk was on worker w1 when w1 died (one case done)
    WHEN a worker named w1 starts again (recovery at its start)
    THEN the run's epoch moves on, chunks of the old chain do nothing, and the new chain runs
    the remaining cases only."""
    settings.EVALUATIONS_CHUNK_SECONDS = 0
    run = started(owner, rel, cases=[case_dict(k) for k in "abc"], concurrency=1)
    runs.eval_run_start(run_id=run.pk, worker="w1")
    assert runs.eval_run_chunk(run_id=run.pk, start=0, epoch=0, worker="w1") == 1
    # w1 dies running the chunk at rank 1; a worker of another name sees nothing to recover.
    assert runs.eval_run_recover(worker="w2") == []
    restarts = runs.eval_run_recover(worker="w1")
    assert restarts == [runs.Restart(str(run.pk), 0, 1)]
    assert runs.eval_run_chunk(run_id=run.pk, start=1, epoch=0) is None  # the old chain: stale
    start = 0
    while start is not None:
        start = runs.eval_run_chunk(run_id=run.pk, start=start, epoch=1, worker="w1")
    run.refresh_from_db()
    assert (run.state, run.epoch, run.completed, run.passed) == ("succeeded", 1, 3, 3)
    assert ProviderCall.objects.count() == 3


def test_a_silent_chain_is_taken_over_after_the_stall_time(owner, rel):
    run = started(owner, rel)
    runs.eval_run_start(run_id=run.pk, worker="w1")
    assert runs.eval_run_recover() == []  # it showed a sign of life just now
    EvalRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert runs.eval_run_recover() == [runs.Restart(str(run.pk), 0, 1)]
    queued = started(owner, rel)
    assert runs.eval_run_recover(stall=3600) == []
    assert runs.Restart(str(queued.pk)) in runs.eval_run_recover(stall=-1)


def test_the_recovery_task_sends_what_it_takes_over(owner, rel, monkeypatch):
    sent = []
    monkeypatch.setattr(tasks.run_chunk, "apply_async", lambda **kw: sent.append(kw))
    monkeypatch.setattr(tasks.connections, "close_all", lambda: None)  # the test's connection
    run = started(owner, rel)
    runs.eval_run_start(run_id=run.pk, worker="w1")
    tasks._recover_at_worker_start(sender=type("Consumer", (), {"hostname": "w1"})())
    assert sent == [{"args": [str(run.pk), 0, 1]}]


# --- latest run ----------------------------------------------------------------------------------


def test_latest_run_is_the_newest_in_the_states_asked(owner, rel, team):
    version = suite_with_cases(owner, team)
    old = runs.eval_run_create(actor=owner, suite_version=version, release=rel)
    drain(old)
    new = runs.eval_run_create(actor=owner, suite_version=version, release=rel)
    assert runs.latest_run(release=rel, suite_version=version) == old
    assert runs.latest_run(release=rel, suite_version=version, states=("queued",)) == new
    assert runs.latest_run(release=rel, suite_version=suite_with_cases(owner, team)) is None


# --- figures -------------------------------------------------------------------------------------


def test_a_group_varying_a_name_reports_the_gap_between_the_values(owner, rel):
    """GIVEN a group of cases that vary ``name`` with the same expectation (the answer must
    mention Aisha), which only the Aisha cases meet
    THEN the run reports Aisha at 100 %, John at 0 % and a gap of 1."""

    def named(key, name):
        return case_dict(
            key,
            variables={"q": f"hello {name}", "name": name},
            assertions=[{"type": "contains", "value": "Aisha"}],
            group="greeting-names",
            vary="name",
        )

    cases = [named("g-aisha-1", "Aisha"), named("g-aisha-2", "Aisha"), named("g-john", "John")]
    run = started(owner, rel, cases=[*cases, case_dict("plain")])
    drain(run)
    run.refresh_from_db()
    assert run.aggregates["groups"] == {
        "greeting-names": {
            "vary": "name",
            "values": {"Aisha": 1.0, "John": 0.0},
            "counts": {"Aisha": 2, "John": 1},
            "gap": 1.0,
        }
    }


def test_percentiles_are_nearest_rank():
    values = list(range(1, 11))
    assert (percentile(values, 50), percentile(values, 95)) == (5, 10)
    assert (percentile([7], 50), percentile([7], 95)) == (7, 7)
    assert percentile([], 50) is None
    assert percentile([30, 10, 20, 40], 50) == 20
    hundred = list(range(100, 0, -1))
    assert (percentile(hundred, 50), percentile(hundred, 95)) == (50, 95)


def _row(outcome, latency=10, checks=(), **kw):
    return Row(outcome=outcome, latency_ms=latency, checks=list(checks), **kw)


def test_aggregate_math():
    """Pass rate over all the run's cases; per-assertion rates over the checks; errors count as
    not passed, have no checks and are left out of the latency; groups by the varied value."""
    ok = {"type": "contains", "passed": True}
    bad = {"type": "contains", "passed": False}
    schema_ok = {"type": "json_schema", "passed": True}
    rows = [
        _row("pass", 100, [ok, schema_ok], tokens_in=3, tokens_out=2, cost=Decimal("0.5")),
        _row("fail", 200, [bad, schema_ok], group="g", vary="dialect", variables={"dialect": "en"}),
        _row("pass", 300, [ok], group="g", vary="dialect", variables={"dialect": "fr"}),
        _row("pass", 400, [ok], group="g", vary="dialect", variables={"dialect": "fr"}),
        _row("error", 9999, [], group="g", vary="dialect", variables={}),
    ]
    figures = aggregate(rows, total=6, duration_seconds=1.23456)
    assert figures["pass_rate"] == pytest.approx(3 / 6)  # one case has no result yet
    assert (figures["completed"], figures["passed"], figures["failed"], figures["errored"]) == (
        5,
        3,
        1,
        1,
    )
    assert figures["per_assertion"] == {"contains": 0.75, "json_schema": 1.0}
    assert figures["latency_ms"] == {"p50": 200, "p95": 400}
    assert figures["tokens"] == {"in": 3, "out": 2} and figures["cost"] == "0.5"
    assert figures["groups"]["g"]["values"] == {"(missing)": 0.0, "en": 0.0, "fr": 1.0}
    assert figures["groups"]["g"]["gap"] == 1.0
    assert figures["duration_seconds"] == 1.235
    empty = aggregate([], total=0)
    assert empty["pass_rate"] is None and empty["latency_ms"] == {"p50": None, "p95": None}


def test_a_varied_value_is_labelled_as_given():
    assert vary_value({"name": "Zoë"}, "name") == "Zoë"
    assert vary_value({"n": 3}, "n") == "3"
    assert vary_value({"o": {"b": 1, "a": [2]}}, "o") == '{"a":[2],"b":1}'
    assert vary_value({}, "name") == "(missing)"


def test_a_task_of_a_run_that_does_not_exist_is_dropped():
    """A message left from another database (or of a deleted run) does nothing, and is not
    retried."""
    import uuid

    assert tasks.start_run.apply(args=[str(uuid.uuid4())]).get() is None
    assert tasks.run_chunk.apply(args=[str(uuid.uuid4()), 3, 1]).get() is None
