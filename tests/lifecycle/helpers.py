"""Products at each lifecycle stage, through the lifecycle's own services."""

from __future__ import annotations

from apps.accounts.roles import ADMIN, PRODUCT_MANAGER
from apps.lifecycle import services as lifecycle
from tests.evaluations.factories import suite_with_cases
from tests.factories import PASSWORD, member, product

STORY = {"as_a": "support agent", "i_want": "drafted answers", "so_that": "I answer faster"}


def brief(pm, prod, *, suite_slug: str | None = None, **kwargs):
    targets = kwargs.pop("target_metrics", None)
    if targets is None:
        targets = [{"metric": "p95_latency_ms", "threshold": 2000}]
        if suite_slug:
            targets.insert(0, {"metric": "pass_rate", "suite": suite_slug, "threshold": 0.9})
    return lifecycle.brief_create(
        actor=pm,
        product=prod,
        problem_statement=kwargs.pop("problem_statement", "Agents answer the same questions."),
        target_users="Support agents",
        user_stories=[STORY],
        intended_uses="Draft answers an agent reviews.",
        out_of_scope_uses="Answering customers without review.",
        data_strategy={"sources": "help centre", "consent": "public", "pii_handling": "none"},
        target_metrics=targets,
        **kwargs,
    )


def assessment(pm, prod, **kwargs):
    kwargs.setdefault("technical", "A hosted model answers in time.")
    kwargs.setdefault("ethical", "Agents review every answer.")
    kwargs.setdefault(
        "risks", [{"title": "Wrong answer", "likelihood": 3, "severity": 2, "mitigation": "Review"}]
    )
    kwargs.setdefault("calls_per_month", 10_000)
    kwargs.setdefault("tokens_in_per_call", 500)
    kwargs.setdefault("tokens_out_per_call", 200)
    return lifecycle.assessment_set(actor=pm, product=prod, **kwargs)


def team_member(pm, role):
    return member(role, pm.memberships.first().team)


def signed_move(pm, signer, prod, to_stage, **kwargs):
    req = lifecycle.stage_request_create(actor=pm, product=prod, to_stage=to_stage, **kwargs)
    return lifecycle.request_approve(actor=signer, request=req, password=PASSWORD, comment="ok")


def in_design(pm, signer, *, prod=None, suite_version=None):
    prod = prod or product(pm)
    sv = suite_version or suite_with_cases(pm)
    brief(pm, prod, suite_slug=sv.suite.slug)
    assessment(pm, prod)
    signed_move(pm, signer, prod, "design")
    prod.refresh_from_db()
    return prod, sv


__all__ = ["ADMIN", "PASSWORD", "PRODUCT_MANAGER", "assessment", "brief", "in_design"]
