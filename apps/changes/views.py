"""Change-request pages: the list, the reviewer's queue, the form, and the request itself with
its diff, quorum, gates (the evaluation gate's section, polled while pending), signatures and
history.

Reads go through the selectors (out of scope is a 404), every write through one service; a
service's refusal becomes a form error or a message, never a 500.
"""

import uuid
from collections.abc import Callable
from datetime import datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.formats import date_format
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from guardian.shortcuts import get_objects_for_user

from apps.accounts.models import User
from apps.accounts.roles import AUTHOR_ROLES
from apps.audit.models import AuditEvent
from apps.catalog.selectors import product_list_for
from apps.core.exceptions import ApplicationError
from apps.core.pages import refuse_or_404
from apps.releases.models import Release, ReleaseStatus
from apps.releases.selectors import release_list_for
from apps.releases.views import release_diff_context

from . import gates, selectors, services
from .context_processors import waiting_for
from .forms import ChangeRequestForm, CommentForm, SignatureForm, WithdrawForm
from .models import (
    CR_TRANSITIONS,
    OPEN_STATES,
    REVIEW_STATES,
    ChangeRequest,
    CRState,
    Decision,
)
from .panels import change_panels

PAGE_SIZE = 25
HISTORY_LIMIT = 100
# The page holds three forms with a comment; their fields need distinct names and ids.
COMMENT_PREFIX = "note"
WITHDRAW_PREFIX = "withdraw"
EDITABLE_STATES = (CRState.DRAFT, CRState.WITHDRAWN)
CLOSED_STATES = (CRState.IMPLEMENTED, CRState.REJECTED)
# The happy path drawn on the page; rejected and withdrawn are shown beside it.
PIPELINE = (
    CRState.DRAFT,
    CRState.SUBMITTED,
    CRState.IN_REVIEW,
    CRState.APPROVED,
    CRState.IMPLEMENTED,
)
HISTORY_HIDDEN_FIELDS = [
    "created_at",
    "updated_at",
    "policy_snapshot",
    "conflicted_user_ids",
    "impact",
]


# --- helpers (read-only) -----------------------------------------------------------------------


def _show_on_form(form, exc: ApplicationError) -> int:
    """Put a service's refusal on ``form``; the status to answer with: 200 when the person
    can fix their input, else the refusal's own (403, 409)."""
    if exc.status == 404:
        raise Http404(exc.message)
    for key, errors in exc.extra.items():
        if key in form.fields:
            for error in errors if isinstance(errors, list) else [errors]:
                form.add_error(key, str(error))
    form.add_error(None, exc.message)
    return 200 if exc.extra else exc.status


def _partial(request: HttpRequest) -> bool:
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request


def _uuid_or_404(value) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise Http404("Not a valid id.") from None


def _cr_or_404(request: HttpRequest, pk) -> ChangeRequest:
    return get_object_or_404(selectors.change_request_list_for(user=request.user), pk=pk)


def _can_change(user, product) -> bool:
    return user.has_perm("catalog.change_product", product)


def _quorum_summary(cr: ChangeRequest) -> dict | None:
    """Valid approvals against the quorum, from the prefetched approvals; None before the policy
    is copied on submit (a list row must not look the policy up)."""
    if cr.policy_snapshot is None:
        return None
    quorum = services.quorum_status(cr, list(cr.approvals.all()))
    return {
        "met": quorum.met,
        "have": sum(min(r["have"], r["quorum"]) for r in quorum.roles),
        "need": sum(r["quorum"] for r in quorum.roles),
        "vetoed_by": quorum.vetoed_by,
    }


def _signing_role(user: User, cr: ChangeRequest, policy: dict) -> str | None:
    """The role ``user`` would sign as (mirrors the service, without raising)."""
    team_roles = user.roles(team=cr.product.owner_team)
    for rule in policy["required_roles"]:
        if rule["role"] in team_roles:
            return rule["role"]
    if user.get_username() in policy["optional_reviewers"]:
        return "optional"
    return None


