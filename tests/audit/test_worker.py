import time

import pytest

from apps.audit.models import VerificationRun
from apps.audit.services import audit_record
from apps.audit.tasks import verify_chain
from tests.factories import member


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_chain_verification_runs_on_a_real_worker(celery_worker):
    """GIVEN audit events WHEN verification is queued THEN a worker process verifies them."""
    user = member("auditor")
    for i in range(3):
        audit_record(actor=user, verb="test.event", object_type="test", object_id=str(i))
    run = VerificationRun.objects.create(requested_by=user)
    verify_chain.apply_async(args=[run.pk], queue=celery_worker.queue)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.state != "running":
            break
        time.sleep(0.2)
    assert run.state == "intact", celery_worker.output()[-2000:]
    assert run.checked == run.total >= 3
