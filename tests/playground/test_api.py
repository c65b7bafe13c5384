"""The playground REST API: the reusable resource suite, and what is particular to runs."""

import json

import pytest

from apps.accounts.roles import AUDITOR
from apps.playground import services
from apps.playground.models import BatchRun, PlaygroundRun
from apps.playground.tasks import run_batch_chunk, run_playground

from ..api_suite import APIResourceSuite, assert_error
from .factories import builtin, dataset_version, pm, runnable_release

pytestmark = pytest.mark.django_db


class _Releases:
    """One runnable release per team, made on first use (30 list rows need not 30 releases)."""

    def release_for(self, actor):
        cache = self.__dict__.setdefault("_releases", {})
        team = actor.memberships.first().team_id
        if team not in cache:
            cache[team] = runnable_release(actor)
        return cache[team]


class TestPlaygroundRunAPI(_Releases, APIResourceSuite):
    url = "/api/v1/playground-runs/"
    create_verbs = ("playground_run.created",)
    wrong_roles = (AUDITOR,)  # every other role of the team may run; auditors never
    list_queries = 6
    bad_filters = ("state=nope", "release=not-a-uuid", "product=12", "ordering=cost&state=x")

    def make(self, actor):
        return services.playground_run_create(
            actor=actor, release=self.release_for(actor), variables={"question": "x"}
        )

    def create_payload(self, actor):
        return {"release": str(self.release_for(actor).pk), "variables": {"question": "Hello"}}


class TestBatchRunAPI(_Releases, APIResourceSuite):
    url = "/api/v1/batch-runs/"
    create_verbs = ("batch_run.created",)
    actions = (("cancel", {}, ("batch_run.cancelled",)),)
    wrong_roles = (AUDITOR,)
    list_queries = 6
    bad_filters = ("state=nope", "dataset_version=x")

    def dataset_for(self, actor):
        cache = self.__dict__.setdefault("_datasets", {})
        team = actor.memberships.first().team_id
        if team not in cache:
            cache[team] = dataset_version(actor, [{"question": "a"}, {"question": "b"}])
        return cache[team]

    def make(self, actor):
        return services.batch_run_create(
            actor=actor, release=self.release_for(actor), dataset_version=self.dataset_for(actor)
        )

    def create_payload(self, actor):
        return {
            "release": str(self.release_for(actor).pk),
            "dataset_version": str(self.dataset_for(actor).pk),
            "variables": {"company": "Acme"},
            "concurrency": 2,
        }


# --- runs -------------------------------------------------------------------------------------


@pytest.fixture
def owner():
    return pm()


@pytest.fixture
def rel(owner):
    builtin()
    return runnable_release(owner)


def test_a_run_is_polled_until_it_has_its_results(client_for, owner, rel):
    client = client_for(owner)
    response = client.post(
        "/api/v1/playground-runs/",
        {"release": str(rel.pk), "variables": {"question": "Hi there"}, "output": "forged"},
        format="json",
    )
    assert response.status_code == 201, response.data
    body = response.json()
    assert (body["state"], body["output"], body["messages"], body["team"]) == (
        "queued",
        "",
        [],
        rel.product.owner_team.slug,
    )
    run_playground(body["id"])
    body = client.get(f"/api/v1/playground-runs/{body['id']}/").json()
    assert body["state"] == "succeeded"
    assert body["output"] == "[builtin] Hi there"
    assert body["messages"][-1] == {"role": "user", "content": "Hi there"}
    assert body["tokens_in"] > 0 and body["tokens_out"] == 3
    assert body["cost"] == str(PlaygroundRun.objects.get().cost)
    assert body["latency_ms"] is not None and body["call"]


def test_bad_variables_are_a_400_naming_the_field(client_for, owner, rel):
    response = client_for(owner).post(
        "/api/v1/playground-runs/",
        {"release": str(rel.pk), "variables": {"question": 5}},
        format="json",
    )
    body = assert_error(response, 400, "invalid_variables")
    assert body["fields"] == {"variables.question": ["5 is not of type 'string'"]}
    assert PlaygroundRun.objects.count() == 0


def test_the_target_is_checked(client_for, owner, rel):
    client = client_for(owner)
    body = assert_error(client.post("/api/v1/playground-runs/", {}, format="json"), 400)
    assert set(body["fields"]) == {"release", "prompt_version", "model_version"}
    theirs = runnable_release(pm())
    body = assert_error(
        client.post(
            "/api/v1/playground-runs/",
            {"release": str(theirs.pk), "variables": {"question": "x"}},
            format="json",
        ),
        400,
    )
    assert "does not exist" in body["fields"]["release"][0]  # out of scope reads as missing
    body = assert_error(
        client.post(
            "/api/v1/playground-runs/",
            {"prompt_version": str(rel.prompt_version_id), "variables": []},
            format="json",
        ),
        400,
    )
    assert "variables" in body["fields"]


# --- batches ----------------------------------------------------------------------------------


def test_a_batch_over_the_api_and_its_jsonl_results(client_for, owner, rel):
    dv = dataset_version(owner, [{"question": "one"}, {"question": ""}, {"question": "three"}])
    client = client_for(owner)
    response = client.post(
        "/api/v1/batch-runs/",
        {"release": str(rel.pk), "dataset_version": str(dv.pk), "concurrency": 3},
        format="json",
    )
    assert response.status_code == 201, response.data
    batch_id = response.json()["id"]
    assert (response.json()["total"], response.json()["progress"]) == (3, 0.0)
    run_batch_chunk(batch_id, 0)
    body = client.get(f"/api/v1/batch-runs/{batch_id}/").json()
    assert (body["state"], body["succeeded_count"], body["failed_count"], body["progress"]) == (
        "succeeded",
        2,
        1,
        1.0,
    )
    for accept in ("*/*", "application/jsonl", "application/json"):
        download = client.get(f"/api/v1/batch-runs/{batch_id}/results/", HTTP_ACCEPT=accept)
        assert download.status_code == 200
        assert download["Content-Type"] == "application/jsonl; charset=utf-8"
        lines = b"".join(download.streaming_content).decode().splitlines()
        rows = [json.loads(line) for line in lines]
        assert [r["state"] for r in rows] == ["succeeded", "failed", "succeeded"]
    assert_error(client_for(pm()).get(f"/api/v1/batch-runs/{batch_id}/results/"), 404)
    body = assert_error(client.post(f"/api/v1/batch-runs/{batch_id}/cancel/"), 409)
    assert body["code"] == "invalid_transition"


def test_a_batch_refuses_bad_input_with_its_fields(client_for, owner, rel):
    client = client_for(owner)
    remote_dv = dataset_version(owner, b"a,b\n1,2\n", fmt="csv")
    body = assert_error(
        client.post(
            "/api/v1/batch-runs/",
            {"release": str(rel.pk), "dataset_version": str(remote_dv.pk), "concurrency": 99},
            format="json",
        ),
        400,
    )
    assert "concurrency" in body["fields"]
    body = assert_error(
        client.post(
            "/api/v1/batch-runs/",
            {"release": str(rel.pk), "dataset_version": str(remote_dv.pk), "variables": {"x": 1}},
            format="json",
        ),
        400,
        "invalid_variables",
    )
    assert body["fields"] == {"variables.x": ["Not a variable of this prompt."]}
    assert BatchRun.objects.count() == 0
