"""Playground and batch runs through the real pipeline and the built-in provider.

The tasks are called directly here (in the test's transaction); ``test_worker.py`` runs them in a
real worker process.
"""

import json
import time
from collections import Counter
from decimal import Decimal

import pytest

from apps.accounts.roles import AUDITOR, DEVELOPER, REVIEWER
from apps.core.exceptions import ApplicationError
from apps.gateway.models import ProviderCall
from apps.playground import services
from apps.playground.models import BatchItem, BatchRun, PlaygroundRun
from apps.playground.selectors import batch_results, batch_run_list_for, playground_run_list_for
from apps.playground.tasks import run_batch_chunk, run_playground

from ..api_suite import last_seq, verbs_since
from ..factories import member, model_version
from .factories import builtin, dataset_version, pm, prompt_version, runnable_release

pytestmark = pytest.mark.django_db

QUESTION = "Where is my invoice?"


@pytest.fixture
def owner():
    return pm()


@pytest.fixture
def team(owner):
    return owner.memberships.first().team


@pytest.fixture
def rel(owner):
    builtin()
    return runnable_release(owner)


def drain(batch) -> int:
    """Run a batch's chunks in order, as the worker's chain would; returns how many ran."""
    start, chunks = 0, 0
    while start is not None:
        start = run_batch_chunk(str(batch.pk), start)
        chunks += 1
    return chunks


# --- playground runs ----------------------------------------------------------------------------


def test_a_run_goes_through_the_pipeline_and_records_everything(owner, rel):
    """GIVEN a release on the built-in provider
    WHEN a run is created and its task runs
    THEN the run holds the answer, tokens, cost, latency and the rendered prompt, and links the
    ProviderCall the pipeline recorded."""
    seq = last_seq()
    run = services.playground_run_create(
        actor=owner, release=rel, variables={"company": "Acme", "question": QUESTION}
    )
    assert run.state == "queued"
    assert verbs_since(seq) == Counter({"playground_run.created": 1})
    assert run_playground(str(run.pk)) == "succeeded"
    run.refresh_from_db()
    assert run.output == f"[builtin] {QUESTION}"
    assert run.messages == [
        {"role": "system", "content": "You answer for Acme."},
        {"role": "user", "content": QUESTION},
    ]
    assert run.tokens_in == 4 + 4  # words of both messages
    assert run.tokens_out == 5
    assert run.cost == Decimal("0.01800000")  # 8 * 1000 / 1e6 + 5 * 2000 / 1e6
    assert run.latency_ms is not None and run.finished_at is not None
    call = ProviderCall.objects.get(pk=run.call_id)
    assert (call.source, call.outcome, call.release_id) == ("playground", "ok", rel.pk)
    assert call.tokens_in == run.tokens_in and call.cost == run.cost
    assert run.product_id == rel.product_id and run.team_id == rel.product.owner_team_id
    # A redelivered task changes nothing.
    assert run_playground(str(run.pk)) == "succeeded"
    assert ProviderCall.objects.count() == 1


def test_a_prompt_and_model_pair_runs_without_a_release(owner, team):
    builtin()
    pv, mv = prompt_version(owner, team), model_version(owner, team)
    run = services.playground_run_create(
        actor=owner, prompt_version=pv, model_version=mv, variables={"question": "Hi"}
    )
    run_playground(str(run.pk))
    run.refresh_from_db()
    assert (run.state, run.output, run.release_id, run.product_id) == (
        "succeeded",
        "[builtin] Hi",
        None,
        None,
    )
    assert run.messages[0]["content"] == "You answer for us."  # the template's default


