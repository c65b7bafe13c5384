"""The "Verify" page, its API and the public key download; a run on a real worker."""

import time

import pytest
from django.urls import reverse

from apps.accounts.services import user_create
from apps.audit import signing
from apps.audit.ed25519 import load_public_key, verify_signature
from apps.audit.models import AuditEvent, VerificationRun
from apps.audit.services import verification_run, verification_start
from tests.factories import member

from .forgery_helpers import make_events, new_key_b64, swap_seqs

HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def signing_env(settings):
    settings.AUDIT_SIGNING_KEY = new_key_b64()
    settings.AUDIT_PUBLIC_KEYS_EXTRA = []
    settings.AUDIT_CHECKPOINT_EVERY = 5


def superuser():
    return user_create(actor=None, username="root", password="x-pass-1234", is_superuser=True)


# --- the page ------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["product_manager", "reviewer", "developer"])
def test_other_roles_may_not_verify(client, signing_env, role):
    client.force_login(member(role))
    assert client.get(reverse("audit_verify")).status_code == 403
    assert client.post(reverse("audit_verify_start")).status_code == 403
    assert not VerificationRun.objects.exists()


@pytest.mark.django_db
def test_anonymous_users_are_sent_to_log_in(client, signing_env):
    response = client.get(reverse("audit_verify"))
    assert response.status_code == 302
    assert reverse("login") in response["Location"]
    assert client.get(reverse("audit_public_key")).status_code == 302


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["auditor", "admin", "superuser"])
def test_auditors_admins_and_superusers_see_the_page(client, signing_env, who):
    client.force_login(superuser() if who == "superuser" else member(who))
    make_events(6)
    response = client.get(reverse("audit_verify"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "data-verify-start" in body
    assert signing.key_id() in body
    assert "data-checkpoint" in body
    assert reverse("audit_public_key") in body


@pytest.mark.django_db
def test_the_button_starts_a_run_polls_its_progress_and_ends_intact(
    client, signing_env, django_capture_on_commit_callbacks
):
    """GIVEN an auditor on the page WHEN they press Verify THEN a run is queued for the worker
    (on commit) and its panel polls every second with a progress bar; once the worker is done
    the panel says "intact" and stops polling."""
    auditor = member("auditor")
    client.force_login(auditor)
    make_events(7)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(reverse("audit_verify_start"), **HX)
    assert response.status_code == 200
    assert len(callbacks) == 1  # the Celery task, sent when the request commits
    run = VerificationRun.objects.get()
    assert run.requested_by == auditor
    assert AuditEvent.objects.filter(verb="audit.verification_started", object_id=str(run.pk))
    body = response.content.decode()
    assert 'hx-trigger="every 1s"' in body
    assert "<progress" in body
    assert 'data-run-state="running"' in body

    verification_run(run_id=run.pk)  # what the worker does
    response = client.get(reverse("audit_verify_run", args=[run.pk]), **HX)
    body = response.content.decode()
    assert "intact" in body
    assert 'data-result="intact"' in body
    assert "every 1s" not in body
    assert response["HX-Trigger"] == "audit-verify-done"
    run.refresh_from_db()
    assert (run.state, run.checked, run.checkpoints_checked) == ("intact", run.total, 2)
    assert AuditEvent.objects.filter(verb="audit.chain_verified", object_id=str(run.pk))

    table = client.get(reverse("audit_verify"), {"part": "runs"}, **HX).content.decode()
    assert f'data-run-row="{run.pk}"' in table


@pytest.mark.django_db
def test_without_htmx_the_button_redirects_to_the_page(client, signing_env):
    client.force_login(member("auditor"))
    response = client.post(reverse("audit_verify_start"))
    run = VerificationRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('audit_verify')}?run={run.pk}"
    page = client.get(response["Location"]).content.decode()
    assert f'data-run="{run.pk}"' in page


@pytest.mark.django_db
def test_a_broken_chain_shows_the_first_problem(client, signing_env):
    client.force_login(member("auditor"))
    events = make_events(6)
    swap_seqs(events[1].seq, events[3].seq)
    run = VerificationRun.objects.create()
    verification_run(run_id=run.pk)
    body = client.get(reverse("audit_verify_run", args=[run.pk]), **HX).content.decode()
    assert 'data-result="broken"' in body
    assert 'data-kind="reordered"' in body
    assert f"#{events[1].seq}" in body


# --- the public key ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_any_signed_in_user_downloads_the_public_key(client, signing_env, settings):
    old = signing.public_key_pem()
    settings.AUDIT_SIGNING_KEY = new_key_b64()
    settings.AUDIT_PUBLIC_KEYS_EXTRA = [old]
    client.force_login(member("developer"))
    response = client.get(reverse("audit_public_key"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/x-pem-file")
    assert response["X-Key-Id"] == signing.key_id()
    text = response.content.decode()
    assert text.startswith(signing.public_key_pem().strip())
    assert old.strip() in text
    load_public_key(text.split("-----END PUBLIC KEY-----")[0] + "-----END PUBLIC KEY-----")


@pytest.mark.django_db
def test_api_public_key(client_for, api_client, signing_env):
    assert api_client.get("/api/v1/audit/public-key/").status_code == 401
    data = client_for(member("developer")).get("/api/v1/audit/public-key/").json()
    assert data["algorithm"] == "Ed25519"
    assert data["key_id"] == signing.key_id()
    assert data["public_key"] == signing.public_key_pem()
    assert data["previous_keys"] == []


# --- the API -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_api_starts_and_reads_a_verification(
    client_for, api_client, signing_env, django_capture_on_commit_callbacks
):
    assert api_client.post("/api/v1/audit/verifications/").status_code == 401
    assert client_for(member("developer")).post("/api/v1/audit/verifications/").status_code == 403
    auditor = client_for(member("auditor"))
    make_events(3)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = auditor.post("/api/v1/audit/verifications/")
    assert response.status_code == 202, response.content
    assert len(callbacks) == 1
    run_id = response.json()["id"]
    assert response.json()["state"] == "running"
    verification_run(run_id=run_id)
    data = auditor.get(f"/api/v1/audit/verifications/{run_id}/").json()
    assert (data["state"], data["kind"], data["progress"]) == ("intact", "", 1.0)
    assert data["checked"] == data["total"] > 3
    assert data["requested_by"]
    listed = auditor.get("/api/v1/audit/verifications/").json()
    assert listed["results"][0]["id"] == run_id
    assert (
        client_for(member("developer")).get(f"/api/v1/audit/verifications/{run_id}/").status_code
        == 403
    )


@pytest.mark.django_db
def test_api_lists_checkpoints_that_verify_with_the_public_key(client_for, signing_env):
    """Each checkpoint's signed_payload and signature check out with the downloaded key,
    without the portal's help."""
    make_events(12)
    auditor = client_for(member("auditor"))
    pem = auditor.get("/api/v1/audit/public-key/").json()["public_key"]
    page = auditor.get("/api/v1/audit/checkpoints/", {"page_size": 1}).json()
    assert page["count"] >= 2
    assert len(page["results"]) == 1
    for cp in auditor.get("/api/v1/audit/checkpoints/").json()["results"]:
        payload = cp["signed_payload"].encode()
        assert payload.split(b"\n")[1:3] == [str(cp["seq"]).encode(), cp["head_hash"].encode()]
        assert verify_signature(pem, payload, cp["signature"])
    assert client_for(member("developer")).get("/api/v1/audit/checkpoints/").status_code == 403


@pytest.mark.django_db
def test_only_verifiers_start_a_run_through_the_service(signing_env):
    from apps.core.exceptions import ApplicationError

    with pytest.raises(ApplicationError) as exc:
        verification_start(actor=member("developer"))
    assert exc.value.status == 403


# --- a real worker -----------------------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_verifies_with_progress(celery_worker, settings):
    """GIVEN 2,500 committed events (checkpoints at #1000 and #2000, signed with the key file
    the worker reads too) WHEN an auditor starts a run THEN a worker process verifies it, saving
    its progress on the run, and ends intact with both checkpoints checked."""
    settings.AUDIT_TASK_QUEUE = celery_worker.queue
    auditor = member("auditor")
    make_events(2500 - AuditEvent.objects.count())
    run = verification_start(actor=auditor)
    seen = set()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        run.refresh_from_db()
        seen.add(run.checked)
        if run.state != "running":
            break
        time.sleep(0.05)
    assert run.state == "intact", (run.problem, celery_worker.output()[-2000:])
    assert run.checked == run.total >= 2500
    assert run.checkpoints_checked == 2
    assert run.anchored_seq == 2000
    assert max(seen) == run.total


@pytest.mark.django_db
def test_the_page_before_any_checkpoint(client, signing_env, settings):
    settings.AUDIT_CHECKPOINT_EVERY = 0
    client.force_login(member("auditor"))
    body = client.get(reverse("audit_verify")).content.decode()
    assert "No checkpoint has been signed yet" in body
    assert "has not been verified yet" in body
