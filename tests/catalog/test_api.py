"""The catalog REST API: the shared suite on every resource, then each resource's own rules."""

import hashlib
import uuid
from collections import Counter

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.accounts.roles import AUDITOR, DEVELOPER, PRODUCT_MANAGER, REVIEWER
from apps.catalog import services as catalog
from apps.catalog.models import (
    Dataset,
    DatasetVersion,
    Model,
    ModelVersion,
    PromptTemplate,
    PromptTemplateVersion,
    Stage,
)

from ..api_suite import APIResourceSuite, assert_error, last_seq, verbs_since
from ..factories import TeamFactory, artifact, member, product, prompt_with_versions

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Users are made by the dozen here and never log in with a password: hash cheaply."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _uid() -> str:
    return uuid.uuid4().hex[:10]


def _team_of(user):
    return user.memberships.first().team


def _dataset_version(actor, dataset=None, **kwargs):
    dataset = dataset or artifact(actor, Dataset)
    kwargs.setdefault("uri", f"s3://bucket/{_uid()}.jsonl")
    kwargs.setdefault("format", "jsonl")
    return catalog.dataset_version_create(actor=actor, dataset=dataset, **kwargs)


def _model_version(actor, model=None, **kwargs):
    model = model or artifact(actor, Model)
    kwargs.setdefault("provider", "builtin")
    kwargs.setdefault("provider_model", f"echo-{_uid()}")
    return catalog.model_version_create(actor=actor, model=model, **kwargs)


# --- The shared suite on every catalog resource -----------------------------------------------


class TestProductAPI(APIResourceSuite):
    url = "/api/v1/products/"
    create_verbs = ("product.created", "permission.granted")
    update_verbs = ("product.updated",)
    list_queries = 5
    bad_filters = ("stage=nope", "risk_class=extreme")

    def make(self, actor):
        return product(actor)

    def create_payload(self, actor):
        return {
            "slug": f"p-{_uid()}",
            "name": "Support assistant",
            "owner_team": _team_of(actor).slug,
            "risk_class": "limited",
            "intended_use": "Answer support tickets.",
        }

    def update_payload(self, obj):
        return {"name": f"{obj.name} (renamed)"}


class ArtifactSuite(APIResourceSuite):
    kind: type
    update_verbs = ()
    list_queries = 5

    def make(self, actor):
        return artifact(actor, self.kind)

    def create_payload(self, actor):
        return {"slug": f"a-{_uid()}", "name": "An artifact", "owner_team": _team_of(actor).slug}

    def update_payload(self, obj):
        return {"description": "Changed description."}


class TestModelAPI(ArtifactSuite):
    url = "/api/v1/models/"
    kind = Model
    create_verbs = ("model.created", "permission.granted")
    update_verbs = ("model.updated",)


class TestDatasetAPI(ArtifactSuite):
    url = "/api/v1/datasets/"
    kind = Dataset
    create_verbs = ("dataset.created", "permission.granted")
    update_verbs = ("dataset.updated",)


class TestPromptAPI(ArtifactSuite):
    url = "/api/v1/prompts/"
    kind = PromptTemplate
    create_verbs = ("prompt.created", "permission.granted")
    update_verbs = ("prompt.updated",)


class TestPromptVersionAPI(APIResourceSuite):
    url = "/api/v1/prompt-versions/"
    create_verbs = ("prompt_version.created",)
    delete_verbs = ("prompt_version.deleted",)
    actions = (("deprecate", {"reason": "superseded"}, ("prompt_version.deprecated",)),)
    immutable = True
    list_queries = 5
    bad_filters = ("deprecated=maybe", "prompt=not-a-uuid", "version=abc")

    def make(self, actor):
        return prompt_with_versions(actor, "You are a helpful assistant.")[1][0]

    def create_payload(self, actor):
        prompt = artifact(actor, PromptTemplate)
        return {
            "prompt": str(prompt.pk),
            "messages": [
                {"role": "system", "content": "You answer {{ product }} questions."},
                {"role": "user", "content": "{{ question }}"},
            ],
            "variables_schema": {
                "type": "object",
                "properties": {"product": {"type": "string"}, "question": {"type": "string"}},
                "required": ["question"],
            },
            "parameters": {"temperature": 0.2},
            "changelog": "First version.",
        }