def test_bad_variables_are_refused_before_any_run(owner, rel):
    """GIVEN a prompt requiring ``question`` WHEN it is missing THEN a 400 naming the field,
    and no run, no call, no audit event."""
    seq = last_seq()
    with pytest.raises(ApplicationError) as caught:
        services.playground_run_create(actor=owner, release=rel, variables={"company": "Acme"})
    assert caught.value.code == "invalid_variables"
    assert "'question' is a required property" in caught.value.message
    assert PlaygroundRun.objects.count() == 0
    assert verbs_since(seq) == Counter()
    with pytest.raises(ApplicationError) as caught:
        services.playground_run_create(actor=owner, release=rel, variables={"question": ""})
    assert caught.value.extra == {"variables.question": ["'' should be non-empty"]}


def test_the_target_must_be_a_release_or_a_full_pair(owner, rel, team):
    with pytest.raises(ApplicationError) as caught:
        services.playground_run_create(actor=owner, prompt_version=rel.prompt_version)
    assert caught.value.extra == {
        "release": ["Give a release, or a prompt version and a model version."],
        "model_version": ["Required without a release."],
    }
    with pytest.raises(ApplicationError) as caught:
        services.playground_run_create(
            actor=owner, release=rel, model_version=rel.model_version, variables={"question": "x"}
        )
    assert "not both" in caught.value.message


def test_auditors_cannot_run_and_other_teams_cannot_see(owner, rel, team):
    auditor = member(AUDITOR, team)
    with pytest.raises(ApplicationError) as caught:
        services.playground_run_create(actor=auditor, release=rel, variables={"question": "x"})
    assert caught.value.status == 403
    assert "Auditors" in caught.value.message
    outsider = pm()
    with pytest.raises(ApplicationError) as caught:
        services.playground_run_create(actor=outsider, release=rel, variables={"question": "x"})
    assert caught.value.status == 404
    assert PlaygroundRun.objects.count() == 0


@pytest.mark.parametrize("role", [REVIEWER, DEVELOPER])
def test_every_team_role_but_auditor_may_run(rel, team, role):
    user = member(role, team)
    run = services.playground_run_create(actor=user, release=rel, variables={"question": "x"})
    assert run.created_by == user


def test_runs_are_scoped_to_the_team_and_auditors_see_all(owner, rel, team):
    run = services.playground_run_create(actor=owner, release=rel, variables={"question": "x"})
    assert list(playground_run_list_for(user=member(REVIEWER, team))) == [run]
    assert list(playground_run_list_for(user=member(AUDITOR))) == [run]
    assert list(playground_run_list_for(user=pm())) == []


def test_a_failed_provider_call_is_a_failed_run_with_its_message(owner, team):
    """GIVEN a model version whose provider does not exist WHEN the run runs THEN it fails with
    the pipeline's message, and the failed call is linked."""
    run = services.playground_run_create(
        actor=owner,
        release=runnable_release(owner),  # no builtin provider created
        variables={"question": "x"},
    )
    assert run_playground(str(run.pk)) == "failed"
    run.refresh_from_db()
    assert run.error_code == "upstream_unavailable"
    assert "does not exist" in run.error_message
    assert run.call_id is not None and run.finished_at is not None
    assert run.messages[1] == {"role": "user", "content": "x"}


# --- batches ----------------------------------------------------------------------------------


ROWS = [
    {"question": "Reset my password", "answer": "Use the link."},
    {"question": "", "answer": "A bad row: the schema wants a non-empty question."},
    {"question": "Change my plan", "company": "Row Co"},
]


