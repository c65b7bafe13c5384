"""The releases REST API: the shared suite, then the release's own rules, diff and effectivity."""

import uuid
from collections import Counter

import pytest
from django.utils import timezone

from apps.accounts.roles import PRODUCT_MANAGER, REVIEWER
from apps.catalog import services as catalog
from apps.catalog.models import Dataset
from apps.releases.services import release_freeze, release_release

from ..api_suite import APIResourceSuite, assert_error, last_seq, verbs_since
from ..factories import artifact, member, model_version, product, prompt_with_versions, release

pytestmark = pytest.mark.django_db

URL = "/api/v1/releases/"


def _team_of(user):
    return user.memberships.first().team


def _dataset_version(actor, team=None):
    dataset = artifact(actor, Dataset, team)
    return catalog.dataset_version_create(
        actor=actor, dataset=dataset, uri=f"s3://b/{uuid.uuid4().hex}.jsonl", format="jsonl"
    )


def _parts(actor, team=None):
    team = team or _team_of(actor)
    return {
        "prompt_version": prompt_with_versions(actor, "You help.", team=team)[1][0],
        "model_version": model_version(actor, team),
    }


def _released(actor, prod=None, version="1.0.0"):
    r = release(actor, prod, version)
    return release_release(actor=actor, release=release_freeze(actor=actor, release=r))


class TestReleaseAPI(APIResourceSuite):
    url = URL
    create_verbs = ("release.created",)
    update_verbs = ("release.updated",)
    actions = (("retire", {}, ("release.retired",)),)
    list_queries = 6
    bad_filters = ("status=live", "product=not-a-uuid")

    def make(self, actor):
        return release(actor)

    def make_for_list(self, actor):
        """With dataset versions: the list must use the prefetched links."""
        team = _team_of(actor)
        return release(
            actor,
            dataset_versions=[_dataset_version(actor, team), _dataset_version(actor, team)],
        )

    def create_payload(self, actor):
        prod = product(actor)
        parts = _parts(actor)
        return {
            "product": str(prod.pk),
            "version": "1.0.0",
            "prompt_version": str(parts["prompt_version"].pk),
            "model_version": str(parts["model_version"].pk),
            "dataset_versions": [str(_dataset_version(actor).pk)],
            "settings": {"timeout_seconds": 12},
        }

    def update_payload(self, obj):
        return {"version": "1.0.1"}


# --- Create and edit ---------------------------------------------------------------------------


@pytest.fixture
def pm():
    return member(PRODUCT_MANAGER)


def test_create_returns_the_contract_fields(client_for, pm):
    prod = product(pm)
    parts = _parts(pm)
    dv = _dataset_version(pm)
    response = client_for(pm).post(
        URL,
        {
            "product": str(prod.pk),
            "version": "1.2.0",
            "prompt_version": str(parts["prompt_version"].pk),
            "model_version": str(parts["model_version"].pk),
            "dataset_versions": [str(dv.pk)],
            "settings": {"cache": {"mode": "exact", "ttl_seconds": 60}},
            "notes": "First cut.",
        },
        format="json",
    )
    assert response.status_code == 201, response.data
    body = response.json()
    assert set(body) == {
        "id",
        "product",
        "version",
        "prompt_version",
        "model_version",
        "dataset_versions",
        "settings",
        "notes",
        "status",
        "fingerprint",
        "frozen_at",
        "effective_from",
        "effective_to",
        "created_by",
        "created_at",
        "updated_at",
    }
    assert body["product"] == str(prod.pk)
    assert body["prompt_version"] == str(parts["prompt_version"].pk)
    assert body["dataset_versions"] == [str(dv.pk)]
    assert body["status"] == "draft"
    assert body["settings"]["cache"] == {"mode": "exact", "ttl_seconds": 60}
    assert body["settings"]["timeout_seconds"] == 30  # defaults filled in by the service
    assert len(body["fingerprint"]) == 64
    assert body["created_by"] == pm.username
    assert (body["frozen_at"], body["effective_from"], body["effective_to"]) == (None, None, None)


