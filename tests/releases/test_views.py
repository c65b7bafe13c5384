"""The release pages and the product page's releases and change requests."""

import re

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.catalog import services as catalog
from apps.changes import services as changes
from apps.releases.models import Release
from apps.releases.services import release_freeze
from apps.releases.views import next_version
from tests.changes.helpers import PASSWORD, proposal, released, submitted_cr, team_reviewer
from tests.compliance.test_timetravel import PRODUCT_PANEL_QUERIES as COMPLIANCE_PANEL_QUERIES
from tests.factories import (
    Dataset,
    artifact,
    member,
    model_version,
    product,
    prompt_with_versions,
    release,
)
from tests.gateway.test_charts import PANEL_QUERIES
from tests.lifecycle.test_views import LIFECYCLE_PANEL_QUERIES
from tests.portal.test_views import PRODUCT_PANEL_QUERIES

pytestmark = pytest.mark.django_db

# the gateway's "Calls, last 7 days" panel and the portal's "Published APIs"
PRODUCT_DETAIL_QUERIES = (
    16 + PANEL_QUERIES + PRODUCT_PANEL_QUERIES + COMPLIANCE_PANEL_QUERIES + LIFECYCLE_PANEL_QUERIES
)


@pytest.fixture
def pm():
    return member("product_manager")


@pytest.fixture
def pm_client(client, pm):
    client.force_login(pm)
    return client


def _text(response) -> str:
    return response.content.decode()


def _selected(html: str, name: str) -> list[str]:
    """The values selected in the <select name=...> of a page."""
    match = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', html, re.S)
    assert match, name
    return re.findall(r'<option value="([^"]*)" selected>', match.group(1))


def _post_data(r: Release, **overrides) -> dict:
    data = {
        "version": r.version,
        "prompt_version": r.prompt_version_id,
        "model_version": r.model_version_id,
        "dataset_versions": [],
        "cache_mode": "off",
        "cache_ttl_seconds": 0,
        "timeout_seconds": 30,
        "max_retries": 2,
        "max_tokens": "",
        "notes": "",
    }
    data.update(overrides)
    return data


def test_next_version_bumps_the_highest_minor():
    assert next_version([]) == "1.0.0"
    assert next_version(["1.0.0", "1.2.3", "0.9.0", "junk"]) == "1.3.0"
    assert next_version(["2.0.0-rc.1"]) == "2.1.0"


def test_pages_require_login_and_scope(client, pm):
    r = release(pm)
    for url in (
        reverse("release_detail", args=[r.pk]),
        reverse("release_edit", args=[r.pk]),
        reverse("release_list", args=[r.product_id]),
        reverse("release_create", args=[r.product_id]),
    ):
        assert client.get(url).status_code == 302
        client.force_login(member("product_manager"))  # another team
        assert client.get(url).status_code == 404
        client.logout()


def test_a_reviewer_reads_but_cannot_draft(client, pm):
    r = release(pm)
    client.force_login(team_reviewer(pm))
    html = _text(client.get(reverse("release_detail", args=[r.pk])))
    assert r.version in html
    assert "Edit draft" not in html
    assert "File a change request" not in html
    assert client.get(reverse("release_create", args=[r.product_id])).status_code == 403
    assert client.get(reverse("release_edit", args=[r.pk])).status_code == 403


def test_new_release_starts_from_the_released_one(pm_client, pm):
    base = released(pm)
    team = base.product.owner_team
    _, (old_pv, new_pv) = prompt_with_versions(pm, "Old.", "New.", team=team)
    catalog.version_deprecate(actor=pm, version=old_pv, reason="Superseded.")
    html = _text(pm_client.get(reverse("release_create", args=[base.product_id])))
    assert 'value="1.1.0"' in html  # the suggested version
    assert _selected(html, "prompt_version") == [str(base.prompt_version_id)]
    assert _selected(html, "model_version") == [str(base.model_version_id)]
    assert "Starts from 1.0.0 (released)" in html
    assert str(new_pv.pk) in html
    assert str(old_pv.pk) not in html  # deprecated versions cannot go into a new release