def test_a_batch_runs_every_row_and_fails_bad_rows_alone(owner, rel):
    """GIVEN a JSONL dataset of 3 rows, the second one not fitting the schema
    WHEN a batch runs over it THEN 2 rows succeed, 1 fails with the schema's message, the
    counters say so, the batch succeeds, and the results have 3 lines."""
    dv = dataset_version(owner, ROWS)
    seq = last_seq()
    batch = services.batch_run_create(
        actor=owner, release=rel, dataset_version=dv, variables={"company": "Acme"}
    )
    assert verbs_since(seq) == Counter({"batch_run.created": 1})
    assert (batch.state, batch.total, batch.concurrency) == ("queued", 3, 4)
    items = list(batch.items.order_by("index"))
    # The defaults are under each row; columns the schema does not declare are left out.
    assert [i.variables for i in items] == [
        {"company": "Acme", "question": "Reset my password"},
        {"company": "Acme", "question": ""},
        {"company": "Row Co", "question": "Change my plan"},
    ]
    assert drain(batch) == 1
    batch.refresh_from_db()
    assert (batch.state, batch.succeeded_count, batch.failed_count) == ("succeeded", 2, 1)
    assert batch.started_at and batch.finished_at
    items = list(batch.items.order_by("index"))
    assert [i.state for i in items] == ["succeeded", "failed", "succeeded"]
    assert items[0].output == "[builtin] Reset my password"
    assert items[1].error_code == "invalid_variables"
    assert "should be non-empty" in items[1].error
    assert items[1].call_id is None  # refused before any call
    assert batch.tokens_out == sum(i.tokens_out for i in items) > 0
    assert batch.cost == sum(i.cost for i in items) > 0
    calls = ProviderCall.objects.filter(source="batch")
    assert calls.count() == 2
    lines = [json.loads(line) for line in (json.dumps(r) for r in batch_results(batch))]
    assert [line["index"] for line in lines] == [0, 1, 2]
    assert set(lines[0]) == {
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
    }
    assert lines[0]["call_id"] == str(items[0].call_id)
    assert lines[1]["state"] == "failed" and lines[1]["error"]


def test_a_redelivered_chunk_changes_nothing(owner, rel, settings):
    """GIVEN a batch of 3 rows in chunks of 2 WHEN every chunk task is delivered twice
    THEN no row is run twice, there are still 3 rows, the counts are unchanged, and the
    redelivered chunk does not start a second chain."""
    settings.PLAYGROUND_BATCH_CHUNK_SIZE = 2
    dv = dataset_version(owner, [{"question": f"q{i}"} for i in range(3)])
    batch = services.batch_run_create(actor=owner, release=rel, dataset_version=dv)
    assert run_batch_chunk(str(batch.pk), 0) == 2
    assert run_batch_chunk(str(batch.pk), 0) is None  # redelivered: the chain goes on once
    batch.refresh_from_db()
    assert (batch.state, batch.succeeded_count, batch.cursor) == ("running", 2, 2)
    assert run_batch_chunk(str(batch.pk), 2) is None
    before = BatchRun.objects.values().get(pk=batch.pk)
    assert run_batch_chunk(str(batch.pk), 2) is None
    assert run_batch_chunk(str(batch.pk), 0) is None
    assert BatchRun.objects.values().get(pk=batch.pk) == before
    assert before["state"] == "succeeded" and before["succeeded_count"] == 3
    assert BatchItem.objects.filter(batch=batch).count() == 3
    assert ProviderCall.objects.filter(source="batch").count() == 3


def test_an_interrupted_chunk_is_finished_by_its_redelivery(owner, rel):
    """GIVEN a chunk whose worker died after marking its rows running WHEN it is redelivered
    THEN those rows run and the batch ends."""
    dv = dataset_version(owner, [{"question": "a"}, {"question": "b"}])
    batch = services.batch_run_create(actor=owner, release=rel, dataset_version=dv)
    BatchItem.objects.filter(batch=batch).update(state="running")
    BatchRun.objects.filter(pk=batch.pk).update(state="running")
    assert run_batch_chunk(str(batch.pk), 0) is None
    batch.refresh_from_db()
    assert (batch.state, batch.succeeded_count) == ("succeeded", 2)