def _review(user: User, cr: ChangeRequest, approvals: list, conflicted: set) -> dict:
    """Whether ``user`` gets the approve/reject form, and if not, why."""
    policy = cr.policy_snapshot or services.DEFAULT_POLICY
    role = _signing_role(user, cr, policy)
    signed = next(
        (
            a
            for a in approvals
            if a.reviewer_id == user.pk
            and a.fingerprint == cr.fingerprint
            and a.decision in (Decision.APPROVE, Decision.REJECT)
        ),
        None,
    )
    reason = ""
    if cr.state not in REVIEW_STATES:
        return {"can_sign": False, "sign_role": role, "sign_blocked": ""}
    if user.pk in conflicted:
        reason = (
            "You requested this change or authored part of it, so you cannot approve or reject it."
        )
    elif signed is not None:
        reason = f"You signed this version of the change: {signed.get_decision_display().lower()}."
    elif role is None:
        reason = (
            "You are a comment-only reviewer of this change."
            if user.get_username() in policy["comment_only"]
            else "You are not a reviewer of this change request."
        )
    return {"can_sign": not reason, "sign_role": role, "sign_blocked": reason}


def _history_rows(cr: ChangeRequest) -> list[dict]:
    """The request's simple-history records, oldest first, field by field."""
    records = list(cr.history.order_by("-history_date", "-history_id")[:HISTORY_LIMIT])
    records.reverse()
    release_names = {
        str(pk): version
        for pk, version in Release.objects.filter(product_id=cr.product_id).values_list(
            "pk", "version"
        )
    }
    user_ids = {r.requested_by_id for r in records} | {r.implemented_by_id for r in records}
    user_names = {
        str(pk): name
        for pk, name in User.objects.filter(pk__in=user_ids - {None}).values_list("pk", "username")
    }
    names = {
        "baseline": release_names,
        "proposed": release_names,
        "requested_by": user_names,
        "implemented_by": user_names,
    }

    def show(field: str, value) -> str:
        if value in (None, ""):
            return "—"
        if isinstance(value, datetime):
            return date_format(timezone.localtime(value), "Y-m-d H:i:s")
        if field in names:
            return names[field].get(str(value), str(value))
        if field == "fingerprint":
            return str(value)[:12]
        return str(value)

    rows = []
    previous = None
    for record in records:
        changes = []
        if record.history_type == "~" and previous is not None:
            delta = record.diff_against(previous, excluded_fields=HISTORY_HIDDEN_FIELDS)
            changes = [
                {
                    "field": c.field.replace("_", " "),
                    "old": show(c.field, c.old),
                    "new": show(c.field, c.new),
                }
                for c in delta.changes
            ]
        rows.append(
            {
                "when": record.history_date,
                "who": record.history_username or "system",
                "type": {"+": "created", "~": "changed", "-": "deleted"}[record.history_type],
                "changes": changes,
            }
        )
        previous = record
    return rows


def _audit_events(cr: ChangeRequest, approvals: list) -> list[AuditEvent]:
    ids = [str(cr.pk), *(str(a.pk) for a in approvals)]
    return list(AuditEvent.objects.filter(object_id__in=ids).order_by("seq")[:HISTORY_LIMIT])


def _releases(user: User, cr: ChangeRequest) -> tuple[Release | None, Release]:
    """Baseline and proposed with what the diff reads (two queries, whatever the content)."""
    wanted = [pk for pk in (cr.baseline_id, cr.proposed_id) if pk]
    found = {r.pk: r for r in release_list_for(user=user).filter(pk__in=wanted)}
    if cr.proposed_id not in found:
        raise Http404("The proposed release is outside what you may see.")
    return found.get(cr.baseline_id), found[cr.proposed_id]


def _pipeline(cr: ChangeRequest) -> list[dict]:
    if cr.state == CRState.REJECTED:
        reached = PIPELINE.index(CRState.APPROVED)  # it got as far as the review
    elif cr.state == CRState.WITHDRAWN:
        reached = 4 if cr.decided_at else (2 if cr.submitted_at else 1)
    else:
        reached = PIPELINE.index(cr.state)
    return [
        {
            "state": step,
            "label": CRState(step).label.lower(),
            "past": i < reached,
            "current": step == cr.state,
        }
        for i, step in enumerate(PIPELINE)
    ]


