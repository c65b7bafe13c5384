"""E-mails: sent after commit by the notification task, to the right people, naming the API,
the plan, the decision and the reason, with links to the portal pages."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.accounts.roles import ADMIN, DEVELOPER, PRODUCT_MANAGER, REVIEWER
from apps.changes import services as changes
from apps.portal import services
from apps.releases.services import release_create

from ..factories import PASSWORD, member
from . import service_factories
from .service_factories import application, world

# The shared fixtures (pytest finds them as names of this module).
eager_tasks = service_factories.eager_tasks
mails = service_factories.mails

pytestmark = pytest.mark.django_db


def test_a_request_mails_the_approvers_and_nothing_before_commit(settings, mails, mailoutbox):
    w = world()
    team = w.api.product.owner_team
    admin = member(ADMIN, team)
    member(REVIEWER, team)  # not an approver
    app = application(w.dev)
    with mails() as outbox:
        services.subscription_request(
            actor=w.dev, application=app, plan=w.pro, justification="For our help pages."
        )
        assert outbox == []  # not before the commit
    assert len(outbox) == 1
    mail = outbox[0]
    assert sorted(mail.to) == sorted([w.pm.email, admin.email])
    assert w.api.slug in mail.subject and "pro" in mail.subject
    assert "For our help pages." in mail.body and app.name in mail.body
    assert f"{settings.PORTAL_PUBLIC_URL}/portal/apis/{w.api.slug}/" in mail.body
    assert mail.from_email == settings.DEFAULT_FROM_EMAIL


def test_an_auto_approved_request_mails_nobody(mails):
    w = world()
    app = application(w.dev)
    with mails() as outbox:
        services.subscription_request(actor=w.dev, application=app, plan=w.free)
    assert outbox == []


def test_every_decision_mails_the_owner_with_the_reason(settings, mails):
    w = world()
    app = application(w.dev)
    sub = services.subscription_request(actor=w.dev, application=app, plan=w.pro)
    with mails() as outbox:
        services.subscription_approve(actor=w.pm, subscription=sub, comment="Welcome aboard")
        services.subscription_suspend(actor=w.pm, subscription=sub, reason="Too many errors")
        services.subscription_resume(actor=w.pm, subscription=sub)
    assert [m.to for m in outbox] == [[w.dev.email]] * 3
    approved, suspended, resumed = outbox
    assert "approved" in approved.subject and "Welcome aboard" in approved.body
    assert "suspended" in suspended.body and "Too many errors" in suspended.body
    assert "resumed" in resumed.subject
    for mail in outbox:
        assert w.api.slug in mail.body and w.pro.slug in mail.body
        assert f"{settings.PORTAL_PUBLIC_URL}/portal/applications/{app.pk}/" in mail.body
    other = services.subscription_request(actor=w.dev, application=application(w.dev), plan=w.pro)
    with mails() as outbox:
        services.subscription_reject(actor=w.pm, subscription=other, reason="Say more")
    assert len(outbox) == 1 and "rejected" in outbox[0].subject and "Say more" in outbox[0].body


def test_deprecation_mails_the_owners_of_active_subscriptions(mails):
    w = world()
    other_dev = member(DEVELOPER)
    services.subscription_request(actor=w.dev, application=application(w.dev), plan=w.free)
    services.subscription_request(actor=w.dev, application=application(w.dev), plan=w.free)
    pending = services.subscription_request(
        actor=other_dev, application=application(other_dev), plan=w.pro
    )
    assert pending.state == "pending"
    sunset = timezone.now() + timedelta(days=30)
    with mails() as outbox:
        services.api_deprecate(
            actor=w.pm, api=w.api, sunset_at=sunset, migration_note="Move to v2 by June."
        )
    assert len(outbox) == 1
    mail = outbox[0]
    assert mail.to == [w.dev.email]  # once, though two applications; not the pending one
    assert sunset.strftime("%Y-%m-%d") in mail.body and "Move to v2 by June." in mail.body


def test_an_implemented_change_mails_the_subscribers_of_the_apis_it_reaches(mails):
    """GIVEN a published API following a product's release with an active subscriber
    WHEN an approved change to the product is implemented THEN the subscriber is mailed the
    new release's version and the change's title."""
    w = world()
    services.subscription_request(actor=w.dev, application=application(w.dev), plan=w.free)
    prod = w.api.product
    current = prod.releases.get(status="released")
    reviewer = member(REVIEWER, prod.owner_team)
    proposed = release_create(
        actor=w.pm,
        product=prod,
        version="1.1.0",
        prompt_version=current.prompt_version,
        model_version=current.model_version,
        settings={"timeout_seconds": 15},
    )
    cr = changes.change_request_create(
        actor=w.pm, product=prod, title="Shorter timeout", rationale="Faster.", proposed=proposed
    )
    cr = changes.change_request_submit(actor=w.pm, cr=cr)
    cr, _ = changes.change_request_approve(actor=reviewer, cr=cr, password=PASSWORD, comment="ok")
    with mails() as outbox:
        changes.change_request_implement(actor=w.pm, cr=cr)
    portal_mails = [m for m in outbox if w.dev.email in m.to]
    assert len(portal_mails) == 1
    assert "1.1.0" in portal_mails[0].body and "Shorter timeout" in portal_mails[0].body
    assert w.api.slug in portal_mails[0].subject


def test_no_secret_in_any_mail(mails):
    w = world()
    app = application(w.dev)
    pm2 = member(PRODUCT_MANAGER, w.api.product.owner_team)
    with mails() as outbox:
        new = services.key_create(actor=w.dev, application=app, name="k")
        sub = services.subscription_request(actor=w.dev, application=app, plan=w.pro)
        services.subscription_approve(actor=pm2, subscription=sub)
    assert outbox and all(new.secret not in m.body for m in outbox)
