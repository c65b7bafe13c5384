"""Evaluation suites for the tests, made through the services.

``case_dict(key)`` is a case that passes against the built-in provider with the prompts of
``tests.factories.prompt_with_versions`` (whose user message is ``{{ q }}``): its variables are
``{"q": "say <key>"}`` and its one assertion is ``contains <key>`` (the built-in provider echoes
the last user message). ``suite_with_cases(actor)`` is a suite of the actor's team with one
version holding ``[case_dict("greeting"), case_dict("farewell")]`` unless ``cases`` is given.
"""

from typing import Any

import factory

from apps.accounts.models import Team, User
from apps.evaluations import services
from apps.evaluations.models import EvalSuite, EvalSuiteVersion


def case_dict(key: str, **kw: Any) -> dict:
    """A case (a dict as ``suite_version_create`` takes it); keyword arguments override."""
    case = {
        "key": key,
        "variables": {"q": f"say {key}"},
        "expected": "",
        "assertions": [{"type": "contains", "value": key}],
        "group": "",
        "vary": "",
    }
    case.update(kw)
    return case


def suite(actor: User, team: Team | None = None, **kwargs: Any) -> EvalSuite:
    team = team or actor.memberships.first().team
    n = factory.Faker._get_faker().unique.random_int(1, 10**9)
    kwargs.setdefault("slug", f"suite-{n}")
    kwargs.setdefault("name", f"Suite {n}")
    kwargs.setdefault("description", "")
    return services.suite_create(actor=actor, owner_team=team, **kwargs)


def suite_with_cases(
    actor: User, team: Team | None = None, cases: list[dict] | None = None
) -> EvalSuiteVersion:
    """A new suite of ``team`` (the actor's first team) and its version 1 holding ``cases``."""
    made = suite(actor, team)
    if cases is None:
        cases = [case_dict("greeting"), case_dict("farewell")]
    return services.suite_version_create(actor=actor, suite=made, cases=cases)