class TestModelVersionAPI(APIResourceSuite):
    url = "/api/v1/model-versions/"
    create_verbs = ("model_version.created",)
    delete_verbs = ("model_version.deleted",)
    actions = (("deprecate", {"reason": "old"}, ("model_version.deprecated",)),)
    immutable = True
    list_queries = 6
    bad_filters = ("deprecated=perhaps", "model=123")

    def make(self, actor):
        return _model_version(actor)

    def make_for_list(self, actor):
        """With lineage, and based on the previous row: the list must use the prefetch."""
        previous = getattr(self, "_previous", None)
        self._previous = _model_version(
            actor,
            base_version=previous,
            training_datasets=[_dataset_version(actor)],
            finetuning_datasets=[_dataset_version(actor)],
        )
        return self._previous

    def create_payload(self, actor):
        model = artifact(actor, Model)
        training = _dataset_version(actor)
        return {
            "model": str(model.pk),
            "provider": "builtin",
            "provider_model": "echo-1",
            "parameters": {"temperature": 0},
            "training_datasets": [str(training.pk)],
            "model_card": {"limitations": "Echoes its input."},
        }


class TestDatasetVersionAPI(APIResourceSuite):
    url = "/api/v1/dataset-versions/"
    create_verbs = ("dataset_version.created",)
    delete_verbs = ("dataset_version.deleted",)
    actions = (("deprecate", {"reason": "retention"}, ("dataset_version.deprecated",)),)
    immutable = True
    list_queries = 5
    bad_filters = ("deprecated=yes-please", "dataset=zzz", "file_format=parquet", "pii_class=x")

    def make(self, actor):
        return _dataset_version(actor)

    def make_for_list(self, actor):
        """Each row the child of the previous one (same dataset): the list must join parents."""
        previous = getattr(self, "_previous", None)
        self._previous = _dataset_version(
            actor, dataset=previous.dataset if previous else None, parent=previous
        )
        return self._previous

    def create_payload(self, actor):
        dataset = artifact(actor, Dataset)
        return {"dataset": str(dataset.pk), "uri": "s3://bucket/train.jsonl", "format": "jsonl"}


# --- Products -----------------------------------------------------------------------------------


@pytest.fixture
def pm():
    return member(PRODUCT_MANAGER)


def test_product_create_returns_the_contract_fields(client_for, pm):
    team = _team_of(pm)
    response = client_for(pm).post(
        "/api/v1/products/",
        {"slug": "support-assistant", "name": "Support assistant", "owner_team": team.slug},
        format="json",
    )
    assert response.status_code == 201, response.data
    body = response.json()
    assert set(body) == {
        "id",
        "slug",
        "name",
        "owner_team",
        "stage",
        "risk_class",
        "intended_use",
        "created_at",
        "updated_at",
        "created_by",
    }
    assert body["owner_team"] == team.slug
    assert body["stage"] == Stage.CONCEPT
    assert body["created_by"] == pm.username
    uuid.UUID(body["id"])


def test_product_create_for_a_team_i_do_not_author_is_403(client_for, pm):
    other = TeamFactory()
    member(DEVELOPER, other, username=f"dev-{_uid()}")
    seq = last_seq()
    response = client_for(pm).post(
        "/api/v1/products/", {"slug": "x-1", "name": "X", "owner_team": other.slug}, format="json"
    )
    assert_error(response, 403, "forbidden")
    assert verbs_since(seq) == Counter({"token.created": 1})  # only the client's own token


def test_product_create_unknown_team_and_duplicate_slug_are_400(client_for, pm):
    client = client_for(pm)
    body = assert_error(
        client.post(
            "/api/v1/products/", {"slug": "x", "name": "X", "owner_team": "nope"}, format="json"
        ),
        400,
        "invalid",
    )
    assert "owner_team" in body["fields"]
    existing = product(pm)
    body = assert_error(
        client.post(
            "/api/v1/products/",
            {"slug": existing.slug, "name": "X", "owner_team": _team_of(pm).slug},
            format="json",
        ),
        400,
    )
    assert "slug" in body["fields"]


