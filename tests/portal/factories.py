"""Portal fixtures for tests: a released release published as an API, plans, an application
with an active subscription and a key.

Rows are made directly (with history actors) so the gateway's tests do not depend on the
portal services; the services' own rules are tested in ``test_services.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import factory
from django.utils import timezone

from apps.accounts.models import User
from apps.accounts.roles import DEVELOPER, PRODUCT_MANAGER
from apps.core.history import as_actor
from apps.gateway.models import Provider
from apps.portal.keys import key_generate, key_hash
from apps.portal.models import (
    APIKey,
    APIStatus,
    Application,
    Plan,
    PublishedAPI,
    Subscription,
    SubscriptionState,
)
from apps.releases.services import release_freeze, release_release

from ..factories import member, release


def _n() -> int:
    return factory.Faker._get_faker().unique.random_int(1, 10**9)


def builtin_provider() -> Provider:
    found = Provider.objects.filter(slug="builtin").first()
    if found is None:
        found = Provider.objects.create(slug="builtin", name="Built-in", kind="builtin")
    return found


def released(actor: User, prod=None, prompt_text: str = "Answer briefly.", **kwargs):
    """A released release of ``prod`` (a new product when none is given) on the built-in
    provider; its prompt is a system message with ``prompt_text`` and a user message ``{{ q }}``
    (variables: ``{"q": "..."}``, required)."""
    builtin_provider()
    rel = release(actor, prod, prompt_text=prompt_text, **kwargs)
    release_freeze(actor=actor, release=rel)
    return release_release(actor=actor, release=rel)


def published_api(
    actor: User, rel=None, *, slug: str | None = None, status: str = APIStatus.PUBLISHED, pin=False
) -> PublishedAPI:
    rel = rel or released(actor)
    api = PublishedAPI(
        slug=slug or f"api-{_n()}",
        name="Test API",
        product=rel.product,
        release=rel if pin else None,
        status=status,
        docs="# Test API\n\nAsk a question.",
        published_at=timezone.now() if status != APIStatus.DRAFT else None,
        created_by=actor,
    )
    as_actor(api, actor).save()
    return api


def plan(
    actor: User,
    api: PublishedAPI,
    *,
    slug: str = "free",
    rpm: int = 600,
    tokens: int | None = None,
    approval: bool = False,
) -> Plan:
    p = Plan(
        api=api,
        slug=slug,
        name=slug.title(),
        requests_per_minute=rpm,
        tokens_per_month=tokens,
        approval_required=approval,
        created_by=actor,
    )
    as_actor(p, actor).save()
    return p


def application(owner: User, name: str | None = None) -> Application:
    app = Application(owner=owner, name=name or f"app-{_n()}")
    as_actor(app, owner).save()
    return app


def subscription(
    app: Application, p: Plan, *, state: str = SubscriptionState.ACTIVE, decided_by=None
) -> Subscription:
    sub = Subscription(
        application=app,
        api=p.api,
        plan=p,
        state=state,
        requested_by=app.owner,
        decided_by=decided_by,
        decided_at=timezone.now() if state != SubscriptionState.PENDING else None,
    )
    as_actor(sub, app.owner).save()
    return sub


def api_key(app: Application, *, days: int = 90, name: str = "test key") -> tuple[APIKey, str]:
    secret, prefix = key_generate()
    key = APIKey(
        application=app,
        name=name,
        prefix=prefix,
        key_hash=key_hash(secret),
        expires_at=timezone.now() + timedelta(days=days),
        created_by=app.owner,
    )
    as_actor(key, app.owner).save()
    return key, secret


@dataclass
class Setup:
    pm: User
    developer: User
    api: PublishedAPI
    plan: Plan
    application: Application
    subscription: Subscription
    key: APIKey
    secret: str


def gateway_setup(
    *, rpm: int = 600, tokens: int | None = None, prompt_text: str = "Answer briefly."
) -> Setup:
    """A published API over a released release, a plan, and a developer's application with an
    active subscription and a key (``secret`` is the key to send)."""
    pm = member(PRODUCT_MANAGER)
    dev = member(DEVELOPER)
    rel = released(pm, prompt_text=prompt_text)
    api = published_api(pm, rel)
    p = plan(pm, api, rpm=rpm, tokens=tokens)
    app = application(dev)
    sub = subscription(app, p, decided_by=pm)
    key, secret = api_key(app)
    return Setup(pm, dev, api, p, app, sub, key, secret)