def test_create_a_draft_with_datasets_and_gateway_settings(pm_client, pm):
    base = released(pm)
    team = base.product.owner_team
    _, (pv,) = prompt_with_versions(pm, "Swapped prompt.", team=team)
    fb1, fb2 = model_version(pm, team, "backup-1"), model_version(pm, team, "backup-2")
    dataset = artifact(pm, Dataset, team)
    dv = catalog.dataset_version_create(actor=pm, dataset=dataset, uri="s3://bucket/faq.jsonl")
    response = pm_client.post(
        reverse("release_create", args=[base.product_id]),
        _post_data(
            base,
            version="1.1.0",
            prompt_version=pv.pk,
            dataset_versions=[dv.pk],
            cache_mode="exact",
            cache_ttl_seconds=60,
            timeout_seconds="12.5",
            max_tokens=256,
            fallback_1=fb2.pk,
            fallback_2=fb1.pk,
            notes="Swap the prompt.",
        ),
    )
    r = Release.objects.get(product=base.product, version="1.1.0")
    assert response.status_code == 302
    assert response["Location"] == reverse("release_detail", args=[r.pk])
    assert (r.status, r.prompt_version, r.created_by) == ("draft", pv, pm)
    assert r.settings == {
        "fallback": [str(fb2.pk), str(fb1.pk)],
        "cache": {"mode": "exact", "ttl_seconds": 60},
        "timeout_seconds": 12.5,
        "max_retries": 2,
        "max_tokens": 256,
    }
    assert [link.dataset_version for link in r.dataset_links.all()] == [dv]
    # the detail page: the bill of materials, the chain in order, the diff with the released
    html = _text(pm_client.get(response["Location"]))
    assert str(pv) in html
    assert str(dv) in html
    assert re.search(rf"{re.escape(str(fb2))}</a> → <a[^>]*>{re.escape(str(fb1))}", html)
    assert "Compared with the released 1.0.0" in html
    assert re.search(r'<td class="marker">-</td><td class="text">Baseline prompt\.</td>', html)
    assert re.search(r'<td class="marker">\+</td><td class="text">Swapped prompt\.</td>', html)
    assert f'none</td><td class="new">{fb2} → {fb1}' in html.replace("\n", "")
    assert "release.created" in html
    assert "Edit draft" in html
    assert f"?product={base.product_id}&amp;proposed={r.pk}" in html


def test_the_form_shows_service_refusals_on_their_fields(pm_client, pm):
    base = released(pm)
    url = reverse("release_create", args=[base.product_id])
    response = pm_client.post(url, _post_data(base, version="1.0.0"))
    assert response.status_code == 200
    assert "Already used." in _text(response)
    response = pm_client.post(url, _post_data(base, version="1.1.0", cache_mode="exact"))
    html = _text(response)
    assert response.status_code == 200
    assert re.search(r'field has-error">\s*<label for="id_cache_ttl_seconds"', html)
    assert "must be positive when the cache is on." in html
    response = pm_client.post(url, _post_data(base, version="one"))
    assert "must be a semantic version" in _text(response)
    response = pm_client.post(
        url, _post_data(base, version="1.1.0", fallback_1=base.model_version_id)
    )
    html = _text(response)
    assert re.search(r'field has-error">\s*<label for="id_fallback_1"', html)
    assert "repeats a model already in the chain" in html
    assert Release.objects.filter(product=base.product).count() == 1