def test_stage_is_not_set_by_patch(client_for, pm):
    """GIVEN a product in concept WHEN it jumps to production THEN 409 invalid_transition; WHEN
    it steps to design THEN 409 gate_required, naming the signed request that moves it."""
    obj = product(pm)
    client = client_for(pm)
    url = f"/api/v1/products/{obj.pk}/"
    seq = last_seq()
    body = assert_error(client.patch(url, {"stage": "production"}, format="json"), 409)
    assert body["code"] == "invalid_transition"
    assert "concept" in body["message"] and "production" in body["message"]
    assert verbs_since(seq) == Counter()

    # An allowed move is not a field to set either: it is a signed request through the gate.
    body = assert_error(client.patch(url, {"stage": "design"}, format="json"), 409)
    assert body["code"] == "gate_required" and "/api/v1/lifecycle-requests/" in body["message"]
    assert verbs_since(seq) == Counter()


def test_stage_change_with_other_changes_is_400(client_for, pm):
    obj = product(pm)
    response = client_for(pm).patch(
        f"/api/v1/products/{obj.pk}/", {"stage": "design", "name": "New"}, format="json"
    )
    body = assert_error(response, 400, "invalid")
    assert "stage" in body["fields"]


def test_reviewer_patching_a_product_is_403(client_for, pm):
    obj = product(pm)
    reviewer = member(REVIEWER, _team_of(pm))
    client = client_for(reviewer)
    assert client.get(f"/api/v1/products/{obj.pk}/").status_code == 200
    for payload in ({"name": "Mine now"}, {"stage": "design"}):
        assert_error(client.patch(f"/api/v1/products/{obj.pk}/", payload, format="json"), 403)


def test_owner_team_and_slug_are_set_on_create_only(client_for, pm):
    obj = product(pm)
    client = client_for(pm)
    url = f"/api/v1/products/{obj.pk}/"
    body = assert_error(
        client.patch(url, {"owner_team": TeamFactory().slug, "slug": "renamed"}, format="json"),
        400,
    )
    assert set(body["fields"]) == {"owner_team", "slug"}
    # Echoing the current values back is fine.
    response = client.patch(
        url,
        {"owner_team": obj.owner_team.slug, "slug": obj.slug, "name": "Renamed"},
        format="json",
    )
    assert response.status_code == 200, response.data
    assert response.json()["name"] == "Renamed"


def test_product_put_and_delete_are_not_offered(client_for, pm):
    obj = product(pm)
    client = client_for(pm)
    assert_error(client.put(f"/api/v1/products/{obj.pk}/", {}, format="json"), 405)
    assert_error(client.delete(f"/api/v1/products/{obj.pk}/"), 405)


def test_product_filters_ordering_and_search(client_for, pm):
    team = _team_of(pm)
    alpha = product(pm, slug=f"alpha-{_uid()}", name="Alpha bot")
    beta = product(pm, slug=f"beta-{_uid()}", name="Beta bot", risk_class="high")
    catalog.product_transition(actor=pm, product=beta, to_stage="design")
    client = client_for(pm)

    def slugs(query):
        response = client.get(f"/api/v1/products/?{query}")
        assert response.status_code == 200, response.data
        return [row["slug"] for row in response.json()["results"]]

    assert slugs("stage=design") == [beta.slug]
    assert slugs("risk_class=high") == [beta.slug]
    assert slugs(f"owner_team={team.slug}&ordering=-slug") == [beta.slug, alpha.slug]
    assert slugs("owner_team=nobody") == []
    assert slugs(f"slug={alpha.slug}") == [alpha.slug]
    assert slugs("search=alpha") == [alpha.slug]
    assert slugs("ordering=-risk_class")[0] == alpha.slug  # "minimal" sorts after "high"
    assert_error(client.get("/api/v1/products/?page=999"), 404)


def test_auditor_reads_every_team_and_writes_nothing(client_for, pm):
    obj = product(pm)
    auditor = member(AUDITOR)  # of another team: reads through the auditors' global view
    client = client_for(auditor)
    assert client.get(f"/api/v1/products/{obj.pk}/").status_code == 200
    assert str(obj.pk) in {row["id"] for row in client.get("/api/v1/products/").json()["results"]}
    seq = last_seq()
    assert_error(client.patch(f"/api/v1/products/{obj.pk}/", {"name": "x"}, format="json"), 403)
    assert_error(
        client.post(
            "/api/v1/products/",
            {"slug": "a-1", "name": "A", "owner_team": obj.owner_team.slug},
            format="json",
        ),
        403,
    )
    assert verbs_since(seq) == Counter()


