"""Provider services: admins only, one audit event per write, secrets never recorded."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from apps.accounts.roles import AUDITOR, DEVELOPER, PRODUCT_MANAGER
from apps.audit.models import AuditEvent
from apps.core.exceptions import Conflict, Forbidden
from apps.gateway import selectors, services
from apps.gateway.models import Provider, ProviderPrice

from ..api_suite import last_seq, verbs_since
from ..factories import UserFactory, member
from .factories import admin, price, provider

pytestmark = pytest.mark.django_db


def test_an_admin_creates_a_provider_with_an_encrypted_secret_and_one_audit_event():
    actor = admin()
    seq = last_seq()
    prov = provider(actor, slug="openai", secret="sk-create-secret")
    assert verbs_since(seq) == {"provider.created": 1}
    assert prov.secret_set
    assert "sk-create-secret" not in prov.secret_encrypted
    assert services.provider_secret(prov) == "sk-create-secret"
    event = AuditEvent.objects.get(seq=seq + 1)
    assert event.after["secret"] == "set"
    assert event.after["slug"] == "openai"
    assert prov.created_by == actor


def test_a_superuser_may_manage_providers_too():
    root = UserFactory(is_superuser=True)
    assert provider(root).created_by == root


@pytest.mark.parametrize("role", [PRODUCT_MANAGER, DEVELOPER, AUDITOR])
def test_non_admins_may_not_write(role):
    user = member(role)
    prov = provider()
    seq = last_seq()
    with pytest.raises(Forbidden):
        provider(user)
    with pytest.raises(Forbidden):
        services.provider_update(actor=user, provider=prov, name="x")
    with pytest.raises(Forbidden):
        price(user, prov)
    assert verbs_since(seq) == {}


def test_base_url_is_required_and_http_for_remote_kinds_and_blank_for_builtin():
    actor = admin()
    with pytest.raises(ValidationError) as caught:
        services.provider_create(actor=actor, slug="a", name="A", kind="anthropic")
    assert "base_url" in caught.value.message_dict
    with pytest.raises(ValidationError):
        provider(actor, base_url="ftp://example.test/")
    with pytest.raises(ValidationError):
        provider(actor, kind="builtin", base_url="http://example.test/")
    assert provider(actor, kind="builtin").base_url == ""
    assert provider(actor, kind="anthropic", base_url="https://api.anthropic.com").kind == (
        "anthropic"
    )


def test_a_taken_slug_is_a_conflict():
    actor = admin()
    provider(actor, slug="dup")
    with pytest.raises((Conflict, ValidationError)):
        provider(actor, slug="dup")


def test_update_records_the_changed_fields_and_only_set_or_changed_for_the_secret():
    actor = admin()
    prov = provider(actor)
    seq = last_seq()
    services.provider_update(actor=actor, provider=prov, secret="sk-first")
    services.provider_update(actor=actor, provider=prov, secret="sk-second", name="Renamed")
    services.provider_update(actor=actor, provider=prov, name="Renamed")  # no change: no event
    events = list(AuditEvent.objects.filter(seq__gt=seq).order_by("seq"))
    assert [e.verb for e in events] == ["provider.updated", "provider.updated"]
    assert events[0].before == {"secret": "unset"} and events[0].after == {"secret": "set"}
    assert events[1].after == {"name": "Renamed", "secret": "changed"}
    prov.refresh_from_db()
    assert services.provider_secret(prov) == "sk-second"


def test_an_empty_secret_on_update_keeps_the_stored_one():
    actor = admin()
    prov = provider(actor, secret="sk-keep")
    services.provider_update(actor=actor, provider=prov, secret="")
    prov.refresh_from_db()
    assert services.provider_secret(prov) == "sk-keep"


def test_price_set_creates_then_replaces_with_one_event_each():
    actor = admin()
    prov = provider(actor)
    seq = last_seq()
    first = price(actor, prov, "gpt-x", "1.25", "5")
    second = price(actor, prov, "gpt-x", "2", "8")
    price(actor, prov, "gpt-x", "2", "8")  # unchanged: no event
    assert first.pk == second.pk
    assert ProviderPrice.objects.filter(provider=prov).count() == 1
    assert second.input_per_million == Decimal("2")
    assert verbs_since(seq) == {"provider_price.set": 2}
    event = AuditEvent.objects.filter(seq__gt=seq).order_by("seq").last()
    assert event.before == {"input_per_million": "1.250000", "output_per_million": "5.000000"}
    assert event.after["input_per_million"] == "2"


def test_a_negative_price_is_refused():
    actor = admin()
    with pytest.raises(ValidationError):
        price(actor, provider(actor), inp="-1")


def test_history_never_holds_the_secret():
    actor = admin()
    prov = provider(actor, secret="sk-history-check")
    services.provider_update(actor=actor, provider=prov, secret="sk-history-two")
    fields = {f.name for f in Provider.history.model._meta.fields}
    assert "secret_encrypted" not in fields
    rows = list(Provider.history.filter(id=prov.pk).values())
    assert len(rows) == 2
    assert rows[0]["history_username"] == actor.username
    assert "sk-history" not in repr(rows)


def test_admins_and_auditors_see_every_provider_others_the_enabled_ones():
    actor = admin()
    on = provider(actor)
    off = provider(actor, enabled=False)
    for user in (actor, member(AUDITOR), UserFactory(is_superuser=True)):
        assert set(selectors.provider_list_for(user=user)) == {on, off}
    for user in (member(DEVELOPER), member(PRODUCT_MANAGER), UserFactory()):
        assert set(selectors.provider_list_for(user=user)) == {on}