def test_cancel_stops_the_remaining_chunks(owner, rel, settings, team):
    settings.PLAYGROUND_BATCH_CHUNK_SIZE = 2
    dv = dataset_version(owner, [{"question": f"q{i}"} for i in range(5)])
    batch = services.batch_run_create(actor=owner, release=rel, dataset_version=dv)
    assert run_batch_chunk(str(batch.pk), 0) == 2
    with pytest.raises(ApplicationError) as caught:
        services.batch_run_cancel(actor=member(REVIEWER, team), batch=batch)
    assert caught.value.status == 403
    seq = last_seq()
    batch = services.batch_run_cancel(actor=owner, batch=batch)
    assert verbs_since(seq) == Counter({"batch_run.cancelled": 1})
    assert (batch.state, batch.succeeded_count, batch.cancelled_by) == ("cancelled", 2, owner)
    assert run_batch_chunk(str(batch.pk), 2) is None  # the next chunk finds it cancelled
    states = Counter(batch.items.values_list("state", flat=True))
    assert states == Counter({"succeeded": 2, "cancelled": 3})
    assert ProviderCall.objects.filter(source="batch").count() == 2
    with pytest.raises(ApplicationError) as caught:
        services.batch_run_cancel(actor=owner, batch=batch)
    assert (caught.value.status, caught.value.code) == (409, "invalid_transition")


def test_the_starter_may_cancel_their_own_batch(rel, team):
    reviewer = member(REVIEWER, team)
    owner = team.memberships.get(role="product_manager").user
    dv = dataset_version(owner, [{"question": "a"}])
    batch = services.batch_run_create(actor=reviewer, release=rel, dataset_version=dv)
    assert services.batch_run_cancel(actor=reviewer, batch=batch).state == "cancelled"


def test_concurrency_bounds_the_calls_in_flight(owner):
    """GIVEN a provider answering in 150 ms and a batch of 12 rows with concurrency 3
    WHEN it runs THEN the recorded calls' latencies add up to at most 3 x the wall time (at most
    3 calls were in flight at any moment), and to more than the wall time (they overlapped).

    Each call's ``latency_ms`` is measured from when it got past the concurrency gate to its
    answer, so if at most ``c`` calls run at once, their latencies sum to at most ``c`` times
    the time the whole batch took, however slow the machine is; without the bound, 12 calls of
    150 ms would sum to about 12 times the wall time."""
    builtin(latency_ms=150)
    rel = runnable_release(owner)
    dv = dataset_version(owner, [{"question": f"q{i}"} for i in range(12)])
    batch = services.batch_run_create(actor=owner, release=rel, dataset_version=dv, concurrency=3)
    started = time.monotonic()
    drain(batch)
    wall_ms = (time.monotonic() - started) * 1000
    latencies = list(
        ProviderCall.objects.filter(source="batch").values_list("latency_ms", flat=True)
    )
    assert len(latencies) == 12 and min(latencies) >= 150
    busy_ms = sum(latencies)
    assert busy_ms <= 3 * wall_ms, (busy_ms, wall_ms)
    assert busy_ms > wall_ms, (busy_ms, wall_ms)
    assert wall_ms >= 4 * 150  # 12 calls of 150 ms, 3 at a time: at least 4 rounds


def test_a_batch_where_every_row_fails_fails(owner, rel):
    dv = dataset_version(owner, [{"question": ""}, {"company": "no question"}])
    batch = services.batch_run_create(actor=owner, release=rel, dataset_version=dv)
    drain(batch)
    batch.refresh_from_db()
    assert (batch.state, batch.failed_count) == ("failed", 2)
    assert batch.error_message.startswith("Every row failed; row 0:")


