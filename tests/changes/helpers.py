from apps.changes import services as changes
from apps.releases.services import release_freeze, release_release
from tests.factories import PASSWORD, member, product, prompt_with_versions, release


def released(pm, prod=None, version="1.0.0"):
    """A product with a released release (set up without a change request)."""
    prod = prod or product(pm)
    r = release(pm, prod, version, prompt_text="Baseline prompt.")
    return release_release(actor=pm, release=release_freeze(actor=pm, release=r))


def proposal(pm, baseline, version="1.1.0", text="Proposed prompt."):
    """A draft release that swaps the baseline's prompt for a new version."""
    _, (pv,) = prompt_with_versions(pm, text, team=baseline.product.owner_team)
    return release(
        pm, baseline.product, version, prompt_version=pv, model_version=baseline.model_version
    )


def submitted_cr(pm, baseline=None, **kwargs):
    baseline = baseline or released(pm)
    proposed = proposal(pm, baseline, **kwargs)
    cr = changes.change_request_create(
        actor=pm,
        product=baseline.product,
        title="Friendlier prompt",
        rationale="Customers found it curt.",
        proposed=proposed,
    )
    return changes.change_request_submit(actor=pm, cr=cr)


def team_reviewer(pm, **kwargs):
    return member("reviewer", pm.memberships.first().team, **kwargs)


__all__ = ["PASSWORD", "proposal", "released", "submitted_cr", "team_reviewer"]
