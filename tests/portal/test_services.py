"""The portal's services: transitions and their refusals, separation of duties, the
auto-approve backlog, keys shown once, expiry, rotation and revocation."""

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.accounts import services as accounts
from apps.accounts.roles import ADMIN, AUDITOR, DEVELOPER, PRODUCT_MANAGER, REVIEWER
from apps.audit.models import AuditEvent
from apps.core.exceptions import ApplicationError, Conflict, Forbidden
from apps.portal import selectors, services
from apps.portal.keys import key_hash
from apps.portal.models import APIKey, APIStatus, SubscriptionState
from apps.releases.services import release_create

from ..api_suite import last_seq, verbs_since
from ..factories import UserFactory, member, product
from .factories import released
from .service_factories import api, application, plan, world

pytestmark = pytest.mark.django_db


def raises(kind, code):
    class _Ctx:
        def __enter__(self):
            self.cm = pytest.raises(kind)
            self.info = self.cm.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self.cm.__exit__(*exc)
            assert self.info.value.code == code, (self.info.value.code, self.info.value.message)
            return handled

    return _Ctx()


# --- APIs ------------------------------------------------------------------------------------


def test_api_lifecycle_moves_only_by_its_table():
    pm = member(PRODUCT_MANAGER)
    rel = released(pm)
    seq = last_seq()
    draft = services.api_create(actor=pm, product=rel.product, slug="a1", name="A1")
    assert draft.status == APIStatus.DRAFT and draft.created_by == pm
    event = AuditEvent.objects.get(seq=seq + 1)
    assert (event.verb, event.product_id) == ("api.created", rel.product.pk)
    with raises(Conflict, "invalid_transition"):
        services.api_retire(actor=pm, api=draft)
    with raises(Conflict, "invalid_transition"):
        services.api_deprecate(
            actor=pm, api=draft, sunset_at=timezone.now() + timedelta(days=9), migration_note="x"
        )
    published = services.api_publish(actor=pm, api=draft)
    assert published.status == APIStatus.PUBLISHED and published.published_at
    with raises(Conflict, "invalid_transition"):
        services.api_publish(actor=pm, api=published)
    with raises(Conflict, "invalid_transition"):
        services.api_retire(actor=pm, api=published)
    deprecated = services.api_deprecate(
        actor=pm, api=published, sunset_at=timezone.now() + timedelta(days=30), migration_note="Go"
    )
    assert deprecated.status == APIStatus.DEPRECATED and deprecated.migration_note == "Go"
    retired = services.api_retire(actor=pm, api=deprecated)
    assert retired.status == APIStatus.RETIRED and retired.retired_at
    with raises(Conflict, "invalid_transition"):
        services.api_publish(actor=pm, api=retired)
    assert verbs_since(seq) == Counter(
        {"api.created": 1, "api.published": 1, "api.deprecated": 1, "api.retired": 1}
    )
    assert set(AuditEvent.objects.filter(seq__gt=seq).values_list("product_id", flat=True)) == {
        rel.product.pk
    }
    assert retired.history.first().history_user == pm


def test_publish_refuses_without_a_release_to_serve():
    pm = member(PRODUCT_MANAGER)
    prod = product(pm)
    draft = services.api_create(actor=pm, product=prod, slug="nothing", name="Nothing")
    with raises(Conflict, "no_release") as info:
        services.api_publish(actor=pm, api=draft)
    assert info.value.status == 409


def test_api_create_checks_the_actor_and_the_release():
    pm = member(PRODUCT_MANAGER)
    rel = released(pm)
    reviewer = member(REVIEWER, rel.product.owner_team)
    with raises(Forbidden, "forbidden"):
        services.api_create(actor=reviewer, product=rel.product, slug="r", name="R")
    other = released(member(PRODUCT_MANAGER))
    with raises(ApplicationError, "invalid") as info:
        services.api_create(actor=pm, product=rel.product, slug="x", name="X", release=other)
    assert "release" in info.value.extra
    draft_rel = release_create(
        actor=pm,
        product=rel.product,
        version="2.0.0",
        prompt_version=rel.prompt_version,
        model_version=rel.model_version,
    )
    with raises(ApplicationError, "invalid"):
        services.api_create(actor=pm, product=rel.product, slug="x", name="X", release=draft_rel)
    pinned = services.api_create(actor=pm, product=rel.product, slug="x", name="X", release=rel)
    assert pinned.release == rel
    with raises(Conflict, "duplicate"):
        services.api_create(actor=pm, product=rel.product, slug="x", name="Y")
    admin = UserFactory(is_superuser=True)
    assert services.api_create(actor=admin, product=rel.product, slug="y", name="Y").pk