def test_read_only_fields_are_ignored_on_create(client_for, pm):
    prod = product(pm)
    parts = _parts(pm)
    response = client_for(pm).post(
        URL,
        {
            "product": str(prod.pk),
            "version": "1.0.0",
            "prompt_version": str(parts["prompt_version"].pk),
            "model_version": str(parts["model_version"].pk),
            "status": "released",
            "fingerprint": "0" * 64,
            "effective_from": "2020-01-01T00:00:00Z",
        },
        format="json",
    )
    assert response.status_code == 201, response.data
    body = response.json()
    assert body["status"] == "draft"
    assert body["fingerprint"] != "0" * 64
    assert body["effective_from"] is None


def test_out_of_scope_parts_do_not_exist(client_for, pm):
    """GIVEN another team's product and versions WHEN used by id THEN 400 "does not exist"."""
    other = member(PRODUCT_MANAGER)
    theirs = _parts(other)
    mine = _parts(pm)
    payload = {
        "product": str(product(pm).pk),
        "version": "1.0.0",
        "prompt_version": str(mine["prompt_version"].pk),
        "model_version": str(mine["model_version"].pk),
    }
    client = client_for(pm)
    cases = (
        ("product", str(product(other).pk)),
        ("prompt_version", str(theirs["prompt_version"].pk)),
        ("model_version", str(theirs["model_version"].pk)),
        ("dataset_versions", [str(_dataset_version(other).pk)]),
        ("product", str(uuid.uuid4())),
        ("prompt_version", "not-a-uuid"),
    )
    seq = last_seq()
    for field, value in cases:
        body = assert_error(client.post(URL, {**payload, field: value}, format="json"), 400)
        assert set(body["fields"]) == {field} or set(body["fields"]) == {f"{field}[0]"}, body
        assert "does not exist" in str(body["fields"]), body
    assert verbs_since(seq) == Counter()


def test_parts_of_another_team_i_can_see_are_400(client_for, pm):
    """A user in two teams sees both teams' versions; the service refuses to mix them."""
    other_team = member(PRODUCT_MANAGER).memberships.first().team
    from apps.accounts.services import membership_add

    membership_add(actor=None, user=pm, team=other_team, role=PRODUCT_MANAGER)
    prod = product(pm, team=_team_of(pm))
    theirs = _parts(pm, other_team)
    mine = _parts(pm, _team_of(pm))
    body = assert_error(
        client_for(pm).post(
            URL,
            {
                "product": str(prod.pk),
                "version": "1.0.0",
                "prompt_version": str(theirs["prompt_version"].pk),
                "model_version": str(mine["model_version"].pk),
            },
            format="json",
        ),
        400,
        "invalid",
    )
    assert "prompt_version" in body["fields"]
    assert "another team" in body["message"]


def test_bad_version_settings_and_duplicates(client_for, pm):
    prod = product(pm)
    parts = _parts(pm)
    payload = {
        "product": str(prod.pk),
        "version": "1.0.0",
        "prompt_version": str(parts["prompt_version"].pk),
        "model_version": str(parts["model_version"].pk),
    }
    client = client_for(pm)
    body = assert_error(client.post(URL, {**payload, "version": "v1"}, format="json"), 400)
    assert "version" in body["fields"]
    body = assert_error(
        client.post(URL, {**payload, "settings": {"cache": {"mode": "lru"}}}, format="json"), 400
    )
    assert "settings.cache" in body["fields"]
    body = assert_error(client.post(URL, {**payload, "settings": {"nope": 1}}, format="json"), 400)
    assert "settings" in body["fields"]
    assert client.post(URL, payload, format="json").status_code == 201
    body = assert_error(client.post(URL, payload, format="json"), 409, "duplicate")
    assert "version" in body["fields"]


def test_patch_changes_parts_and_the_fingerprint(client_for, pm):
    obj = release(pm)
    client = client_for(pm)
    dv = _dataset_version(pm)
    new_pv = prompt_with_versions(pm, "Another prompt.")[1][0]
    seq = last_seq()
    response = client.patch(
        f"{URL}{obj.pk}/",
        {"prompt_version": str(new_pv.pk), "dataset_versions": [str(dv.pk)]},
        format="json",
    )
    assert response.status_code == 200, response.data
    body = response.json()
    assert body["prompt_version"] == str(new_pv.pk)
    assert body["dataset_versions"] == [str(dv.pk)]
    assert body["fingerprint"] != obj.fingerprint
    assert verbs_since(seq) == Counter({"release.updated": 1})


