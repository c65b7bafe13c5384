"""The playground works on the demo organisation that ``manage.py seed_demo`` builds."""

import uuid

import pytest
from django.core.management import call_command
from django.urls import reverse

from apps.accounts.models import User
from apps.catalog.models import DatasetVersion
from apps.playground import services
from apps.playground.models import PlaygroundRun
from apps.playground.tasks import run_batch_chunk, run_playground
from apps.releases.models import Release

pytestmark = pytest.mark.django_db

# The demo release caches answers (exact match) in the shared cache: a question of its own.
QUESTION_ID = uuid.uuid4().hex[:8]


def test_the_demo_release_runs_in_the_playground_and_over_the_demo_dataset(client):
    """GIVEN the demo data WHEN ``pm`` runs support-assistant 1.0.0 from the page, and over the
    support-faq dataset with the company given for every row THEN the built-in provider answers
    each of them."""
    call_command("seed_demo")
    pm = User.objects.get(username="pm")
    rel = Release.objects.get(product__slug="support-assistant", version="1.0.0")
    client.force_login(pm)
    page = client.get(reverse("playground_variables"), {"release": rel.pk})
    assert 'name="var-company"' in page.content.decode()
    response = client.post(
        reverse("playground_run_create"),
        {
            "release": rel.pk,
            "var-company": "Acme",
            "var-question": f"How do I log in? ({QUESTION_ID})",
        },
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    run = PlaygroundRun.objects.get()
    assert run_playground(str(run.pk)) == "succeeded"
    run.refresh_from_db()
    assert run.output == f"[builtin] How do I log in? ({QUESTION_ID})"
    assert run.messages[0]["content"] == "You are the support assistant of Acme. Be concise."
    assert run.cost > 0 and not run.cache_hit

    dv = DatasetVersion.objects.get(dataset__slug="support-faq")
    batch = services.batch_run_create(
        actor=pm, release=rel, dataset_version=dv, variables={"company": "Demo Inc."}
    )
    assert run_batch_chunk(str(batch.pk), 0) is None
    batch.refresh_from_db()
    assert (batch.state, batch.total, batch.succeeded_count) == ("succeeded", 3, 3)
    assert batch.items.get(index=0).output == "[builtin] How do I reset my password?"