def test_api_update_unpins_and_records_the_fields_that_changed():
    pm = member(PRODUCT_MANAGER)
    rel = released(pm)
    pinned = api(pm, rel, pin=True)
    seq = last_seq()
    updated = services.api_update(actor=pm, api=pinned, name="Renamed", release=None)
    assert updated.release is None and updated.name == "Renamed"
    event = AuditEvent.objects.get(seq=seq + 1)
    assert event.verb == "api.changed"
    assert set(event.after) == {"name", "release"}
    seq = last_seq()
    services.api_update(actor=pm, api=updated, name="Renamed")
    assert verbs_since(seq) == Counter()
    with raises(ApplicationError, "invalid"):
        services.api_update(actor=pm, api=updated, successor=updated)


def test_deprecate_needs_a_future_sunset_and_a_migration_note():
    pm = member(PRODUCT_MANAGER)
    live = api(pm)
    with raises(ApplicationError, "invalid") as info:
        services.api_deprecate(
            actor=pm, api=live, sunset_at=timezone.now() - timedelta(days=1), migration_note="x"
        )
    assert "sunset_at" in info.value.extra
    with raises(ApplicationError, "invalid") as info:
        services.api_deprecate(
            actor=pm, api=live, sunset_at=timezone.now() + timedelta(days=1), migration_note=" "
        )
    assert "migration_note" in info.value.extra
    successor = api(pm)
    done = services.api_deprecate(
        actor=pm,
        api=live,
        sunset_at=timezone.now() + timedelta(days=1),
        migration_note="Move to the successor.",
        successor=successor,
    )
    assert done.successor == successor


# --- plans -----------------------------------------------------------------------------------


def test_plan_create_validates_and_refuses_duplicates():
    pm = member(PRODUCT_MANAGER)
    live = api(pm)
    seq = last_seq()
    p = plan(pm, live, slug="gold", tokens_per_month=1000, terms="Be nice.")
    assert verbs_since(seq) == Counter({"plan.created": 1})
    assert AuditEvent.objects.get(seq=seq + 1).product_id == live.product_id
    assert (p.requests_per_minute, p.tokens_per_month, p.approval_required) == (60, 1000, False)
    with raises(Conflict, "duplicate"):
        plan(pm, live, slug="gold")
    with raises(ApplicationError, "invalid") as info:
        plan(pm, live, slug="zero", requests_per_minute=0)
    assert "requests_per_minute" in info.value.extra
    with raises(ApplicationError, "invalid"):
        plan(pm, live, slug="neg", tokens_per_month=0)
    with raises(Forbidden, "forbidden"):
        plan(member(DEVELOPER), live, slug="dev")


def test_auto_approve_switch_asks_about_the_backlog_then_approves_all():
    """GIVEN a plan needing approval with two pending requests
    WHEN its approval is switched off without saying what to do THEN 409 pending_backlog
    naming 2; WHEN with approve_pending=True THEN both are active, decided by the actor."""
    w = world()
    subs = [
        services.subscription_request(actor=w.dev, application=application(w.dev), plan=w.pro)
        for _ in range(2)
    ]
    assert all(s.state == SubscriptionState.PENDING for s in subs)
    seq = last_seq()
    with raises(Conflict, "pending_backlog") as info:
        services.plan_update(actor=w.pm, plan=w.pro, approval_required=False)
    assert info.value.status == 409 and "2" in info.value.message
    assert info.value.extra["pending"] == ["2"]
    assert verbs_since(seq) == Counter()
    w.pro.refresh_from_db()
    assert w.pro.approval_required
    services.plan_update(actor=w.pm, plan=w.pro, approval_required=False, approve_pending=True)
    assert verbs_since(seq) == Counter({"plan.changed": 1, "subscription.approved": 2})
    for sub in subs:
        sub.refresh_from_db()
        assert sub.state == SubscriptionState.ACTIVE
        assert sub.decided_by == w.pm and sub.decided_at
        assert sub.decision_reason == "plan switched to auto-approve"


