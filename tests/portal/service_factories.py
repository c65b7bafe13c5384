"""Portal objects made through the services (unlike ``factories.py``, which writes rows), and
the fixtures the domain tests share. Import the fixtures into a test module to use them."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from apps.accounts.models import User
from apps.accounts.roles import DEVELOPER, PRODUCT_MANAGER
from apps.portal import services
from apps.portal.models import Plan, PublishedAPI
from plmportal.celery import app as celery_app

from ..factories import member
from .factories import _n, released


def api(pm: User, rel=None, *, slug: str | None = None, publish: bool = True, pin: bool = False):
    rel = rel or released(pm)
    made = services.api_create(
        actor=pm,
        product=rel.product,
        slug=slug or f"api-{_n()}",
        name="Test API",
        docs="# Test\n\nHello.",
        release=rel if pin else None,
    )
    return services.api_publish(actor=pm, api=made) if publish else made


def plan(pm: User, on: PublishedAPI, *, slug: str = "free", approval: bool = False, **kw) -> Plan:
    kw.setdefault("requests_per_minute", 60)
    return services.plan_create(
        actor=pm, api=on, slug=slug, name=slug.title(), approval_required=approval, **kw
    )


def application(owner: User, name: str | None = None):
    return services.application_create(actor=owner, name=name or f"app-{_n()}")


@dataclass
class World:
    pm: User
    dev: User
    api: PublishedAPI
    free: Plan
    pro: Plan


def world() -> World:
    pm = member(PRODUCT_MANAGER)
    dev = member(DEVELOPER)
    published = api(pm)
    return World(
        pm=pm,
        dev=dev,
        api=published,
        free=plan(pm, published, slug="free"),
        pro=plan(pm, published, slug="pro", approval=True),
    )


@pytest.fixture
def eager_tasks():
    """Celery tasks run in the caller (``.delay`` runs the task at once)."""
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


@pytest.fixture
def mails(eager_tasks, django_capture_on_commit_callbacks, mailoutbox):
    """Run on-commit hooks (and so the notification tasks) as the test's block ends: use as
    ``with mails() as outbox: ...`` (``outbox`` holds the mails sent by the block)."""
    from contextlib import contextmanager

    @contextmanager
    def capture():
        mailoutbox.clear()  # only the mails of this block
        with django_capture_on_commit_callbacks(execute=True):
            yield mailoutbox

    return capture
