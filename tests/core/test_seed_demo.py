import pytest
from django.core.management import call_command

from apps.accounts.models import Membership, User
from apps.audit.models import AuditEvent
from apps.audit.services import chain_verify
from apps.catalog.models import Product, PromptTemplateVersion

pytestmark = pytest.mark.django_db


def test_seed_demo_builds_the_demo_organisation_once(capsys, settings):
    call_command("seed_demo")
    out = capsys.readouterr().out
    for username in ("pm", "reviewer", "reviewer2", "developer", "auditor", "admin"):
        assert username in out
        user = User.objects.get(username=username)
        assert user.check_password(settings.DEMO_PASSWORD)
    roles = dict(Membership.objects.values_list("user__username", "role"))
    assert roles == {
        "pm": "product_manager",
        "reviewer": "reviewer",
        "reviewer2": "reviewer",
        "developer": "developer",
        "auditor": "auditor",
        "admin": "admin",
    }
    assert User.objects.get(username="admin").is_superuser
    product = Product.objects.get(slug="support-assistant")
    assert product.stage == "production"
    assert PromptTemplateVersion.objects.filter(prompt__owner_team=product.owner_team).count() == 2

    from apps.changes.models import ChangeRequest
    from apps.releases.models import Release

    released = Release.objects.get(product=product, status="released")
    assert released.version == "1.0.0"
    assert released.prompt_version.version == 1  # the second prompt version is not released
    states = dict(ChangeRequest.objects.values_list("proposed__version", "state"))
    assert states == {"1.0.0": "implemented", "1.1.0": "in_review"}

    from apps.gateway.models import Provider

    builtin = Provider.objects.get(slug="builtin")
    assert builtin.kind == "builtin"
    assert released.model_version.provider == builtin.slug

    from apps.portal.models import APIKey, Application, Plan, PublishedAPI

    api = PublishedAPI.objects.get(slug="support-assistant")
    assert (api.product, api.status, api.release) == (product, "published", None)
    assert api.docs.startswith("# ") and "```python" in api.docs
    plans = {p.slug: p for p in Plan.objects.filter(api=api)}
    assert set(plans) == {"free", "pro"}
    assert (plans["free"].approval_required, plans["free"].requests_per_minute) == (False, 30)
    assert plans["free"].tokens_per_month == 100_000
    assert (plans["pro"].approval_required, plans["pro"].requests_per_minute) == (True, 600)
    assert plans["pro"].tokens_per_month is None and plans["pro"].terms
    assert not Application.objects.exists() and not APIKey.objects.exists()

    events = AuditEvent.objects.count()
    history = product.history.count()
    call_command("seed_demo")
    assert "nothing to do" in capsys.readouterr().out
    assert AuditEvent.objects.count() == events
    assert product.history.count() == history
    assert api.history.count() == 2 and Plan.history.count() == 2
    assert chain_verify().intact
