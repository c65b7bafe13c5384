"""The portal REST API: the reusable suite on each resource, plus the portal's own rules
(keys shown once, plan by slug, the auto-approve backlog question, scope)."""

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.accounts.roles import AUDITOR, DEVELOPER, PRODUCT_MANAGER
from apps.audit.models import AuditEvent
from apps.portal import services
from apps.portal.models import APIKey

from ..api_suite import APIResourceSuite, assert_error, last_seq, verbs_since
from ..factories import member
from .factories import released
from .service_factories import api, application, plan

pytestmark = pytest.mark.django_db


class TestPublishedAPIs(APIResourceSuite):
    url = "/api/v1/apis/"
    create_verbs = ("api.created",)
    update_verbs = ("api.changed",)
    actions = (("publish", {}, ("api.published",)),)
    list_queries = 5
    bad_filters = ("status=nope", "product=not-a-uuid")

    def make(self, actor):
        return api(actor, released(actor), publish=False)  # a draft: the team's only

    def create_payload(self, actor):
        rel = released(actor)
        return {"product": str(rel.product.pk), "slug": "new-api", "name": "New", "docs": "# Hi"}

    def update_payload(self, obj):
        return {"name": "Renamed", "summary": "Now with a summary."}


class TestPlans(APIResourceSuite):
    url = "/api/v1/plans/"
    create_verbs = ("plan.created",)
    update_verbs = ("plan.changed",)
    list_queries = 5
    bad_filters = ("active=maybe",)

    def make(self, actor):
        return plan(actor, api(actor, publish=False), slug="p")

    def create_payload(self, actor):
        on = api(actor, publish=False)
        return {"api": str(on.pk), "slug": "gold", "name": "Gold", "requests_per_minute": 100}

    def update_payload(self, obj):
        return {"requests_per_minute": obj.requests_per_minute + 1}


class TestApplications(APIResourceSuite):
    url = "/api/v1/applications/"
    create_verbs = ("application.created",)
    update_verbs = ("application.changed",)
    wrong_roles = (AUDITOR,)  # auditors see every application and change none
    list_queries = 4

    def make(self, actor):
        return application(actor)

    def create_payload(self, actor):
        return {"name": "Widget", "description": "Help pages."}

    def update_payload(self, obj):
        return {"description": "Changed."}


def _pending_for(pm):
    """A pending request, by a fresh developer, to an API of ``pm``'s team."""
    dev = member(DEVELOPER)
    on = api(pm)
    pro = plan(pm, on, slug="pro", approval=True)
    return services.subscription_request(actor=dev, application=application(dev), plan=pro)


class TestSubscriptions(APIResourceSuite):
    url = "/api/v1/subscriptions/"
    create_verbs = ("subscription.requested",)
    actions = (
        ("approve", {"comment": "Welcome"}, ("subscription.approved",)),
        ("reject", {"reason": "Say more"}, ("subscription.rejected",)),
    )
    wrong_roles = (AUDITOR,)
    list_queries = 4
    bad_filters = ("state=nope", "application=zzz")

    def make(self, actor):
        return _pending_for(actor)

    def create_payload(self, actor):
        on = api(member(PRODUCT_MANAGER))
        free = plan(on.created_by, on)
        return {"application": str(application(actor).pk), "plan": str(free.pk)}


class TestAPIKeys(APIResourceSuite):
    url = "/api/v1/api-keys/"
    create_verbs = ("key.created",)
    actions = (
        ("rotate", {"grace_hours": 1}, ("key.rotated",)),
        ("revoke", {}, ("key.revoked",)),
    )
    wrong_roles = (AUDITOR,)
    list_queries = 4
    bad_filters = ("revoked=maybe", "application=zzz")

    def make(self, actor):
        return services.key_create(actor=actor, application=application(actor), name="k").key

    def create_payload(self, actor):
        return {"application": str(application(actor).pk), "name": "prod"}


# --- the portal's own rules ------------------------------------------------------------------


def test_a_key_is_shown_once(client_for):
    dev = member(DEVELOPER)
    client = client_for(dev)
    app = application(dev)
    response = client.post(
        "/api/v1/api-keys/", {"application": str(app.pk), "name": "prod"}, format="json"
    )
    assert response.status_code == 201, response.data
    body = response.json()
    secret = body["key"]
    assert secret.startswith(f"plm_live_{body['prefix']}_")
    assert APIKey.objects.get(pk=body["id"]).key_hash != secret
    read = client.get(f"/api/v1/api-keys/{body['id']}/").json()
    assert "key" not in read and read["prefix"] == body["prefix"]
    listed = client.get("/api/v1/api-keys/").content.decode()
    assert secret not in listed
    rotated = client.post(f"/api/v1/api-keys/{body['id']}/rotate/", {}, format="json").json()
    assert rotated["key"] != secret and rotated["rotated_from"] == body["id"]
    old = client.get(f"/api/v1/api-keys/{body['id']}/").json()
    assert old["status"] == "rotating" and old["grace_ends_at"]
    trail = repr(list(AuditEvent.objects.values_list("before", "after")))
    history = repr(list(APIKey.history.values()))
    for text in (secret, rotated["key"]):
        assert text not in trail and text not in history
        assert text not in client.get(f"/api/v1/api-keys/{rotated['id']}/").content.decode()


def test_key_expiry_is_limited(client_for):
    dev = member(DEVELOPER)
    app = application(dev)
    far = (timezone.now() + timedelta(days=400)).isoformat()
    response = client_for(dev).post(
        "/api/v1/api-keys/",
        {"application": str(app.pk), "name": "k", "expires_at": far},
        format="json",
    )
    assert "expires_at" in assert_error(response, 400, "invalid")["fields"]