def test_product_is_set_on_create_only(client_for, pm):
    obj = release(pm)
    client = client_for(pm)
    body = assert_error(
        client.patch(f"{URL}{obj.pk}/", {"product": str(product(pm).pk)}, format="json"), 400
    )
    assert set(body["fields"]) == {"product"}
    response = client.patch(
        f"{URL}{obj.pk}/", {"product": str(obj.product_id), "version": "2.0.0"}, format="json"
    )
    assert response.status_code == 200, response.data


def test_a_frozen_release_cannot_be_edited(client_for, pm):
    """GIVEN a release proposed for review (candidate, frozen) WHEN patched THEN 409 frozen."""
    obj = release_freeze(actor=pm, release=release(pm))
    client = client_for(pm)
    seq = last_seq()
    body = assert_error(
        client.patch(f"{URL}{obj.pk}/", {"version": "9.9.9"}, format="json"), 409, "frozen"
    )
    assert "create a new draft" in body["message"]
    assert verbs_since(seq) == Counter()


def test_a_notes_change_is_audited(client_for, pm):
    obj = release(pm)
    client = client_for(pm)
    seq = last_seq()
    response = client.patch(f"{URL}{obj.pk}/", {"notes": "Why."}, format="json")
    assert response.status_code == 200
    assert verbs_since(seq) == Counter({"release.updated": 1})


def test_releases_are_not_deleted_or_put(client_for, pm):
    obj = release(pm)
    client = client_for(pm)
    assert_error(client.delete(f"{URL}{obj.pk}/"), 405)
    assert_error(client.put(f"{URL}{obj.pk}/", {}, format="json"), 405)


# --- Status actions ----------------------------------------------------------------------------


def test_retire_follows_the_status_table(client_for, pm):
    """A live release is only ever deprecated by its successor's change request: there is no
    deprecate action, and retiring it is refused."""
    live = _released(pm)
    draft = release(pm, live.product, "1.1.0")
    client = client_for(pm)
    seq = last_seq()
    assert client.post(f"{URL}{live.pk}/deprecate/").status_code == 404
    assert_error(client.post(f"{URL}{live.pk}/retire/"), 409, "invalid_transition")
    assert verbs_since(seq) == Counter()

    response = client.post(f"{URL}{draft.pk}/retire/")
    assert response.status_code == 200, response.data
    assert response.json()["status"] == "retired"
    assert_error(client.post(f"{URL}{draft.pk}/retire/"), 409, "invalid_transition")
    assert verbs_since(seq) == Counter({"release.retired": 1})


def test_reviewer_may_not_retire(client_for, pm):
    live = _released(pm)
    draft = release(pm, live.product, "1.1.0")
    reviewer = member(REVIEWER, _team_of(pm))
    assert_error(client_for(reviewer).post(f"{URL}{draft.pk}/retire/"), 403, "forbidden")


# --- Filters -----------------------------------------------------------------------------------


def test_filters(client_for, pm):
    live = _released(pm)
    draft = release(pm, live.product, "1.1.0")
    elsewhere = release(pm, version="1.1.0")
    client = client_for(pm)

    def ids(query):
        response = client.get(f"{URL}?{query}")
        assert response.status_code == 200, response.data
        return {row["id"] for row in response.json()["results"]}

    assert ids(f"product={live.product_id}") == {str(live.pk), str(draft.pk)}
    assert ids("status=released") == {str(live.pk)}
    assert ids("version=1.1.0") == {str(draft.pk), str(elsewhere.pk)}
    assert ids(f"product={live.product_id}&status=draft") == {str(draft.pk)}
    assert ids(f"search={live.product.slug}") == {str(live.pk), str(draft.pk)}


# --- Diff --------------------------------------------------------------------------------------