def _gates_context(request: HttpRequest, cr: ChangeRequest, policy: dict) -> dict:
    """The gates' verdicts and page sections, and why they hold back approve and implement."""
    verdicts = gates.gate_verdicts(cr, policy)
    blocked = " ".join(v.summary() for v in verdicts if v.blocking)
    return {
        "gate_verdicts": verdicts,
        "gate_panels": gates.gate_panels(request, cr, verdicts),
        "gates_live": any(v.pending for v in verdicts),
        "approve_blocked": blocked if cr.state in REVIEW_STATES else "",
        "implement_blocked": blocked if cr.state == CRState.APPROVED else "",
    }


def _detail_context(request: HttpRequest, cr: ChangeRequest, **forms) -> dict:
    user = request.user
    approvals = list(cr.approvals.all())
    quorum = services.quorum_status(cr, approvals)
    policy = cr.policy_snapshot or services.policy_in_force(cr.product)
    can_change = _can_change(user, cr.product)
    baseline, proposed = _releases(user, cr)
    cr.baseline, cr.proposed = baseline, proposed  # the diff's reads, for the services' too
    conflicted = services.conflicted_users(cr)
    review = _review(user, cr, approvals, conflicted)
    timeline = [
        {
            "approval": a,
            "signature": a.decision in (Decision.APPROVE, Decision.REJECT),
            "valid": a.fingerprint == cr.fingerprint,
            "evidence": gates.evidence_links(a.evidence),
        }
        for a in approvals
    ]
    editable = cr.state in EDITABLE_STATES and can_change
    # Product managers and the policy's reviewers comment; read-only roles (auditors) do not.
    may_comment = (
        can_change
        or _signing_role(user, cr, policy) is not None
        or user.get_username() in policy["comment_only"]
    )
    return {
        "cr": cr,
        "product": cr.product,
        "d": release_diff_context(baseline, proposed),
        "quorum": quorum,
        "policy": policy,
        "policy_copied": cr.policy_snapshot is not None,
        "timeline": timeline,
        "void_count": sum(1 for t in timeline if t["signature"] and not t["valid"]),
        "events": _audit_events(cr, approvals),
        "history": _history_rows(cr),
        "pipeline": _pipeline(cr),
        "off_path": cr.state in (CRState.REJECTED, CRState.WITHDRAWN),
        "can_change": can_change,
        "can_edit": editable,
        "can_submit": editable,
        "can_withdraw": CRState.WITHDRAWN in CR_TRANSITIONS[cr.state]
        and (user.pk == cr.requested_by_id or can_change),
        "can_implement": cr.state == CRState.APPROVED and can_change,
        "can_comment": may_comment and cr.state not in CLOSED_STATES,
        "is_requester": user.pk == cr.requested_by_id,
        **review,
        **_gates_context(request, cr, policy),
        "sign_form": forms.get("sign_form") or SignatureForm(),
        "comment_form": forms.get("comment_form") or CommentForm(prefix=COMMENT_PREFIX),
        "withdraw_form": WithdrawForm(prefix=WITHDRAW_PREFIX),
        "panels": change_panels(request=request, cr=cr, can_change=can_change),
    }


def _render_detail(request: HttpRequest, pk, status: int = 200, **forms) -> HttpResponse:
    cr = _cr_or_404(request, pk)  # read again: the service may have moved it
    return render(
        request, "changes/change_detail.html", _detail_context(request, cr, **forms), status=status
    )


# --- lists -------------------------------------------------------------------------------------