def test_subscribe_by_plan_slug_with_the_api(client_for):
    pm = member(PRODUCT_MANAGER)
    on = api(pm, slug="support")
    plan(pm, on, slug="free")
    dev = member(DEVELOPER)
    app = application(dev)
    client = client_for(dev)
    missing = client.post(
        "/api/v1/subscriptions/", {"application": str(app.pk), "plan": "free"}, format="json"
    )
    assert "api" in assert_error(missing, 400, "invalid")["fields"]
    response = client.post(
        "/api/v1/subscriptions/",
        {"application": str(app.pk), "plan": "free", "api": "support"},
        format="json",
    )
    assert response.status_code == 201, response.data
    assert response.json()["state"] == "active"
    assert response.json()["decision_reason"] == "auto-approved"
    again = client.post(
        "/api/v1/subscriptions/",
        {"application": str(app.pk), "plan": "free", "api": str(on.pk)},
        format="json",
    )
    assert_error(again, 409, "already_subscribed")


def test_another_developers_application_is_404(client_for):
    dev, other = member(DEVELOPER), member(DEVELOPER)
    app = application(dev)
    client = client_for(other)
    assert_error(client.get(f"/api/v1/applications/{app.pk}/"), 404)
    pm = member(PRODUCT_MANAGER)
    free = plan(pm, api(pm))
    response = client.post(
        "/api/v1/subscriptions/", {"application": str(app.pk), "plan": str(free.pk)}, format="json"
    )
    assert "application" in assert_error(response, 400)["fields"]


def test_reject_and_suspend_need_a_reason(client_for):
    pm = member(PRODUCT_MANAGER)
    sub = _pending_for(pm)
    client = client_for(pm)
    response = client.post(f"/api/v1/subscriptions/{sub.pk}/reject/", {}, format="json")
    assert "reason" in assert_error(response, 400, "invalid")["fields"]
    client.post(f"/api/v1/subscriptions/{sub.pk}/approve/", {}, format="json")
    response = client.post(
        f"/api/v1/subscriptions/{sub.pk}/suspend/", {"reason": ""}, format="json"
    )
    assert "reason" in assert_error(response, 400, "invalid")["fields"]
    ok = client.post(f"/api/v1/subscriptions/{sub.pk}/suspend/", {"reason": "Abuse"}, format="json")
    assert ok.json()["state"] == "suspended"
    assert client.post(f"/api/v1/subscriptions/{sub.pk}/resume/").json()["state"] == "active"
    assert client.post(f"/api/v1/subscriptions/{sub.pk}/cancel/").json()["state"] == "cancelled"
    assert_error(client.post(f"/api/v1/subscriptions/{sub.pk}/resume/"), 409, "invalid_transition")


def test_own_request_cannot_be_approved(client_for):
    pm = member(PRODUCT_MANAGER)
    on = api(pm)
    pro = plan(pm, on, slug="pro", approval=True)
    sub = services.subscription_request(actor=pm, application=application(pm), plan=pro)
    client = client_for(pm)
    seq = last_seq()
    response = client.post(f"/api/v1/subscriptions/{sub.pk}/approve/", {}, format="json")
    assert_error(response, 403, "own_request")
    assert verbs_since(seq) == Counter()


def test_auto_approve_backlog_question_over_the_api(client_for):
    pm = member(PRODUCT_MANAGER)
    sub = _pending_for(pm)
    client = client_for(pm)
    url = f"/api/v1/plans/{sub.plan_id}/"
    body = assert_error(
        client.patch(url, {"approval_required": False}, format="json"), 409, "pending_backlog"
    )
    assert body["fields"]["pending"] == ["1"]
    seq = last_seq()
    response = client.patch(
        url, {"approval_required": False, "approve_pending": True}, format="json"
    )
    assert response.status_code == 200 and response.json()["approval_required"] is False
    assert verbs_since(seq) == Counter({"plan.changed": 1, "subscription.approved": 1})
    sub.refresh_from_db()
    assert sub.state == "active"


def test_api_lifecycle_over_the_api(client_for):
    pm = member(PRODUCT_MANAGER)
    draft = api(pm, publish=False)
    client = client_for(pm)
    url = f"/api/v1/apis/{draft.pk}/"
    assert_error(client.post(f"{url}retire/"), 409, "invalid_transition")
    assert client.post(f"{url}publish/").json()["status"] == "published"
    bad = client.post(f"{url}deprecate/", {"sunset_at": timezone.now().isoformat()}, format="json")
    assert "migration_note" in assert_error(bad, 400)["fields"]
    sunset = (timezone.now() + timedelta(days=10)).isoformat()
    done = client.post(
        f"{url}deprecate/", {"sunset_at": sunset, "migration_note": "Use v2."}, format="json"
    )
    assert done.status_code == 200 and done.json()["status"] == "deprecated"
    assert client.post(f"{url}retire/").json()["status"] == "retired"
    # A developer sees the catalog but not drafts.
    dev_client = client_for(member(DEVELOPER))
    hidden = api(pm, publish=False)
    assert_error(dev_client.get(f"/api/v1/apis/{hidden.pk}/"), 404)
    assert dev_client.get(url).status_code == 404  # retired: gone from the catalog
    shown = api(pm)
    assert dev_client.get(f"/api/v1/apis/{shown.pk}/").status_code == 200
    assert_error(dev_client.post(f"/api/v1/apis/{shown.pk}/deprecate/", {}, format="json"), 400)
