"""The providers REST API: admins write, everyone signed in reads, secrets are write-only."""

import json
import logging
from collections import Counter

import pytest

from apps.accounts.roles import ADMIN, AUDITOR, DEVELOPER, PRODUCT_MANAGER, REVIEWER
from apps.audit.models import AuditEvent
from apps.gateway import services
from apps.gateway.models import Provider, ProviderPrice

from ..api_suite import APIResourceSuite, assert_error, last_seq, verbs_since
from ..factories import member
from .factories import admin, price, provider

pytestmark = pytest.mark.django_db

PRICE = {"provider_model": "gpt-test", "input_per_million": "0.5", "output_per_million": "1.5"}


class TestProviderAPI(APIResourceSuite):
    """Providers are global, not a team's: an admin (of any team) writes them, every other
    signed-in user reads the enabled ones, so a disabled provider is out of scope (404) for
    them. The suite's team-scope tests are replaced by that rule below."""

    url = "/api/v1/providers/"
    create_verbs = ("provider.created",)
    update_verbs = ("provider.updated",)
    actions = (("prices", PRICE, ("provider_price.set",)),)
    wrong_roles = (PRODUCT_MANAGER, REVIEWER, DEVELOPER, AUDITOR)
    list_queries = 4  # token, roles, count, page (creators joined)
    bad_filters = ("enabled=maybe", "kind=nope")

    @pytest.fixture
    def owner(self, team):
        return member(ADMIN, team)

    @pytest.fixture
    def outsider(self, team):
        return member(DEVELOPER, team)

    def make(self, actor):
        return provider(actor, secret="sk-suite")

    def make_for_list(self, actor):
        prov = provider(actor, secret="sk-suite")
        price(actor, prov)
        return prov

    def create_payload(self, actor):
        return {
            "slug": "local-vllm",
            "name": "Local vLLM",
            "kind": "openai_compatible",
            "base_url": "http://127.0.0.1:8000/v1",
            "secret": "sk-payload",
        }

    def update_payload(self, obj):
        return {"name": f"{obj.name} (renamed)"}

    def test_list_shows_only_objects_in_scope(self, client_for, owner, outsider, obj):
        hidden = provider(owner, enabled=False)
        theirs = {row["id"] for row in self._all_rows(client_for(outsider))}
        assert theirs == {str(obj.pk)}
        mine = {row["id"] for row in self._all_rows(client_for(owner))}
        assert mine == {str(obj.pk), str(hidden.pk)}

    def test_out_of_scope_is_404_for_reads_and_writes(self, client_for, owner, outsider):
        hidden = provider(owner, enabled=False)
        client = client_for(outsider)
        seq = last_seq()
        assert_error(client.get(self.detail_url(hidden)), 404)
        assert_error(client.patch(self.detail_url(hidden), {"name": "x"}, format="json"), 404)
        assert_error(client.get(f"{self.detail_url(hidden)}prices/"), 404)
        assert_error(client.post(f"{self.detail_url(hidden)}prices/", PRICE, format="json"), 404)
        assert verbs_since(seq) == Counter()


def test_a_secret_is_write_only_and_never_appears_in_clear_anywhere(client_for, caplog):
    """GIVEN an admin WHEN they create a provider with a recognisable secret, replace it, read
    it back every way and set a price THEN neither secret appears in any response, audit event,
    history row, log line or the provider's stored row."""
    caplog.set_level(logging.DEBUG)
    first, second = "sk-CANARY-first-7f3a9c", "sk-CANARY-second-2b8d41"
    actor = admin()
    client = client_for(actor)
    bodies = []
    response = client.post(
        "/api/v1/providers/",
        {
            "slug": "canary",
            "name": "Canary",
            "kind": "openai_compatible",
            "base_url": "https://llm.example.test/v1",
            "secret": first,
        },
        format="json",
    )
    assert response.status_code == 201, response.data
    created = response.json()
    assert created["secret_set"] is True
    assert "secret" not in created
    url = f"/api/v1/providers/{created['id']}/"
    bodies.append(response.content)
    response = client.patch(url, {"secret": second}, format="json")
    assert response.status_code == 200, response.data
    bodies.append(response.content)
    for path in (url, "/api/v1/providers/", f"{url}prices/", "/api/schema/"):
        bodies.append(client.get(path).content)
    bodies.append(client.post(f"{url}prices/", PRICE, format="json").content)
    reader = client_for(member(DEVELOPER))
    bodies.append(reader.get(url).content)

    audit = json.dumps(list(AuditEvent.objects.values()), default=str)
    history = json.dumps(
        list(Provider.history.values()) + list(ProviderPrice.history.values()), default=str
    )
    stored = json.dumps(list(Provider.objects.values()), default=str)
    logs = caplog.text + " ".join(repr(r.__dict__) for r in caplog.records)
    for clear in (first, second, "CANARY"):
        for body in bodies:
            assert clear.encode() not in body
        assert clear not in audit
        assert clear not in history
        assert clear not in stored
        assert clear not in logs
    assert '"secret": "changed"' in audit
    prov = Provider.objects.get(slug="canary")
    assert services.provider_secret(prov) == second  # it is there, encrypted