@login_required
def change_list(request):
    user = request.user
    crs = selectors.change_request_list_for(user=user).order_by("-created_at", "pk")
    q = request.GET.get("q", "").strip()
    state = request.GET.get("state", "")
    product = None
    if request.GET.get("product"):
        product = get_object_or_404(
            product_list_for(user=user), pk=_uuid_or_404(request.GET["product"])
        )
        crs = crs.filter(product=product)
    if q:
        crs = crs.filter(Q(title__icontains=q) | Q(rationale__icontains=q))
    if state == "open":
        crs = crs.filter(state__in=OPEN_STATES)
    elif state in CRState.values:
        crs = crs.filter(state=state)
    else:
        state = ""
    page = Paginator(crs, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [{"cr": cr, "quorum": _quorum_summary(cr)} for cr in page.object_list]
    context = {
        "page": page,
        "rows": rows,
        "q": q,
        "state": state,
        "states": [(s, CRState(s).label.lower()) for s in CRState.values],
        "product": product,
        "can_author": user.is_superuser or user.has_role(*AUTHOR_ROLES),
    }
    template = "changes/partials/change_table.html" if _partial(request) else "changes/list.html"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
def change_queue(request):
    """Waiting for me: in review, my signature is required or invited, and not yet given."""
    page = Paginator(waiting_for(request), PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [{"cr": cr, "quorum": _quorum_summary(cr)} for cr in page.object_list]
    return render(request, "changes/queue.html", {"page": page, "rows": rows})


# --- the form ----------------------------------------------------------------------------------


def _form_querysets(user: User, product, cr: ChangeRequest | None = None) -> dict:
    releases = release_list_for(user=user).filter(product=product).prefetch_related(None)
    keep = [cr.proposed_id] if cr else []
    keep_base = [cr.baseline_id] if cr and cr.baseline_id else []
    return {
        "proposed": releases.filter(
            Q(status__in=(ReleaseStatus.DRAFT, ReleaseStatus.CANDIDATE)) | Q(pk__in=keep)
        ).order_by("-created_at"),
        "baselines": releases.filter(
            Q(status__in=(ReleaseStatus.RELEASED, ReleaseStatus.DEPRECATED)) | Q(pk__in=keep_base)
        ).order_by("-created_at"),
    }


@login_required
@require_http_methods(["GET", "POST"])
def change_create(request):
    user = request.user
    product_id = request.GET.get("product")
    if not product_id:
        products = get_objects_for_user(
            user, "catalog.change_product", klass=product_list_for(user=user), with_superuser=True
        ).order_by("name")
        return render(request, "changes/choose_product.html", {"products": products})
    product = get_object_or_404(product_list_for(user=user), pk=_uuid_or_404(product_id))
    if not _can_change(user, product):
        raise PermissionDenied(f"You may not file change requests for {product.slug}.")
    querysets = _form_querysets(user, product)
    current = querysets["baselines"].filter(status=ReleaseStatus.RELEASED).first()
    initial = {"baseline": current.pk if current else None}
    if request.GET.get("proposed"):
        initial["proposed"] = _uuid_or_404(request.GET["proposed"])
    form = ChangeRequestForm(request.POST or None, initial=initial, **querysets)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            cr = services.change_request_create(
                actor=user,
                product=product,
                title=data["title"],
                rationale=data["rationale"],
                proposed=data["proposed"],
                baseline=data["baseline"],
                risk=data["risk"],
            )
        except ApplicationError as exc:
            refuse_or_404(exc)
            _show_on_form(form, exc)
        except ValidationError as exc:
            form.add_error(None, exc.messages)
        else:
            messages.success(request, "Change request drafted. Submit it when it is ready.")
            return redirect("change_detail", pk=cr.pk)
    return render(
        request,
        "changes/form.html",
        {
            "form": form,
            "product": product,
            "cr": None,
            "has_proposals": querysets["proposed"].exists(),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def change_edit(request, pk):
    user = request.user
    cr = _cr_or_404(request, pk)
    if not _can_change(user, cr.product):
        raise PermissionDenied(f"You may not change the change requests of {cr.product.slug}.")
    if cr.state not in EDITABLE_STATES:
        messages.error(
            request,
            f"This change request is {cr.get_state_display().lower()}; withdraw it to edit it.",
        )
        return redirect("change_detail", pk=cr.pk)
    querysets = _form_querysets(user, cr.product, cr)
    initial = {
        "title": cr.title,
        "rationale": cr.rationale,
        "risk": cr.risk,
        "proposed": cr.proposed_id,
        "baseline": cr.baseline_id,
    }
    form = ChangeRequestForm(request.POST or None, initial=initial, **querysets)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            cr = services.change_request_update(
                actor=user,
                cr=cr,
                title=data["title"],
                rationale=data["rationale"],
                risk=data["risk"],
                proposed=data["proposed"],
                baseline=data["baseline"],
            )
        except ApplicationError as exc:
            refuse_or_404(exc)
            _show_on_form(form, exc)
        except ValidationError as exc:
            form.add_error(None, exc.messages)
        else:
            messages.success(request, "Change request saved.")
            return redirect("change_detail", pk=cr.pk)
    return render(
        request,
        "changes/form.html",
        {"form": form, "product": cr.product, "cr": cr, "has_proposals": True},
    )


# --- the request -------------------------------------------------------------------------------


@login_required
def change_detail(request, pk):
    return _render_detail(request, pk)


def _act(request: HttpRequest, pk, action: Callable[[ChangeRequest], object], done: str):
    cr = _cr_or_404(request, pk)
    try:
        action(cr)
    except ApplicationError as exc:
        refuse_or_404(exc)
        messages.error(request, exc.message)
    else:
        messages.success(request, done)
    return redirect("change_detail", pk=cr.pk)


@login_required
@require_GET
def change_gates(request, pk):
    """The gates' section of the request (htmx polls it while a gate is pending), with the
    approve button swapped out of band so it is enabled the moment the gates pass."""
    cr = _cr_or_404(request, pk)
    if not _partial(request):
        return redirect("change_detail", pk=cr.pk)
    policy = cr.policy_snapshot or services.policy_in_force(cr.product)
    context = {"cr": cr, "oob": True, **_gates_context(request, cr, policy)}
    if cr.state in REVIEW_STATES:
        context |= _review(
            request.user, cr, list(cr.approvals.all()), services.conflicted_users(cr)
        )
    response = render(request, "changes/partials/gates.html", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_POST
def change_submit(request, pk):
    return _act(
        request,
        pk,
        lambda cr: services.change_request_submit(actor=request.user, cr=cr),
        "Submitted for review: the proposed release is frozen and the reviewers are notified.",
    )


@login_required
@require_POST
def change_withdraw(request, pk):
    form = WithdrawForm(request.POST, prefix=WITHDRAW_PREFIX)
    comment = form.cleaned_data["comment"] if form.is_valid() else ""
    return _act(
        request,
        pk,
        lambda cr: services.change_request_withdraw(actor=request.user, cr=cr, comment=comment),
        "Withdrawn. Edit it and submit it again to restart the review.",
    )


@login_required
@require_POST
def change_implement(request, pk):
    return _act(
        request,
        pk,
        lambda cr: services.change_request_implement(actor=request.user, cr=cr),
        "Implemented: the proposed release is now the product's released release.",
    )


def _sign(request: HttpRequest, pk, decision: str) -> HttpResponse:
    cr = _cr_or_404(request, pk)
    form = SignatureForm(request.POST)
    status = 200
    if form.is_valid():
        sign = (
            services.change_request_approve
            if decision == Decision.APPROVE
            else services.change_request_reject
        )
        try:
            cr, _ = sign(
                actor=request.user,
                cr=cr,
                password=form.cleaned_data["password"],
                comment=form.cleaned_data["comment"],
            )
        except ApplicationError as exc:
            status = _show_on_form(form, exc)
        else:
            verb = "Approved" if decision == Decision.APPROVE else "Rejected"
            messages.success(request, f"{verb} and signed as {request.user.get_username()}.")
            return redirect("change_detail", pk=cr.pk)
    return _render_detail(request, pk, status=status, sign_form=form)


@sensitive_post_parameters("password")
@login_required
@require_POST
def change_approve(request, pk):
    return _sign(request, pk, Decision.APPROVE)


@sensitive_post_parameters("password")
@login_required
@require_POST
def change_reject(request, pk):
    return _sign(request, pk, Decision.REJECT)


@login_required
@require_POST
def change_comment(request, pk):
    cr = _cr_or_404(request, pk)
    form = CommentForm(request.POST, prefix=COMMENT_PREFIX)
    status = 200
    if form.is_valid():
        try:
            services.change_request_comment(
                actor=request.user, cr=cr, comment=form.cleaned_data["comment"]
            )
        except ApplicationError as exc:
            status = _show_on_form(form, exc)
        else:
            messages.success(request, "Comment added.")
            return redirect("change_detail", pk=cr.pk)
    return _render_detail(request, pk, status=status, comment_form=form)