# --- Artifacts ----------------------------------------------------------------------------------


def test_artifact_lists_count_versions(client_for, pm):
    prompt, _ = prompt_with_versions(pm, "One.", "Two.")
    response = client_for(pm).get(f"/api/v1/prompts/{prompt.pk}/")
    assert response.status_code == 200
    assert response.json()["version_count"] == 2
    assert response.json()["latest_version"] == 2


def test_artifact_slug_is_unique_per_team(client_for, pm):
    existing = artifact(pm, Model)
    body = assert_error(
        client_for(pm).post(
            "/api/v1/models/",
            {"slug": existing.slug, "name": "Again", "owner_team": _team_of(pm).slug},
            format="json",
        ),
        400,
    )
    assert body["fields"]


# --- Prompt versions ----------------------------------------------------------------------------


def test_prompt_version_create_in_another_teams_prompt_is_400(client_for, pm):
    theirs = artifact(member(PRODUCT_MANAGER), PromptTemplate)
    body = assert_error(
        client_for(pm).post(
            "/api/v1/prompt-versions/",
            {"prompt": str(theirs.pk), "messages": [{"role": "user", "content": "Hi"}]},
            format="json",
        ),
        400,
    )
    assert "prompt" in body["fields"]


def test_prompt_version_numbers_and_hashes(client_for, pm):
    prompt = artifact(pm, PromptTemplate)
    client = client_for(pm)
    bodies = []
    for text in ("First.", "Second."):
        response = client.post(
            "/api/v1/prompt-versions/",
            {"prompt": str(prompt.pk), "messages": [{"role": "system", "content": text}]},
            format="json",
        )
        assert response.status_code == 201, response.data
        bodies.append(response.json())
    assert [b["version"] for b in bodies] == [1, 2]
    assert bodies[0]["content_hash"] != bodies[1]["content_hash"]
    assert len(bodies[0]["content_hash"]) == 64
    # Same content again: the service refuses an unchanged version.
    response = client.post(
        "/api/v1/prompt-versions/",
        {"prompt": str(prompt.pk), "messages": [{"role": "system", "content": "Second."}]},
        format="json",
    )
    assert_error(response, 409, "unchanged")


def test_prompt_version_with_undeclared_variable_is_400(client_for, pm):
    prompt = artifact(pm, PromptTemplate)
    body = assert_error(
        client_for(pm).post(
            "/api/v1/prompt-versions/",
            {"prompt": str(prompt.pk), "messages": [{"role": "user", "content": "{{ who }}"}]},
            format="json",
        ),
        400,
    )
    assert "who" in body["message"]


def test_prompt_version_shape_errors_name_the_field(client_for, pm):
    prompt = artifact(pm, PromptTemplate)
    body = assert_error(
        client_for(pm).post(
            "/api/v1/prompt-versions/",
            {"prompt": str(prompt.pk), "messages": [{"role": "wizard", "content": "x"}]},
            format="json",
        ),
        400,
        "invalid",
    )
    assert "messages[0].role" in body["fields"]


def test_render_fills_the_variables(client_for, pm):
    _, (version,) = prompt_with_versions(pm, "You are terse.")
    response = client_for(pm).post(
        f"/api/v1/prompt-versions/{version.pk}/render/",
        {"variables": {"q": "Where is my order?"}},
        format="json",
    )
    assert response.status_code == 200, response.data
    assert response.json() == {
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Where is my order?"},
        ]
    }


def test_render_with_a_missing_or_wrong_variable_is_400(client_for, pm):
    _, (version,) = prompt_with_versions(pm, "You are terse.")
    client = client_for(pm)
    url = f"/api/v1/prompt-versions/{version.pk}/render/"
    body = assert_error(client.post(url, {"variables": {}}, format="json"), 400)
    assert body["code"] == "invalid_variables"
    assert "q" in body["message"]
    assert "variables" in body["fields"]
    body = assert_error(client.post(url, {"variables": {"q": 42}}, format="json"), 400)
    assert body["code"] == "invalid_variables"
    assert "variables.q" in body["fields"]
    assert_error(client.post(url, {"variables": "q"}, format="json"), 400, "invalid")


