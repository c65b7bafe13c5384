"""What the playground tests run against: the built-in provider, made through the services.

The model versions of ``tests.factories`` name the provider ``builtin`` with the model
``echo-1``; ``builtin()`` creates that provider (deterministic, no network: it echoes the last
user message after ``[builtin] ``) with a price, so runs go through the real pipeline.
"""

import json

from django.core.files.uploadedfile import SimpleUploadedFile

from apps.accounts.roles import PRODUCT_MANAGER
from apps.catalog import services as catalog
from apps.catalog.models import Dataset, PromptTemplate

from ..factories import artifact, member, model_version, release
from ..gateway.factories import price, provider

# Per million tokens: a 3-word question costs visibly more than zero.
PRICE_IN, PRICE_OUT = "1000", "2000"

SCHEMA = {
    "type": "object",
    "properties": {
        "company": {"type": "string", "maxLength": 80, "description": "Who is answering."},
        "question": {"type": "string", "minLength": 1, "description": "The customer's question."},
    },
    "required": ["question"],
}
MESSAGES = [
    {"role": "system", "content": "You answer for {{ company | default('us') }}."},
    {"role": "user", "content": "{{ question }}"},
]


def builtin(**config):
    """The built-in provider the factories' model versions name, priced."""
    prov = provider(kind="builtin", slug="builtin", config=config)
    price(prov.created_by, prov, model="echo-1", inp=PRICE_IN, out=PRICE_OUT)
    return prov


def prompt_version(actor, team=None, *, schema=None, messages=None):
    prompt = artifact(actor, PromptTemplate, team)
    return catalog.prompt_version_create(
        actor=actor,
        prompt=prompt,
        messages=messages or MESSAGES,
        variables_schema=SCHEMA if schema is None else schema,
    )


def runnable_release(actor, prod=None, **kwargs):
    """A draft release whose prompt takes ``company`` and ``question``."""
    team = prod.owner_team if prod else actor.memberships.first().team
    kwargs.setdefault("prompt_version", prompt_version(actor, team))
    kwargs.setdefault("model_version", model_version(actor, team))
    return release(actor, prod, **kwargs)


def dataset_version(actor, rows, *, fmt="jsonl", team=None):
    """A dataset version stored in the portal: ``rows`` (dicts, or raw bytes) as a file."""
    if isinstance(rows, bytes):
        data = rows
    elif fmt == "jsonl":
        data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    else:
        raise ValueError("give CSV as bytes")
    dataset = artifact(actor, Dataset, team)
    return catalog.dataset_version_create(
        actor=actor, dataset=dataset, file=SimpleUploadedFile(f"rows.{fmt}", data)
    )


def pm(team=None, **kwargs):
    return member(PRODUCT_MANAGER, team, **kwargs)


__all__ = [
    "MESSAGES",
    "SCHEMA",
    "builtin",
    "dataset_version",
    "pm",
    "prompt_version",
    "runnable_release",
]