def test_auto_approve_switch_can_leave_the_backlog_pending():
    w = world()
    sub = services.subscription_request(actor=w.dev, application=application(w.dev), plan=w.pro)
    seq = last_seq()
    services.plan_update(actor=w.pm, plan=w.pro, approval_required=False, approve_pending=False)
    assert verbs_since(seq) == Counter({"plan.changed": 1})
    sub.refresh_from_db()
    assert sub.state == SubscriptionState.PENDING
    # With nothing pending there is nothing to ask.
    services.plan_update(actor=w.pm, plan=w.free, approval_required=True)
    services.plan_update(actor=w.pm, plan=w.free, approval_required=False)


def test_auto_approve_switch_never_approves_the_actors_own_request():
    """GIVEN a plan needing approval with a request by the pm and one by a developer
    WHEN the pm switches the plan to auto-approve with approve_pending=True
    THEN the developer's request is active and the pm's own stays pending for someone else."""
    w = world()
    own = services.subscription_request(actor=w.pm, application=application(w.pm), plan=w.pro)
    other = services.subscription_request(actor=w.dev, application=application(w.dev), plan=w.pro)
    seq = last_seq()
    services.plan_update(actor=w.pm, plan=w.pro, approval_required=False, approve_pending=True)
    assert verbs_since(seq) == Counter({"plan.changed": 1, "subscription.approved": 1})
    own.refresh_from_db()
    other.refresh_from_db()
    assert other.state == SubscriptionState.ACTIVE and other.decided_by == w.pm
    assert own.state == SubscriptionState.PENDING and own.decided_by is None


def test_nobody_resumes_their_own_suspended_subscription():
    w = world()
    admin = member(ADMIN, team=w.pm.memberships.first().team)
    sub = services.subscription_request(actor=w.pm, application=application(w.pm), plan=w.free)
    assert sub.state == SubscriptionState.ACTIVE
    services.subscription_suspend(actor=admin, subscription=sub, reason="abuse")
    with raises(Forbidden, "own_request"):
        services.subscription_resume(actor=w.pm, subscription=sub)
    sub = services.subscription_resume(actor=admin, subscription=sub)
    assert sub.state == SubscriptionState.ACTIVE


# --- applications ----------------------------------------------------------------------------


def test_application_create_names_are_unique_per_owner_and_auditors_may_not():
    dev = member(DEVELOPER)
    seq = last_seq()
    app = services.application_create(actor=dev, name="Widget", description="d")
    assert app.owner == dev and verbs_since(seq) == Counter({"application.created": 1})
    with raises(ApplicationError, "invalid") as info:
        services.application_create(actor=dev, name="Widget")
    assert info.value.status == 400 and "name" in info.value.extra
    assert services.application_create(actor=member(DEVELOPER), name="Widget").pk
    with raises(Forbidden, "forbidden"):
        services.application_create(actor=member(AUDITOR), name="Audit app")
    with raises(ApplicationError, "invalid"):
        services.application_create(actor=dev, name="  ")
    other = services.application_create(actor=dev, name="Other")
    with raises(ApplicationError, "invalid"):
        services.application_update(actor=dev, application=other, name="Widget")
    with raises(Forbidden, "forbidden"):
        services.application_update(actor=member(DEVELOPER), application=other, name="Mine")
    seq = last_seq()
    services.application_update(actor=dev, application=other, description="new")
    assert verbs_since(seq) == Counter({"application.changed": 1})


# --- subscriptions ---------------------------------------------------------------------------


def test_request_on_a_plan_without_approval_is_active_at_once():
    w = world()
    app = application(w.dev)
    seq = last_seq()
    sub = services.subscription_request(
        actor=w.dev, application=app, plan=w.free, justification="Testing"
    )
    assert sub.state == SubscriptionState.ACTIVE
    assert sub.decided_by is None and sub.decision_reason == "auto-approved"
    assert verbs_since(seq) == Counter({"subscription.requested": 1})
    assert AuditEvent.objects.get(seq=seq + 1).product_id == w.api.product_id


