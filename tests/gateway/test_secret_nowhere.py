"""A provider's secret is sent upstream and shown nowhere: not in an API response, a page, a log
line, a history row, an audit event or a call record — through real calls, failures included."""

import json
import logging

import pytest
from django.test import Client

from apps.accounts.roles import PRODUCT_MANAGER
from apps.audit.models import AuditEvent
from apps.catalog import services as catalog
from apps.catalog.models import Model
from apps.gateway.models import Provider, ProviderCall, ProviderPrice
from apps.gateway.pipeline import UpstreamFailed, resolve_target, run_chat_sync
from apps.releases.services import release_create

from ..factories import UserFactory, artifact, member, product, prompt_with_versions
from .upstream import Upstream

pytestmark = pytest.mark.django_db

CANARY = "sk-CANARY-nowhere-5e1f0a"


@pytest.fixture(autouse=True)
def _fast_backoff(settings):
    settings.GATEWAY_BACKOFF_BASE_SECONDS = 0.01
    settings.GATEWAY_BACKOFF_CAP_SECONDS = 0.02


@pytest.mark.parametrize("kind", ["openai_compatible", "anthropic"])
def test_the_secret_appears_in_no_response_page_log_history_audit_or_record(
    kind, client_for, caplog
):
    caplog.set_level(logging.DEBUG)
    root = UserFactory(is_superuser=True, is_staff=True)
    client = client_for(root)
    pm = member(PRODUCT_MANAGER)
    team = pm.memberships.first().team
    bodies: list[bytes] = []
    with Upstream() as up:
        response = client.post(
            "/api/v1/providers/",
            {"slug": "canary", "name": "Canary", "kind": kind, "base_url": up.base_url,
             "secret": CANARY},
            format="json",
        )  # fmt: skip
        assert response.status_code == 201, response.content
        bodies.append(response.content)
        provider_id = response.json()["id"]
        bodies.append(
            client.post(
                f"/api/v1/providers/{provider_id}/prices/",
                {"provider_model": "m", "input_per_million": "1", "output_per_million": "2"},
                format="json",
            ).content
        )
        model = artifact(pm, Model, team)
        mv = catalog.model_version_create(
            actor=pm, model=model, provider="canary", provider_model="m"
        )
        prod = product(pm, team)
        pv = prompt_with_versions(pm, "Be brief.", team=team)[1][0]
        rel = release_create(
            actor=pm, product=prod, version="1.0.0", prompt_version=pv, model_version=mv,
            settings={"max_retries": 1},
        )  # fmt: skip
        target = resolve_target(release=rel)
        # an answer, a retried 500, and a 401 whose body echoes the key back
        up.script("ok", 500, "ok", 401)
        run_chat_sync(target, variables={"q": "hi"})
        run_chat_sync(target, variables={"q": "hi"})
        with pytest.raises(UpstreamFailed) as caught:
            run_chat_sync(target, variables={"q": "hi"})
        assert [r.header("x-api-key") or r.header("authorization") for r in up.requests] == [
            CANARY if kind == "anthropic" else f"Bearer {CANARY}"
        ] * 4
    failure = f"{caught.value} {caught.value.extra!r} {caught.value.cause!r}"
    call = ProviderCall.objects.filter(outcome="error").get()
    browser, pm_browser = Client(), Client()
    browser.force_login(root)
    pm_browser.force_login(pm)
    for path in (
        f"/api/v1/providers/{provider_id}/",
        "/api/v1/providers/",
        f"/api/v1/providers/{provider_id}/prices/",
        "/api/v1/provider-calls/",
        f"/api/v1/provider-calls/{call.pk}/",
        "/admin/gateway/provider/",
        f"/admin/gateway/provider/{provider_id}/change/",
        f"/admin/gateway/provider/{provider_id}/history/",
        "/admin/gateway/providercall/",
        f"/admin/gateway/providercall/{call.pk}/change/",
        "/calls/",
        f"/calls/{call.pk}/",
        f"/products/{prod.pk}/",
    ):
        response = (client if path.startswith("/api/") else browser).get(path)
        assert response.status_code == 200, (path, response.status_code)
        bodies.append(response.content)
    bodies.append(pm_browser.get(f"/products/{prod.pk}/").content)
    bodies.append(pm_browser.get("/calls/").content)

    records = json.dumps(
        [
            list(AuditEvent.objects.values()),
            list(Provider.history.values()),
            list(ProviderPrice.history.values()),
            list(ProviderCall.objects.values()),
            [{k: v for k, v in row.items() if k != "secret_encrypted"}
             for row in Provider.objects.values()],
        ],
        default=str,
    )  # fmt: skip
    logs = caplog.text + " ".join(repr(r.__dict__) for r in caplog.records)
    for clear in (CANARY, "CANARY"):
        assert not [b for b in bodies if clear.encode() in b]
        assert clear not in records
        assert clear not in logs
        assert clear not in failure
