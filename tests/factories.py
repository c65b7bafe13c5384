"""Factories for every test: no shared fixture database, each test builds what it needs."""

import factory
from django.conf import settings

from apps.accounts import services as accounts
from apps.accounts.models import Team, User
from apps.catalog import services as catalog
from apps.catalog.models import Dataset, Model, PromptTemplate

PASSWORD = "test-pass-483"


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    slug = factory.Sequence(lambda n: f"team-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return accounts.team_create(actor=None, **kwargs)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.test")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        password = kwargs.pop("password", PASSWORD)
        return accounts.user_create(actor=None, password=password, **kwargs)


def member(role: str, team: Team | None = None, **user_kwargs) -> User:
    """A fresh user holding ``role`` in ``team`` (a new team when none is given)."""
    team = team or TeamFactory()
    user = UserFactory(**user_kwargs)
    accounts.membership_add(actor=None, user=user, team=team, role=role)
    return User.objects.get(pk=user.pk)


def product(actor: User, team: Team | None = None, **kwargs):
    team = team or actor.memberships.first().team
    n = factory.Faker._get_faker().unique.random_int(1, 10**9)
    kwargs.setdefault("slug", f"product-{n}")
    kwargs.setdefault("name", f"Product {n}")
    return catalog.product_create(actor=actor, owner_team=team, **kwargs)


def artifact(actor: User, kind, team: Team | None = None, **kwargs):
    team = team or actor.memberships.first().team
    n = factory.Faker._get_faker().unique.random_int(1, 10**9)
    kwargs.setdefault("slug", f"{kind._meta.model_name}-{n}")
    kwargs.setdefault("name", f"{kind._meta.verbose_name.title()} {n}")
    return catalog.artifact_create(actor=actor, kind=kind, owner_team=team, **kwargs)


def prompt_with_versions(actor: User, *texts: str, team: Team | None = None):
    prompt = artifact(actor, PromptTemplate, team)
    versions = [
        catalog.prompt_version_create(
            actor=actor,
            prompt=prompt,
            messages=[{"role": "system", "content": text}, {"role": "user", "content": "{{ q }}"}],
            variables_schema={
                "type": "object",
                "properties": {"q": {"type": "string"}},
                "required": ["q"],
            },
        )
        for text in texts
    ]
    return prompt, versions


__all__ = [
    "PASSWORD",
    "Dataset",
    "Model",
    "PromptTemplate",
    "TeamFactory",
    "UserFactory",
    "artifact",
    "member",
    "product",
    "prompt_with_versions",
    "settings",
]


def model_version(actor: User, team: Team | None = None, provider_model: str = "echo-1"):
    model = artifact(actor, Model, team)
    return catalog.model_version_create(
        actor=actor, model=model, provider="builtin", provider_model=provider_model
    )


def release(actor: User, prod=None, version: str = "1.0.0", prompt_text: str = "Answer.", **kwargs):
    """A draft release of ``prod`` (a new product when none is given)."""
    from apps.releases.services import release_create

    prod = prod or product(actor)
    team = prod.owner_team
    if "prompt_version" not in kwargs:
        kwargs["prompt_version"] = prompt_with_versions(actor, prompt_text, team=team)[1][0]
    if "model_version" not in kwargs:
        kwargs["model_version"] = model_version(actor, team)
    return release_create(actor=actor, product=prod, version=version, **kwargs)