def test_render_and_diff_are_reads_open_to_viewers(client_for, pm):
    _, (v1, v2) = prompt_with_versions(pm, "A.", "B.")
    reviewer = member(REVIEWER, _team_of(pm))
    client = client_for(reviewer)
    seq = last_seq()
    response = client.post(
        f"/api/v1/prompt-versions/{v1.pk}/render/", {"variables": {"q": "x"}}, format="json"
    )
    assert response.status_code == 200
    assert client.get(f"/api/v1/prompt-versions/{v2.pk}/diff/?against={v1.pk}").status_code == 200
    assert verbs_since(seq) == Counter()


def test_diff_returns_the_changed_line(client_for, pm):
    _, (v1, v2) = prompt_with_versions(pm, "Be brief.", "Be thorough.")
    response = client_for(pm).get(f"/api/v1/prompt-versions/{v2.pk}/diff/?against={v1.pk}")
    assert response.status_code == 200, response.data
    body = response.json()
    assert body["from"]["id"] == str(v1.pk)
    assert body["to"]["id"] == str(v2.pk)
    assert body["from"]["label"].endswith("@v1")
    assert {"op": "-", "text": "Be brief."} in body["lines"]
    assert {"op": "+", "text": "Be thorough."} in body["lines"]
    assert {"op": " ", "text": "{{ q }}"} in body["lines"]


def test_diff_against_another_prompt_is_allowed_but_must_be_visible(client_for, pm):
    _, (mine,) = prompt_with_versions(pm, "Mine.")
    _, (other_prompt_version,) = prompt_with_versions(pm, "Other.")
    _, (theirs,) = prompt_with_versions(member(PRODUCT_MANAGER), "Theirs.")
    client = client_for(pm)
    url = f"/api/v1/prompt-versions/{mine.pk}/diff/"
    assert client.get(f"{url}?against={other_prompt_version.pk}").status_code == 200
    assert_error(client.get(f"{url}?against={theirs.pk}"), 404)
    body = assert_error(client.get(url), 400, "invalid")
    assert "against" in body["fields"]
    assert_error(client.get(f"{url}?against=not-a-uuid"), 400, "invalid")


def test_version_filters(client_for, pm):
    prompt, (v1, v2) = prompt_with_versions(pm, "A.", "B.")
    _, (elsewhere,) = prompt_with_versions(pm, "C.")
    catalog.version_deprecate(actor=pm, version=v1, reason="old")
    client = client_for(pm)

    def ids(query):
        response = client.get(f"/api/v1/prompt-versions/?{query}")
        assert response.status_code == 200, response.data
        return {row["id"] for row in response.json()["results"]}

    assert ids(f"prompt={prompt.pk}") == {str(v1.pk), str(v2.pk)}
    assert ids(f"prompt={prompt.pk}&deprecated=true") == {str(v1.pk)}
    assert ids(f"prompt={prompt.pk}&deprecated=false") == {str(v2.pk)}
    assert ids(f"content_hash={elsewhere.content_hash}") == {str(elsewhere.pk)}
    assert ids(f"prompt={prompt.pk}&version=2") == {str(v2.pk)}
    assert ids(f"search={prompt.slug}") == {str(v1.pk), str(v2.pk)}
    response = client.get(f"/api/v1/prompt-versions/?prompt={prompt.pk}&ordering=version")
    assert [row["version"] for row in response.json()["results"]] == [1, 2]


def test_deprecate_twice_is_409(client_for, pm):
    _, (version,) = prompt_with_versions(pm, "A.")
    client = client_for(pm)
    url = f"/api/v1/prompt-versions/{version.pk}/deprecate/"
    response = client.post(url, {"reason": "superseded"}, format="json")
    assert response.status_code == 200
    assert response.json()["deprecated_at"]
    assert response.json()["deprecation_reason"] == "superseded"
    assert response.json()["deprecated_by"] == pm.username
    assert_error(client.post(url, {}, format="json"), 409, "already_deprecated")