def test_request_refusals():
    w = world()
    app = application(w.dev)
    with raises(Forbidden, "forbidden"):
        services.subscription_request(actor=w.pm, application=app, plan=w.free)
    services.subscription_request(actor=w.dev, application=app, plan=w.free)
    with raises(Conflict, "already_subscribed"):
        services.subscription_request(actor=w.dev, application=app, plan=w.pro)
    services.plan_update(actor=w.pm, plan=w.pro, active=False)
    with raises(Conflict, "plan_inactive"):
        services.subscription_request(actor=w.dev, application=application(w.dev), plan=w.pro)
    draft = api(w.pm, publish=False)
    with raises(Conflict, "not_published"):
        services.subscription_request(
            actor=w.dev, application=app, plan=plan(w.pm, draft, slug="d")
        )
    services.api_deprecate(
        actor=w.pm, api=w.api, sunset_at=timezone.now() + timedelta(days=3), migration_note="Bye"
    )
    with raises(Conflict, "api_deprecated"):
        services.subscription_request(actor=w.dev, application=application(w.dev), plan=w.free)


def test_a_cancelled_subscription_frees_the_api_for_a_new_one():
    w = world()
    app = application(w.dev)
    first = services.subscription_request(actor=w.dev, application=app, plan=w.free)
    services.subscription_cancel(actor=w.dev, subscription=first)
    second = services.subscription_request(actor=w.dev, application=app, plan=w.pro)
    assert second.state == SubscriptionState.PENDING


def test_every_subscription_transition_and_its_refusal():
    w = world()
    sub = services.subscription_request(actor=w.dev, application=application(w.dev), plan=w.pro)
    seq = last_seq()
    with raises(Conflict, "invalid_transition"):
        services.subscription_suspend(actor=w.pm, subscription=sub, reason="x")
    with raises(Conflict, "invalid_transition"):
        services.subscription_resume(actor=w.pm, subscription=sub)
    sub = services.subscription_approve(actor=w.pm, subscription=sub, comment="Welcome")
    assert (sub.state, sub.decided_by, sub.decision_reason) == ("active", w.pm, "Welcome")
    with raises(Conflict, "invalid_transition"):
        services.subscription_approve(actor=w.pm, subscription=sub)
    with raises(Conflict, "invalid_transition"):
        services.subscription_reject(actor=w.pm, subscription=sub, reason="no")
    sub = services.subscription_suspend(actor=w.pm, subscription=sub, reason="Abuse")
    assert (sub.state, sub.decision_reason) == ("suspended", "Abuse")
    sub = services.subscription_resume(actor=w.pm, subscription=sub)
    assert sub.state == "active"
    sub = services.subscription_cancel(actor=w.pm, subscription=sub)
    assert sub.state == "cancelled"
    for call in (
        lambda: services.subscription_cancel(actor=w.dev, subscription=sub),
        lambda: services.subscription_resume(actor=w.pm, subscription=sub),
        lambda: services.subscription_approve(actor=w.pm, subscription=sub),
    ):
        with raises(Conflict, "invalid_transition"):
            call()
    assert verbs_since(seq) == Counter(
        {
            "subscription.approved": 1,
            "subscription.suspended": 1,
            "subscription.resumed": 1,
            "subscription.cancelled": 1,
        }
    )
    rejected = services.subscription_reject(
        actor=w.pm,
        subscription=services.subscription_request(
            actor=w.dev, application=application(w.dev), plan=w.pro
        ),
        reason="Tell us more about your use.",
    )
    assert (rejected.state, rejected.decided_by) == ("rejected", w.pm)
    with raises(Conflict, "invalid_transition"):
        services.subscription_cancel(actor=w.dev, subscription=rejected)


def test_reason_is_required_to_reject_or_suspend():
    w = world()
    sub = services.subscription_request(actor=w.dev, application=application(w.dev), plan=w.pro)
    with raises(ApplicationError, "invalid") as info:
        services.subscription_reject(actor=w.pm, subscription=sub, reason="  ")
    assert info.value.status == 400 and "reason" in info.value.extra
    sub = services.subscription_approve(actor=w.pm, subscription=sub)
    with raises(ApplicationError, "invalid") as info:
        services.subscription_suspend(actor=w.pm, subscription=sub, reason="")
    assert "reason" in info.value.extra


def test_nobody_decides_their_own_request_not_even_a_superuser():
    """GIVEN a superuser who is also a product manager of the API's team and requested a
    subscription for their own application WHEN they approve or reject it THEN 403
    own_request, and another approver can."""
    w = world()
    boss = UserFactory(is_superuser=True)
    accounts.membership_add(
        actor=None, user=boss, team=w.api.product.owner_team, role=PRODUCT_MANAGER
    )
    sub = services.subscription_request(actor=boss, application=application(boss), plan=w.pro)
    with raises(Forbidden, "own_request"):
        services.subscription_approve(actor=boss, subscription=sub)
    with raises(Forbidden, "own_request"):
        services.subscription_reject(actor=boss, subscription=sub, reason="Mine")
    assert sub not in selectors.subscription_queue_for(user=boss)
    assert sub in selectors.subscription_queue_for(user=w.pm)
    assert services.subscription_approve(actor=w.pm, subscription=sub).state == "active"