def test_a_provider_without_secret_says_so(client_for):
    client = client_for(admin())
    response = client.post(
        "/api/v1/providers/",
        {"slug": "demo", "name": "Demo", "kind": "builtin", "config": {"latency_ms": 5}},
        format="json",
    )
    assert response.status_code == 201, response.data
    body = response.json()
    assert body["secret_set"] is False
    assert body["base_url"] == ""
    assert body["config"] == {"latency_ms": 5}
    assert body["timeout_seconds"] == 30 and body["max_retries"] == 2


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"kind": "openai_compatible"}, "base_url"),
        ({"kind": "openai_compatible", "base_url": "ftp://x.test/"}, "base_url"),
        ({"kind": "openai_compatible", "base_url": "not a url"}, "base_url"),
        ({"kind": "builtin", "base_url": "http://x.test/"}, "base_url"),
        ({"kind": "mystery"}, "kind"),
        ({"kind": "builtin", "timeout_seconds": 0}, "timeout_seconds"),
        ({"kind": "builtin", "config": {"latency_ms": -5}}, "config"),
    ],
)
def test_bad_provider_input_is_400_naming_the_field(client_for, payload, field):
    client = client_for(admin())
    seq = last_seq()
    body = assert_error(
        client.post("/api/v1/providers/", {"slug": "p", "name": "P", **payload}, format="json"),
        400,
        "invalid",
    )
    assert field in body["fields"], body
    assert verbs_since(seq) == Counter()


def test_a_taken_slug_is_refused(client_for):
    actor = admin()
    provider(actor, slug="taken")
    response = client_for(actor).post(
        "/api/v1/providers/", {"slug": "taken", "name": "T", "kind": "builtin"}, format="json"
    )
    body = assert_error(response, response.status_code)
    assert response.status_code in (400, 409)
    assert "slug" in body["fields"]


def test_prices_are_listed_and_set(client_for):
    actor = admin()
    prov = provider(actor)
    client = client_for(actor)
    url = f"/api/v1/providers/{prov.pk}/prices/"
    assert client.get(url).json() == []
    response = client.post(url, PRICE, format="json")
    assert response.status_code == 200, response.data
    assert response.json()["input_per_million"] == "0.500000"
    client.post(url, {**PRICE, "output_per_million": "3"}, format="json")
    client.post(url, {**PRICE, "provider_model": "another"}, format="json")
    rows = client_for(member(DEVELOPER)).get(url).json()
    assert [(r["provider_model"], r["output_per_million"]) for r in rows] == [
        ("another", "1.500000"),
        ("gpt-test", "3.000000"),
    ]
    assert rows[0]["provider"] == prov.slug
    assert_error(client.post(url, {**PRICE, "input_per_million": "-1"}, format="json"), 400)


def test_patch_without_secret_keeps_it_and_patch_can_disable(client_for):
    actor = admin()
    prov = provider(actor, secret="sk-kept")
    client = client_for(actor)
    response = client.patch(f"/api/v1/providers/{prov.pk}/", {"enabled": False}, format="json")
    assert response.status_code == 200, response.data
    assert response.json()["enabled"] is False
    assert response.json()["secret_set"] is True
    prov.refresh_from_db()
    assert services.provider_secret(prov) == "sk-kept"
    assert_error(client_for(member(DEVELOPER)).get(f"/api/v1/providers/{prov.pk}/"), 404)