def test_prompt_version_put_and_patch_are_refused_clearly(client_for, pm):
    _, (version,) = prompt_with_versions(pm, "A.")
    client = client_for(pm)
    url = f"/api/v1/prompt-versions/{version.pk}/"
    body = assert_error(
        client.patch(url, {"messages": [{"role": "user", "content": "B"}]}, format="json"),
        405,
        "immutable",
    )
    assert "create a new version" in body["message"]
    response = client.put(url, {}, format="json")
    assert response.status_code == 405
    assert "PUT" not in response["Allow"] and "PATCH" not in response["Allow"]
    version.refresh_from_db()
    assert version.messages[0]["content"] == "A."


# --- Model versions -----------------------------------------------------------------------------


def test_model_version_lineage_round_trips(client_for, pm):
    model = artifact(pm, Model)
    training, tuning = _dataset_version(pm), _dataset_version(pm)
    base = _model_version(pm)
    response = client_for(pm).post(
        "/api/v1/model-versions/",
        {
            "model": str(model.pk),
            "provider": "builtin",
            "provider_model": "echo-2",
            "base_model": "llama-3-8b",
            "base_version": str(base.pk),
            "training_datasets": [str(training.pk)],
            "finetuning_datasets": [str(tuning.pk)],
        },
        format="json",
    )
    assert response.status_code == 201, response.data
    body = response.json()
    assert body["training_datasets"] == [str(training.pk)]
    assert body["finetuning_datasets"] == [str(tuning.pk)]
    assert body["base_version"] == str(base.pk)
    assert body["version"] == 1
    listed = client_for(pm).get(f"/api/v1/model-versions/?model={model.pk}").json()["results"]
    assert listed[0]["training_datasets"] == [str(training.pk)]


def test_model_version_with_another_teams_dataset_is_400(client_for, pm):
    model = artifact(pm, Model)
    theirs = _dataset_version(member(PRODUCT_MANAGER))
    body = assert_error(
        client_for(pm).post(
            "/api/v1/model-versions/",
            {
                "model": str(model.pk),
                "provider": "builtin",
                "provider_model": "echo",
                "training_datasets": [str(theirs.pk)],
            },
            format="json",
        ),
        400,
    )
    assert "training_datasets" in body["fields"]


def test_model_version_with_its_own_lineage_can_be_deleted(client_for, pm):
    """Its lineage links are part of its content: they go with it (they do not protect it)."""
    version = _model_version(pm, training_datasets=[_dataset_version(pm)])
    client = client_for(pm)
    seq = last_seq()
    response = client.delete(f"/api/v1/model-versions/{version.pk}/")
    assert response.status_code == 204, response.json()
    assert verbs_since(seq) == Counter({"model_version.deleted": 1})
    assert not ModelVersion.objects.filter(pk=version.pk).exists()


# --- Dataset versions ---------------------------------------------------------------------------

JSONL = (
    b'{"q": "Where is my order?", "a": "In transit", "n": 1}\n'
    b'{"q": "Refund?", "a": null, "n": 2.5}\n'
)
CSV = b"question,answer,score\nWhere is my order?,In transit,1\nRefund?,,0.5\n"


def _upload(client, dataset, name, content, **fields):
    return client.post(
        "/api/v1/dataset-versions/",
        {"dataset": str(dataset.pk), "file": SimpleUploadedFile(name, content), **fields},
        format="multipart",
    )


def test_jsonl_upload_is_profiled(client_for, pm):
    dataset = artifact(pm, Dataset)
    seq = last_seq()
    client = client_for(pm)
    seq = last_seq()
    response = _upload(client, dataset, "train.jsonl", JSONL, licence="CC-BY-4.0")
    assert response.status_code == 201, response.data
    body = response.json()
    assert body["sha256"] == hashlib.sha256(JSONL).hexdigest()
    assert body["row_count"] == 2
    assert body["size_bytes"] == len(JSONL)
    assert body["format"] == "jsonl"
    assert body["schema"] == {"columns": {"q": "string", "a": "string?", "n": "number"}}
    assert body["licence"] == "CC-BY-4.0"
    assert body["file"].startswith(f"datasets/{dataset.pk}/")
    assert verbs_since(seq) == Counter({"dataset_version.created": 1})
    stored = DatasetVersion.objects.get(pk=body["id"])
    assert stored.file.read() == JSONL


