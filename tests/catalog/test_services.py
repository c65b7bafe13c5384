import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.audit.models import AuditEvent
from apps.catalog import prompting
from apps.catalog import services as catalog
from apps.catalog.models import (
    Dataset,
    DatasetVersion,
    Model,
    Product,
    PromptTemplate,
    PromptTemplateVersion,
)
from apps.core.exceptions import ApplicationError, Conflict, Forbidden
from apps.core.hashing import content_hash
from tests.factories import TeamFactory, artifact, member, product, prompt_with_versions

pytestmark = pytest.mark.django_db


@pytest.fixture
def pm():
    return member("product_manager")


def test_product_create_is_audited_and_granted(pm):
    p = product(pm, stage="concept")
    events = AuditEvent.objects.filter(product_id=p.pk)
    assert set(events.values_list("verb", flat=True)) == {"product.created", "permission.granted"}
    created = events.get(verb="product.created")
    assert created.actor == pm
    assert created.after["slug"] == p.slug


def test_only_authors_create_products():
    team = TeamFactory()
    reviewer = member("reviewer", team)
    with pytest.raises(Forbidden):
        catalog.product_create(actor=reviewer, slug="x", name="X", owner_team=team)
    pm_elsewhere = member("product_manager")
    with pytest.raises(Forbidden):
        catalog.product_create(actor=pm_elsewhere, slug="x", name="X", owner_team=team)


def test_stage_transitions_are_guarded(pm):
    p = product(pm)
    with pytest.raises(Conflict) as exc:
        catalog.product_transition(actor=pm, product=p, to_stage="production")
    assert "allowed: design" in exc.value.message
    for stage in ("design", "development", "validation", "production", "deprecated", "retired"):
        p = catalog.product_transition(actor=pm, product=p, to_stage=stage)
    with pytest.raises(Conflict):
        catalog.product_transition(actor=pm, product=p, to_stage="production")
    assert AuditEvent.objects.filter(verb="product.stage_changed", product_id=p.pk).count() == 6


def test_bulk_writes_are_refused(pm):
    product(pm)
    with pytest.raises(ApplicationError):
        Product.objects.all().update(name="x")
    with pytest.raises(ApplicationError):
        Product.objects.all().delete()


def test_prompt_version_hash_is_canonical_and_immutable(pm):
    _, (v1,) = prompt_with_versions(pm, "Hello")
    assert v1.content_hash == content_hash(v1.content())
    assert v1.version == 1
    v1.messages = [{"role": "system", "content": "Changed"}]
    with pytest.raises(ApplicationError) as exc:
        v1.save()
    assert exc.value.code == "immutable"
    assert "messages" in exc.value.message


def test_versions_number_up_and_refuse_unchanged_content(pm):
    prompt, (v1, v2) = prompt_with_versions(pm, "One", "Two")
    assert (v1.version, v2.version) == (1, 2)
    with pytest.raises(Conflict):
        catalog.prompt_version_create(
            actor=pm, prompt=prompt, messages=v2.messages, variables_schema=v2.variables_schema
        )


def test_template_errors_are_clear(pm):
    prompt = artifact(pm, PromptTemplate)
    with pytest.raises(ApplicationError) as exc:
        catalog.prompt_version_create(
            actor=pm, prompt=prompt, messages=[{"role": "user", "content": "{{ q "}]
        )
    assert exc.value.code == "template_syntax"
    with pytest.raises(ApplicationError) as exc:
        catalog.prompt_version_create(
            actor=pm, prompt=prompt, messages=[{"role": "user", "content": "{{ q }}"}]
        )
    assert "q" in exc.value.message  # used but not declared in the schema
    with pytest.raises(ApplicationError):
        catalog.prompt_version_create(actor=pm, prompt=prompt, messages=[{"role": "x"}])


def test_render_in_sandbox_with_schema(pm):
    _, (v,) = prompt_with_versions(pm, "Be brief about {{ q }}.")
    out = prompting.render_messages(v.messages, v.variables_schema, {"q": "tea"})
    assert out[0]["content"] == "Be brief about tea."
    with pytest.raises(ApplicationError) as exc:
        prompting.render_messages(v.messages, v.variables_schema, {})
    assert exc.value.code == "invalid_variables"
    with pytest.raises(ApplicationError):
        prompting.render_messages(v.messages, v.variables_schema, {"q": 5})
    evil = [{"role": "user", "content": "{{ q.__class__.__mro__ }}"}]
    with pytest.raises(ApplicationError) as exc:
        prompting.render_messages(evil, {}, {"q": "x"})
    assert exc.value.code in {"template_security", "invalid_variables"}


