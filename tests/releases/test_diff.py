import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.catalog import services as catalog
from apps.catalog.models import Dataset
from apps.releases.diff import change_kind, release_diff
from tests.factories import artifact, member, model_version, product, prompt_with_versions, release

pytestmark = pytest.mark.django_db


def test_diff_shows_prompt_lines_model_fields_datasets_and_settings():
    pm = member("product_manager")
    p = product(pm)
    team = p.owner_team
    _, (pv1, pv2) = prompt_with_versions(pm, "Be concise.", "Be concise and kind.", team=team)
    mv1 = model_version(pm, team, provider_model="echo-1")
    mv2 = model_version(pm, team, provider_model="echo-2")
    ds = artifact(pm, Dataset, team)
    dv1 = catalog.dataset_version_create(
        actor=pm, dataset=ds, file=SimpleUploadedFile("a.jsonl", b'{"a": 1}\n')
    )
    dv2 = catalog.dataset_version_create(
        actor=pm, dataset=ds, file=SimpleUploadedFile("b.jsonl", b'{"a": 2}\n')
    )
    old = release(pm, p, "1.0.0", prompt_version=pv1, model_version=mv1, dataset_versions=[dv1])
    new = release(
        pm,
        p,
        "1.1.0",
        prompt_version=pv2,
        model_version=mv2,
        dataset_versions=[dv2],
        settings={"cache": {"mode": "exact", "ttl_seconds": 60}},
    )
    diff = release_diff(old, new)
    assert {"op": "-", "text": "Be concise."} in diff["prompt"]["lines"]
    assert {"op": "+", "text": "Be concise and kind."} in diff["prompt"]["lines"]
    assert {"key": "provider_model", "from": "echo-1", "to": "echo-2"} in diff["model"]["fields"]
    assert diff["datasets"] == {"added": [str(dv2)], "removed": [str(dv1)], "unchanged": []}
    assert {"key": "cache.mode", "from": "off", "to": "exact"} in diff["settings"]
    assert change_kind(old, diff) == "combined"
    assert change_kind(None, release_diff(None, new)) == "initial_release"

    only_prompt = release(
        pm, p, "1.2.0", prompt_version=pv2, model_version=mv1, dataset_versions=[dv1]
    )
    assert change_kind(old, release_diff(old, only_prompt)) == "prompt_change"