def test_csv_upload_is_profiled(client_for, pm):
    dataset = artifact(pm, Dataset)
    response = _upload(client_for(pm), dataset, "eval.csv", CSV, pii_class="pseudonymised")
    assert response.status_code == 201, response.data
    body = response.json()
    assert body["sha256"] == hashlib.sha256(CSV).hexdigest()
    assert body["row_count"] == 2
    assert body["format"] == "csv"
    assert body["schema"] == {
        "columns": {"question": "string", "answer": "string?", "score": "number"}
    }
    assert body["pii_class"] == "pseudonymised"


@pytest.mark.parametrize(
    ("name", "content", "line"),
    [
        ("bad.jsonl", b'{"a": 1}\n{"a": 2}\n{"a": \n', "line 3"),
        ("bad.jsonl", b'{"a": 1}\n[1, 2]\n', "line 2"),
        ("bad.csv", b"a,b\n1,2\n3\n", "line 3"),
    ],
)
def test_malformed_upload_names_the_line(client_for, pm, name, content, line):
    dataset = artifact(pm, Dataset)
    client = client_for(pm)
    seq = last_seq()
    body = assert_error(_upload(client, dataset, name, content), 400, "malformed_dataset")
    assert line in body["message"]
    assert "file" in body["fields"]
    assert verbs_since(seq) == Counter()
    assert not DatasetVersion.objects.filter(dataset=dataset).exists()


def test_uri_only_dataset_version_as_json(client_for, pm):
    dataset = artifact(pm, Dataset)
    digest = hashlib.sha256(b"remote").hexdigest()
    response = client_for(pm).post(
        "/api/v1/dataset-versions/",
        {
            "dataset": str(dataset.pk),
            "uri": "s3://bucket/big.parquet",
            "sha256": digest,
            "row_count": 1_000_000,
            "retention_until": "2030-01-01",
        },
        format="json",
    )
    assert response.status_code == 201, response.data
    body = response.json()
    assert body["file"] is None
    assert body["format"] == "other"
    assert body["sha256"] == digest
    assert body["retention_until"] == "2030-01-01"


def test_dataset_version_needs_a_file_or_uri(client_for, pm):
    dataset = artifact(pm, Dataset)
    body = assert_error(
        client_for(pm).post("/api/v1/dataset-versions/", {"dataset": str(dataset.pk)}, "json"),
        400,
    )
    assert "file" in body["fields"]


def test_dataset_version_used_by_a_model_cannot_be_deleted(client_for, pm):
    """GIVEN a dataset version in a model version's lineage WHEN deleted THEN 409, not gone."""
    used = _dataset_version(pm)
    _model_version(pm, training_datasets=[used])
    client = client_for(pm)
    seq = last_seq()
    body = assert_error(client.delete(f"/api/v1/dataset-versions/{used.pk}/"), 409, "referenced")
    assert "deprecate" in body["message"]
    assert verbs_since(seq) == Counter()
    assert DatasetVersion.objects.filter(pk=used.pk).exists()
    # ... but it can be deprecated.
    response = client.post(f"/api/v1/dataset-versions/{used.pk}/deprecate/", {}, format="json")
    assert response.status_code == 200


def test_parent_dataset_version_cannot_be_deleted(client_for, pm):
    parent = _dataset_version(pm)
    _dataset_version(pm, dataset=parent.dataset, parent=parent)
    assert_error(client_for(pm).delete(f"/api/v1/dataset-versions/{parent.pk}/"), 409, "referenced")


def test_unreferenced_versions_of_each_kind_delete(client_for, pm):
    client = client_for(pm)
    _, (prompt_version,) = prompt_with_versions(pm, "Gone soon.")
    for url, model, obj in (
        ("prompt-versions", PromptTemplateVersion, prompt_version),
        ("model-versions", ModelVersion, _model_version(pm)),
        ("dataset-versions", DatasetVersion, _dataset_version(pm)),
    ):
        assert client.delete(f"/api/v1/{url}/{obj.pk}/").status_code == 204
        assert not model.objects.filter(pk=obj.pk).exists()