def test_line_diff_shows_changed_line(pm):
    _, (v1, v2) = prompt_with_versions(pm, "Be concise.", "Be concise and friendly.")
    rows = prompting.line_diff(v1.messages, v2.messages, "v1", "v2")
    assert {"op": "-", "text": "Be concise."} in rows
    assert {"op": "+", "text": "Be concise and friendly."} in rows


def _upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data)


def test_dataset_upload_is_profiled(pm):
    ds = artifact(pm, Dataset)
    data = b'{"q": "a", "n": 1}\n{"q": "b", "n": 2.5, "extra": null}\n'
    v = catalog.dataset_version_create(actor=pm, dataset=ds, file=_upload("d.jsonl", data))
    import hashlib

    assert v.sha256 == hashlib.sha256(data).hexdigest()
    assert v.row_count == 2
    assert v.schema == {"columns": {"q": "string", "n": "number", "extra": "null"}}
    assert v.file.name.endswith(".jsonl")

    csv_v = catalog.dataset_version_create(
        actor=pm, dataset=ds, file=_upload("d.csv", b"a,b\n1,x\n2,\n"), parent=v
    )
    assert csv_v.row_count == 2
    assert csv_v.schema == {"columns": {"a": "integer", "b": "string?"}}
    assert csv_v.parent == v


@pytest.mark.parametrize(
    ("name", "data", "line"),
    [
        ("bad.jsonl", b'{"a": 1}\n{"a": 2\n', "line 2"),
        ("bad.jsonl", b'{"a": 1}\n[1, 2]\n', "line 2"),
        ("bad.csv", b"a,b\n1,2\n3\n", "line 3"),
        ("empty.csv", b"", "line 1"),
    ],
)
def test_malformed_dataset_names_the_line(pm, name, data, line):
    ds = artifact(pm, Dataset)
    with pytest.raises(ApplicationError) as exc:
        catalog.dataset_version_create(actor=pm, dataset=ds, file=_upload(name, data))
    assert exc.value.message.startswith(line), exc.value.message
    assert not DatasetVersion.objects.exists()


def test_lineage_and_referenced_versions_cannot_be_deleted(pm):
    ds = artifact(pm, Dataset)
    dv = catalog.dataset_version_create(
        actor=pm, dataset=ds, file=_upload("d.jsonl", b'{"a": 1}\n')
    )
    model = artifact(pm, Model)
    mv = catalog.model_version_create(
        actor=pm,
        model=model,
        provider="builtin",
        provider_model="echo-1",
        training_datasets=[dv],
        base_model="base",
    )
    assert [link.dataset_version for link in mv.lineage.all()] == [dv]
    assert [dv.content_hash] == [d for _, d in mv.content()["datasets"]]
    with pytest.raises(Conflict) as exc:
        catalog.version_delete(actor=pm, version=dv)
    assert "deprecate" in exc.value.message
    catalog.version_deprecate(actor=pm, version=dv, reason="superseded")
    dv.refresh_from_db()
    assert dv.is_deprecated
    catalog.version_delete(actor=pm, version=mv)
    catalog.version_delete(actor=pm, version=DatasetVersion.objects.get(pk=dv.pk))


def test_other_team_cannot_add_versions(pm):
    prompt = artifact(pm, PromptTemplate)
    outsider = member("product_manager")
    with pytest.raises(Forbidden):
        catalog.prompt_version_create(
            actor=outsider, prompt=prompt, messages=[{"role": "user", "content": "x"}]
        )
    assert not PromptTemplateVersion.objects.exists()


def test_history_records_actor(pm):
    p = product(pm)
    catalog.product_update(actor=pm, product=p, name="Renamed")
    names = list(p.history.values_list("history_username", flat=True))
    assert names == [pm.username, pm.username]


def test_deleting_a_dataset_version_removes_its_file(pm, django_capture_on_commit_callbacks):
    ds = artifact(pm, Dataset)
    dv = catalog.dataset_version_create(
        actor=pm, dataset=ds, file=_upload("d.jsonl", b'{"a": 1}\n')
    )
    storage, name = dv.file.storage, dv.file.name
    assert storage.exists(name)
    with django_capture_on_commit_callbacks(execute=True):
        catalog.version_delete(actor=pm, version=dv)
    assert not storage.exists(name)


def test_a_taken_slug_is_a_conflict_even_past_validation(pm, monkeypatch):
    """GIVEN a concurrent create that passed validation WHEN the insert collides THEN 409."""
    first = product(pm)
    monkeypatch.setattr(Product, "full_clean", lambda self, **kw: None)
    with pytest.raises(Conflict) as exc:
        catalog.product_create(actor=pm, slug=first.slug, name="x", owner_team=first.owner_team)
    assert exc.value.code == "duplicate"
