"""E-mails of the portal, sent by a Celery task once the service's transaction has committed.

``enqueue(event, object_id, data)`` is what a service calls (inside its transaction): it sends
``portal.notify`` on commit. The task calls ``deliver``, which re-reads the objects, works out
the recipients and sends plain-text mails through ``django.core.mail``. Events:

- ``subscription_requested``: to the approvers of the API (with an e-mail address);
- ``subscription_decided``: to the application's owner (``data``: decision and reason);
- ``api_deprecated``: to the owners of the API's active subscriptions (sunset and migration);
- ``change_implemented``: to the owners of the active subscriptions of the APIs a change to
  their product reaches (``selectors.change_impact``).

No secret is ever part of a mail.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction

from apps.accounts.models import User

from .models import Application, PublishedAPI, Subscription, SubscriptionState

EVENTS = ("subscription_requested", "subscription_decided", "api_deprecated", "change_implemented")


def enqueue(event: str, object_id: Any, data: dict | None = None) -> None:
    """Send the notification task when the current transaction commits."""
    if event not in EVENTS:
        raise ValueError(f"unknown portal notification {event!r}")
    from .tasks import notify

    args = [event, str(object_id), data or {}]
    transaction.on_commit(lambda: notify.delay(*args))


def api_url(api: PublishedAPI) -> str:
    return f"{settings.PORTAL_PUBLIC_URL.rstrip('/')}/portal/apis/{api.slug}/"


def application_url(application: Application) -> str:
    return f"{settings.PORTAL_PUBLIC_URL.rstrip('/')}/portal/applications/{application.pk}/"


def _send(subject: str, body: str, users: Iterable[User | None]) -> int:
    recipients = sorted({u.email for u in users if u is not None and u.email})
    if not recipients:
        return 0
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
    return len(recipients)


def _active_owners(api_ids: Iterable[Any]) -> list[User]:
    return list(
        User.objects.filter(
            applications__subscriptions__api_id__in=list(api_ids),
            applications__subscriptions__state=SubscriptionState.ACTIVE,
        ).distinct()
    )


def _subscription(object_id: str) -> Subscription:
    return Subscription.objects.select_related(
        "application", "application__owner", "api", "api__product", "plan", "requested_by"
    ).get(pk=object_id)


def _requested(object_id: str, data: dict) -> int:
    from .selectors import approvers_of

    sub = _subscription(object_id)
    api, plan, app = sub.api, sub.plan, sub.application
    body = (
        f"{sub.requested_by.get_username()} asks to subscribe the application {app.name} to the "
        f"plan {plan.name} ({plan.slug}) of the API {api.name} ({api.slug}).\n\n"
        f"Justification: {sub.justification or '(none given)'}\n\n"
        f"Approve or reject it in the portal: {settings.PORTAL_PUBLIC_URL.rstrip('/')}"
        f"/portal/subscriptions/\nThe API: {api_url(api)}\n"
    )
    approvers = [u for u in approvers_of(api) if u.pk != sub.requested_by_id]
    return _send(f"[PLM] Subscription request: {api.slug} / {plan.slug}", body, approvers)


def _decided(object_id: str, data: dict) -> int:
    sub = _subscription(object_id)
    api, plan, app = sub.api, sub.plan, sub.application
    decision = data.get("decision") or sub.state
    reason = data.get("reason", sub.decision_reason)
    by = data.get("by") or "the API's team"
    body = (
        f"Your subscription of the application {app.name} to the plan {plan.name} "
        f"({plan.slug}) of the API {api.name} ({api.slug}) was {decision} by {by}.\n\n"
        f"Reason: {reason or '(none given)'}\n\n"
        f"Your application: {application_url(app)}\nThe API: {api_url(api)}\n"
    )
    return _send(f"[PLM] Subscription {decision}: {api.slug} / {plan.slug}", body, [app.owner])


def _deprecated(object_id: str, data: dict) -> int:
    api = PublishedAPI.objects.select_related("successor").get(pk=object_id)
    sunset = api.sunset_at.strftime("%Y-%m-%d %H:%M UTC") if api.sunset_at else "not set"
    successor = (
        f"\nIts successor is {api.successor.name} ({api.successor.slug}): "
        f"{api_url(api.successor)}\n"
        if api.successor_id
        else ""
    )
    body = (
        f"The API {api.name} ({api.slug}) that your application subscribes to is deprecated. "
        f"It stops answering on {sunset} (sunset).\n\n"
        f"What to do next:\n{api.migration_note}\n{successor}\nThe API: {api_url(api)}\n"
    )
    return _send(f"[PLM] Deprecated: {api.slug}, sunset {sunset}", body, _active_owners([api.pk]))


def _change_implemented(object_id: str, data: dict) -> int:
    from apps.changes.models import ChangeRequest

    from .selectors import change_impact

    cr = ChangeRequest.objects.select_related("product", "proposed").get(pk=object_id)
    impact = change_impact(product=cr.product)
    if not impact.apis:
        return 0
    sent = 0
    for api in impact.apis:
        body = (
            f"The API {api.name} ({api.slug}) now serves release {cr.proposed.version} of "
            f'{cr.product.name}, after the change "{cr.title}".\n\n'
            f"Why: {cr.rationale or '(not given)'}\n\n"
            f"Read the API's page for what changed: {api_url(api)}\n"
        )
        sent += _send(
            f"[PLM] {api.slug} changed: release {cr.proposed.version}",
            body,
            _active_owners([api.pk]),
        )
    return sent


_HANDLERS = {
    "subscription_requested": _requested,
    "subscription_decided": _decided,
    "api_deprecated": _deprecated,
    "change_implemented": _change_implemented,
}


def deliver(event: str, object_id: str, data: dict | None = None) -> int:
    """Send the mails of one event; returns how many recipients were mailed."""
    return _HANDLERS[event](object_id, data or {})
