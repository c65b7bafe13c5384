"""Providers for the gateway tests, made through the services."""

from decimal import Decimal

import factory

from apps.accounts.models import User
from apps.accounts.roles import ADMIN
from apps.gateway import services as gateway

from ..factories import member


def admin(**kwargs) -> User:
    return member(ADMIN, **kwargs)


def provider(actor: User | None = None, **kwargs):
    actor = actor or admin()
    n = factory.Faker._get_faker().unique.random_int(1, 10**9)
    kwargs.setdefault("slug", f"provider-{n}")
    kwargs.setdefault("name", f"Provider {n}")
    kwargs.setdefault("kind", "openai_compatible")
    if kwargs["kind"] != "builtin":
        kwargs.setdefault("base_url", "http://127.0.0.1:9/v1")
    return gateway.provider_create(actor=actor, **kwargs)


def price(actor: User, prov, model: str = "gpt-test", inp: str = "1.5", out: str = "6"):
    return gateway.provider_price_set(
        actor=actor,
        provider=prov,
        provider_model=model,
        input_per_million=Decimal(inp),
        output_per_million=Decimal(out),
    )