def test_edit_a_draft(pm_client, pm):
    r = release(pm, version="1.0.1", settings={"max_tokens": 100})
    before = r.fingerprint
    url = reverse("release_edit", args=[r.pk])
    html = _text(pm_client.get(url))
    assert 'value="1.0.1"' in html
    assert 'value="100"' in html
    response = pm_client.post(url, _post_data(r, version="1.0.2", max_tokens=200, notes="More."))
    assert response.status_code == 302
    r.refresh_from_db()
    assert (r.version, r.settings["max_tokens"], r.notes) == ("1.0.2", 200, "More.")
    assert r.fingerprint != before
    assert AuditEvent.objects.filter(verb="release.updated", object_id=str(r.pk)).count() == 1


def test_a_frozen_release_cannot_be_edited(pm_client, pm):
    r = release_freeze(actor=pm, release=release(pm))
    response = pm_client.get(reverse("release_edit", args=[r.pk]), follow=True)
    assert response.redirect_chain[-1][0] == reverse("release_detail", args=[r.pk])
    html = _text(response)
    assert "can no longer be edited" in html
    assert "Edit draft" not in html
    response = pm_client.post(reverse("release_edit", args=[r.pk]), _post_data(r, notes="x"))
    assert response.status_code == 302
    r.refresh_from_db()
    assert r.notes == ""


def test_release_list_paginates(pm_client, pm):
    p = product(pm)
    pv = prompt_with_versions(pm, "Same.", team=p.owner_team)[1][0]
    mv = model_version(pm, p.owner_team)
    for i in range(27):
        release(pm, p, f"1.{i}.0", prompt_version=pv, model_version=mv)
    response = pm_client.get(reverse("release_list", args=[p.pk]))
    assert _text(response).count('href="/releases/') == 25
    assert "Page 1 of 2" in _text(response)
    response = pm_client.get(reverse("release_list", args=[p.pk]), {"page": 2})
    assert _text(response).count('href="/releases/') == 2


def test_product_page_shows_released_release_releases_and_changes(pm_client, pm):
    cr = submitted_cr(pm)
    p = cr.product
    html = _text(pm_client.get(reverse("product_detail", args=[p.pk])))
    assert 'data-released="1.0.0"' in html
    assert reverse("release_detail", args=[cr.baseline_id]) in html
    assert reverse("release_detail", args=[cr.proposed_id]) in html
    assert 'class="badge status-candidate"' in html
    assert reverse("change_detail", args=[cr.pk]) in html
    assert "Friendlier prompt" in html
    assert 'class="badge state-submitted"' in html
    assert reverse("release_create", args=[p.pk]) in html
    assert f"{reverse('change_create')}?product={p.pk}" in html
    # a reviewer reads the same sections without the buttons
    pm_client.force_login(team_reviewer(pm))
    html = _text(pm_client.get(reverse("product_detail", args=[p.pk])))
    assert "Friendlier prompt" in html
    assert reverse("release_create", args=[p.pk]) not in html


def test_product_page_without_releases(pm_client, pm):
    p = product(pm)
    html = _text(pm_client.get(reverse("product_detail", args=[p.pk])))
    assert "nothing yet" in html
    assert "No change requests yet." in html


@pytest.mark.parametrize("rows", [3, 30])
def test_product_page_query_count_is_constant(rows, pm_client, pm, django_assert_num_queries):
    base = released(pm)
    reviewer = team_reviewer(pm)
    for i in range(rows):
        cr = changes.change_request_create(
            actor=pm,
            product=base.product,
            title=f"Change {i}",
            rationale="Why.",
            proposed=proposal(pm, base, version=f"1.{i + 1}.0", text=f"Text {i}."),
        )
        if i == 0:
            cr = changes.change_request_submit(actor=pm, cr=cr)
            changes.change_request_approve(actor=reviewer, cr=cr, password=PASSWORD)
    url = reverse("product_detail", args=[base.product_id])
    pm_client.get(url)
    with django_assert_num_queries(PRODUCT_DETAIL_QUERIES):
        response = pm_client.get(url)
    html = _text(response)
    assert html.count('href="/changes/') - html.count('href="/changes/new') >= min(rows, 10)
    assert ("All releases →" in html) == (rows + 1 > 10)
