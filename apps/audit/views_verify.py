"""The "Verify" page: start a verification run of the audit chain and watch its progress.

Auditors, admins and superusers see the page (others: 403): the latest runs, the latest signed
checkpoint and a button that starts a run (a Celery task, queued when the request commits).
The running run's panel polls itself every second (htmx) with ``checked``/``total`` and a
``<progress>``; it ends in "intact" or the first problem the verifier found. Any signed-in user
downloads the public key that checkpoints are verified with.
"""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST

from . import signing
from .checkpoints import checkpoint_every, checkpoint_latest
from .models import AuditChainHead, AuditCheckpoint, VerificationRun
from .services import may_verify, verification_start

RECENT_RUNS = 10
RUN_DONE_EVENT = "audit-verify-done"


def _partial(request: HttpRequest) -> bool:
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request


def _require_verifier(request: HttpRequest) -> None:
    if not may_verify(request.user):
        raise PermissionDenied("Only auditors, admins and superusers verify the audit chain.")


def _runs():
    return VerificationRun.objects.select_related("requested_by").order_by("-started_at", "-pk")


def _run_response(request: HttpRequest, run: VerificationRun) -> HttpResponse:
    response = render(request, "audit/partials/verify_run.html", {"run": run})
    if run.state != "running":
        response["HX-Trigger"] = RUN_DONE_EVENT
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_GET
def audit_verify(request):
    """The page; with htmx and ``part=runs`` only the table of recent runs."""
    _require_verifier(request)
    runs = list(_runs()[:RECENT_RUNS])
    if _partial(request) and request.GET.get("part") == "runs":
        response = render(request, "audit/partials/verify_runs.html", {"runs": runs})
        patch_vary_headers(response, ["HX-Request"])
        return response
    current = None
    if request.GET.get("run", "").isdigit():
        current = _runs().filter(pk=int(request.GET["run"])).first()
    if current is None:
        current = next((run for run in runs if run.state == "running"), None)
    head = AuditChainHead.objects.filter(id=1).first()
    head_seq = head.last_seq if head else 0
    checkpoint = checkpoint_latest()
    response = render(
        request,
        "audit/verify.html",
        {
            "runs": runs,
            "run": current,
            "checkpoint": checkpoint,
            "unanchored": max(0, head_seq - (checkpoint.seq if checkpoint else 0)),
            "checkpoint_count": AuditCheckpoint.objects.count(),
            "checkpoint_every": checkpoint_every(),
            "head_seq": head_seq,
            "key_id": signing.key_id(),
        },
    )
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_POST
def audit_verify_start(request):
    """Start a run. With htmx the run's panel is swapped in (and polls); without, the page."""
    _require_verifier(request)
    run = verification_start(actor=request.user)
    if _partial(request):
        return _run_response(request, run)
    return redirect(f"{reverse('audit_verify')}?run={run.pk}")


@login_required
@require_GET
def audit_verify_run(request, pk: int):
    """One run's panel (polled every second while it runs)."""
    _require_verifier(request)
    run = get_object_or_404(_runs(), pk=pk)
    if _partial(request):
        return _run_response(request, run)
    return redirect(f"{reverse('audit_verify')}?run={run.pk}")


@login_required
@require_GET
def audit_public_key(request):
    """The current checkpoint-signing public key (PEM), with the rotated-out ones after it."""
    pems = [signing.public_key_pem().strip()]
    pems += [pem.strip() for pem in signing.extra_public_keys() if pem.strip() not in pems]
    response = HttpResponse("\n".join(pems) + "\n", content_type="application/x-pem-file")
    response["Content-Disposition"] = 'inline; filename="plm-audit-public-key.pem"'
    response["X-Key-Id"] = signing.key_id()
    return response