def test_only_approvers_decide():
    w = world()
    sub = services.subscription_request(actor=w.dev, application=application(w.dev), plan=w.pro)
    team = w.api.product.owner_team
    for outsider in (member(REVIEWER, team), member(DEVELOPER, team), member(PRODUCT_MANAGER)):
        with raises(Forbidden, "forbidden"):
            services.subscription_approve(actor=outsider, subscription=sub)
        with raises(Forbidden, "forbidden"):
            services.subscription_cancel(actor=outsider, subscription=sub)
    admin = member(ADMIN, team)
    assert selectors.can_decide(admin, w.api)
    assert selectors.can_decide(UserFactory(is_superuser=True), w.api)
    assert not selectors.can_decide(member(REVIEWER, team), w.api)
    assert services.subscription_approve(actor=admin, subscription=sub).decided_by == admin


def test_queue_counts_per_api_and_plan():
    w = world()
    for _ in range(3):
        services.subscription_request(actor=w.dev, application=application(w.dev), plan=w.pro)
    counts = selectors.subscription_queue_counts(user=w.pm)
    assert counts == [{"api": w.api, "plan": w.pro, "pending": 3}]
    assert selectors.subscription_queue_counts(user=w.dev) == []


# --- keys ------------------------------------------------------------------------------------


def _texts() -> str:
    """Everything the audit trail and the history hold, as one string."""
    events = list(AuditEvent.objects.values_list("before", "after"))
    history = list(APIKey.history.values())
    return repr(events) + repr(history)


def test_key_create_shows_the_secret_once_and_stores_only_its_hash(settings):
    dev = member(DEVELOPER)
    app = application(dev)
    seq = last_seq()
    new = services.key_create(actor=dev, application=app, name="prod")
    assert new.secret.startswith(f"plm_live_{new.key.prefix}_")
    stored = APIKey.objects.get(pk=new.key.pk)
    assert stored.key_hash == key_hash(new.secret)
    assert new.secret not in repr(stored.__dict__)
    assert verbs_since(seq) == Counter({"key.created": 1})
    assert AuditEvent.objects.get(seq=seq + 1).after["prefix"] == new.key.prefix
    assert new.secret not in _texts() and stored.key_hash not in _texts()
    expected = timezone.now() + timedelta(days=settings.PORTAL_KEY_DEFAULT_DAYS)
    assert abs((stored.expires_at - expected).total_seconds()) < 60


def test_key_expiry_limits_and_owner():
    dev = member(DEVELOPER)
    app = application(dev)
    now = timezone.now()
    for bad in (now - timedelta(minutes=1), now + timedelta(days=366)):
        with raises(ApplicationError, "invalid") as info:
            services.key_create(actor=dev, application=app, name="k", expires_at=bad)
        assert "expires_at" in info.value.extra
    ok = services.key_create(
        actor=dev, application=app, name="k", expires_at=now + timedelta(days=365)
    )
    assert ok.key.expires_at == now + timedelta(days=365)
    with raises(ApplicationError, "invalid"):
        services.key_create(actor=dev, application=app, name=" ")
    with raises(Forbidden, "forbidden"):
        services.key_create(actor=member(DEVELOPER), application=app, name="theirs")
    admin = UserFactory(is_superuser=True)
    assert services.key_create(actor=admin, application=app, name="ops").key.pk