def test_diff_defaults_to_the_released_release(client_for, pm):
    live = _released(pm)
    new_pv = prompt_with_versions(pm, "Be friendlier.")[1][0]
    dv = _dataset_version(pm)
    draft = release(
        pm,
        live.product,
        "1.1.0",
        prompt_version=new_pv,
        model_version=live.model_version,
        dataset_versions=[dv],
        settings={"timeout_seconds": 10},
    )
    client = client_for(pm)
    response = client.get(f"{URL}{draft.pk}/diff/")
    assert response.status_code == 200, response.data
    body = response.json()
    assert body["from"]["id"] == str(live.pk)
    assert body["from"]["label"] == str(live)
    assert body["to"]["id"] == str(draft.pk)
    assert body["prompt"]["changed"] is True
    assert {"op": "+", "text": "Be friendlier."} in body["prompt"]["lines"]
    assert body["model"] == {
        "changed": False,
        "from": str(live.model_version),
        "to": str(live.model_version),
        "fields": [],
    }
    assert body["datasets"]["added"] == [str(dv)]
    assert body["settings"] == [{"key": "timeout_seconds", "from": 30, "to": 10}]

    # The released release itself, with no other released: compared with nothing.
    body = client.get(f"{URL}{live.pk}/diff/").json()
    assert body["from"] is None
    assert body["prompt"]["from"] is None

    # An explicit `against`.
    body = client.get(f"{URL}{live.pk}/diff/?against={draft.pk}").json()
    assert (body["from"]["id"], body["to"]["id"]) == (str(draft.pk), str(live.pk))
    assert body["settings"] == [{"key": "timeout_seconds", "from": 10, "to": 30}]


def test_diff_against_out_of_scope_or_malformed(client_for, pm):
    obj = release(pm)
    theirs = release(member(PRODUCT_MANAGER))
    client = client_for(pm)
    assert_error(client.get(f"{URL}{obj.pk}/diff/?against={theirs.pk}"), 404)
    assert_error(client.get(f"{URL}{obj.pk}/diff/?against={uuid.uuid4()}"), 404)
    body = assert_error(client.get(f"{URL}{obj.pk}/diff/?against=nope"), 400, "invalid")
    assert "against" in body["fields"]


def test_diff_of_a_release_without_released_predecessor(client_for, pm):
    obj = release(pm)
    body = client_for(pm).get(f"{URL}{obj.pk}/diff/").json()
    assert body["from"] is None
    assert body["model"]["changed"] is True
    assert body["datasets"] == {"added": [], "removed": [], "unchanged": []}


# --- What was live when -------------------------------------------------------------------------


def _live(client, prod, at=None):
    url = f"/api/v1/products/{prod.pk}/live/"
    return client.get(url, {"at": at} if at is not None else {})


def test_live_at_an_instant(client_for, pm):
    before = timezone.now()
    first = _released(pm)
    between = timezone.now()
    second = release(pm, first.product, "1.1.0")
    second = release_release(actor=pm, release=release_freeze(actor=pm, release=second))
    client = client_for(pm)
    prod = first.product

    body = assert_error(_live(client, prod, before.isoformat()), 404, "not_found")
    assert prod.slug in body["message"]
    assert _live(client, prod, between.isoformat()).json()["id"] == str(first.pk)
    assert _live(client, prod).json()["id"] == str(second.pk)  # now, by default
    response = _live(client, prod, timezone.now().isoformat())
    assert response.status_code == 200
    assert response.json()["status"] == "released"
    # The response is a full release.
    assert response.json()["fingerprint"] == second.fingerprint


def test_live_timestamp_forms(client_for, pm):
    live = _released(pm)
    client = client_for(pm)
    later = timezone.now() + timezone.timedelta(days=1)
    for text in (
        later.strftime("%Y-%m-%dT%H:%M:%SZ"),
        later.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        later.strftime("%Y-%m-%dT%H:%M:%S"),  # naive: read as UTC
        later.strftime("%Y-%m-%dT%H:%M:%S 00:00"),  # a "+" that reached us as a space
    ):
        response = _live(client, live.product, text)
        assert response.status_code == 200, (text, response.json())
        assert response.json()["id"] == str(live.pk)
    assert _live(client, live.product, "").status_code == 200  # empty: as if not given (now)
    for text in ("yesterday", "2024-13-01T00:00:00Z", "1700000000", "2024-01-01T00:00:00+25:00"):
        body = assert_error(_live(client, live.product, text), 400, "invalid")
        assert "at" in body["fields"], text


def test_live_of_unknown_or_out_of_scope_product_is_404(client_for, pm, api_client):
    theirs = _released(member(PRODUCT_MANAGER))
    client = client_for(pm)
    assert_error(_live(client, theirs.product), 404)
    assert_error(client.get(f"/api/v1/products/{uuid.uuid4()}/live/"), 404)
    assert_error(api_client.get(f"/api/v1/products/{theirs.product_id}/live/"), 401)


def test_live_query_count(client_for, pm, django_assert_num_queries):
    live = _released(pm)
    client = client_for(pm)
    _live(client, live.product)
    with django_assert_num_queries(7):
        assert _live(client, live.product).status_code == 200