def test_csv_values_are_read_as_the_schema_types(owner, team):
    builtin()
    schema = {
        "type": "object",
        "properties": {
            "question": {"type": "string"},
            "n": {"type": "integer"},
            "polite": {"type": "boolean"},
        },
        "required": ["question", "n"],
    }
    pv = prompt_version(
        owner,
        team,
        schema=schema,
        messages=[
            {"role": "user", "content": "{{ question }} x{{ n }}{% if polite %} please{% endif %}"}
        ],
    )
    rel = runnable_release(owner, prompt_version=pv)
    dv = dataset_version(
        owner, b"question,n,polite,extra\nHi,3,true,x\nYo,many,false,y\nEmpty,,,\n", fmt="csv"
    )
    batch = services.batch_run_create(actor=owner, release=rel, dataset_version=dv)
    assert [i.variables for i in batch.items.order_by("index")] == [
        {"question": "Hi", "n": 3, "polite": True},
        {"question": "Yo", "n": "many", "polite": False},
        {"question": "Empty"},
    ]
    drain(batch)
    items = list(batch.items.order_by("index"))
    assert items[0].output == "[builtin] Hi x3 please"
    assert items[1].state == items[2].state == "failed"
    assert "'many' is not of type 'integer'" in items[1].error
    assert "'n' is a required property" in items[2].error


def test_batch_input_is_checked_with_clear_messages(owner, rel, settings):
    dv = dataset_version(owner, [{"question": "a"}, {"question": "b"}, {"question": "c"}])

    def refused(**kwargs) -> ApplicationError:
        kwargs.setdefault("dataset_version", dv)
        with pytest.raises(ApplicationError) as caught:
            services.batch_run_create(actor=owner, release=rel, **kwargs)
        return caught.value

    assert refused(concurrency=0).extra == {"concurrency": ["From 1 to 16."]}
    assert refused(concurrency=17).extra == {"concurrency": ["From 1 to 16."]}
    assert refused(variables={"nope": 1}).extra == {
        "variables.nope": ["Not a variable of this prompt."]
    }
    assert refused(variables={"company": 5}).code == "invalid_variables"
    from apps.catalog import services as catalog
    from apps.catalog.models import Dataset

    from ..factories import artifact

    remote = catalog.dataset_version_create(
        actor=owner, dataset=artifact(owner, Dataset), uri="s3://bucket/x.jsonl", format="jsonl"
    )
    error = refused(dataset_version=remote)
    assert error.code == "dataset_not_stored" and "upload it" in error.message
    settings.PLAYGROUND_BATCH_MAX_ROWS = 2
    error = refused()
    assert error.code == "too_many_rows"
    assert "3 rows; a batch runs at most 2" in error.message
    assert error.extra["dataset_version"]
    outsider_dv = dataset_version(pm(), [{"question": "a"}])
    assert refused(dataset_version=outsider_dv).status == 404
    assert BatchRun.objects.count() == 0


def test_batches_are_scoped_to_the_team(owner, rel, team):
    dv = dataset_version(owner, [{"question": "a"}])
    batch = services.batch_run_create(actor=owner, release=rel, dataset_version=dv)
    assert list(batch_run_list_for(user=member(AUDITOR, team))) == [batch]
    assert list(batch_run_list_for(user=pm())) == []
    with pytest.raises(ApplicationError) as caught:
        services.batch_run_create(actor=member(AUDITOR, team), release=rel, dataset_version=dv)
    assert caught.value.status == 403


def test_a_broken_chunk_is_retried_then_fails_the_batch(owner, rel, monkeypatch):
    """GIVEN a chunk that keeps raising WHEN its retries are spent THEN the batch fails with a
    message and the error is raised (not swallowed)."""
    dv = dataset_version(owner, [{"question": "a"}])
    batch = services.batch_run_create(actor=owner, release=rel, dataset_version=dv)

    def broken(**kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(services, "batch_run_chunk", broken)
    run_batch_chunk.push_request(retries=run_batch_chunk.max_retries)
    try:
        with pytest.raises(RuntimeError):
            run_batch_chunk.run(str(batch.pk), 0)
    finally:
        run_batch_chunk.pop_request()
    batch.refresh_from_db()
    assert batch.state == "failed"
    assert "RuntimeError" in batch.error_message
    assert set(batch.items.values_list("state", flat=True)) == {"cancelled"}