def test_key_rotation_keeps_the_old_key_for_the_grace_period(settings):
    dev = member(DEVELOPER)
    app = application(dev)
    old = services.key_create(actor=dev, application=app, name="prod").key
    seq = last_seq()
    new = services.key_rotate(actor=dev, key=old)
    old.refresh_from_db()
    grace = timedelta(hours=settings.PORTAL_KEY_ROTATION_GRACE_HOURS)
    assert abs((old.grace_ends_at - timezone.now() - grace).total_seconds()) < 60
    assert old.is_usable(timezone.now()) and not old.is_usable(timezone.now() + grace)
    assert new.key.rotated_from == old and new.key.name == "prod"
    assert new.key.application == app and new.secret != ""
    assert verbs_since(seq) == Counter({"key.rotated": 1})
    assert new.secret not in _texts()
    with raises(Conflict, "already_rotated"):
        services.key_rotate(actor=dev, key=old)
    short = services.key_rotate(actor=dev, key=new.key, grace_hours=0)
    new.key.refresh_from_db()
    assert not new.key.is_usable(timezone.now() + timedelta(seconds=1))
    with raises(ApplicationError, "invalid"):
        services.key_rotate(actor=dev, key=short.key, grace_hours=-1)
    with raises(Forbidden, "forbidden"):
        services.key_rotate(actor=member(DEVELOPER), key=short.key)


def test_key_revocation():
    dev = member(DEVELOPER)
    key = services.key_create(actor=dev, application=application(dev), name="k").key
    with raises(Forbidden, "forbidden"):
        services.key_revoke(actor=member(DEVELOPER), key=key)
    seq = last_seq()
    revoked = services.key_revoke(actor=dev, key=key)
    assert revoked.revoked_at and revoked.revoked_by == dev
    assert not revoked.is_usable(timezone.now())
    assert verbs_since(seq) == Counter({"key.revoked": 1})
    with raises(Conflict, "already_revoked") as info:
        services.key_revoke(actor=dev, key=key)
    assert info.value.status == 409
    with raises(Conflict, "already_revoked"):
        services.key_rotate(actor=dev, key=key)


def test_an_expired_key_cannot_be_rotated():
    dev = member(DEVELOPER)
    key = services.key_create(actor=dev, application=application(dev), name="k").key
    key.expires_at = timezone.now() - timedelta(seconds=1)
    key.save()
    with raises(Conflict, "expired"):
        services.key_rotate(actor=dev, key=key)


# --- selectors -------------------------------------------------------------------------------


def test_catalog_and_scopes():
    w = world()
    draft = api(w.pm, publish=False)
    stranger = member(DEVELOPER)
    auditor = member(AUDITOR)
    assert set(selectors.api_catalog_for(user=stranger)) == {w.api}
    assert set(selectors.api_catalog_for(user=w.pm)) == {w.api, draft}
    assert draft in selectors.api_list_for(user=auditor)
    assert draft in selectors.api_list_for(user=member(REVIEWER, w.api.product.owner_team))
    assert draft not in selectors.api_catalog_for(user=member(REVIEWER, w.api.product.owner_team))
    app = application(w.dev)
    sub = services.subscription_request(actor=w.dev, application=app, plan=w.pro)
    key = services.key_create(actor=w.dev, application=app, name="k").key
    assert list(selectors.application_list_for(user=stranger)) == []
    assert app in selectors.application_list_for(user=auditor)
    assert sub in selectors.subscription_list_for(user=w.pm)  # they decide it
    assert sub not in selectors.subscription_list_for(user=stranger)
    assert key in selectors.key_list_for(user=w.dev)
    assert key not in selectors.key_list_for(user=stranger)
    assert key not in selectors.key_list_for(user=w.pm)


def test_change_impact_counts_the_apis_following_the_current_release():
    """GIVEN a product with APIs that follow its release, one pinned to the current release,
    one pinned to an older one, and a draft WHEN its impact is read THEN only the followers
    with their active subscriptions count: a pinned API keeps its pin through the change."""
    pm = member(PRODUCT_MANAGER)
    dev = member(DEVELOPER)
    old = released(pm)
    prod = old.product
    pinned_old = api(pm, old, pin=True)
    current = released(pm, prod, version="2.0.0")
    follower = api(pm, current)
    pinned_current = api(pm, current, pin=True)
    api(pm, current, publish=False)
    free = plan(pm, follower)
    pro = plan(pm, follower, slug="pro", approval=True)
    for _ in range(2):
        services.subscription_request(actor=dev, application=application(dev), plan=free)
    services.subscription_request(actor=dev, application=application(dev), plan=pro)
    services.subscription_request(
        actor=dev, application=application(dev), plan=plan(pm, pinned_old)
    )
    services.subscription_request(
        actor=dev, application=application(dev), plan=plan(pm, pinned_current)
    )
    impact = selectors.change_impact(product=prod)
    assert [a.pk for a in impact.apis] == [follower.pk]
    assert impact.active_subscriptions == 2
