"""Evaluation-suite pages: the suite list, a suite, the cases editor, import, a version.

Every read goes through ``selectors`` (a suite outside the user's teams is a 404) and every
write through one call to ``services``; a service's refusal becomes a form error (on the case
row and field it names) or a message, a refusal of the role a 403, never a 500. The cases editor
works without JavaScript ("Add a case" re-renders the form with one more row); with htmx the new
row is fetched and appended in place.
"""

import json
import re
import uuid

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.catalog.forms import DeprecateForm
from apps.catalog.models import DatasetFormat, ModelVersion
from apps.catalog.selectors import dataset_version_list_for
from apps.core.exceptions import ApplicationError
from apps.core.models import UNSET
from apps.core.pages import refuse_or_404

from . import selectors, services
from .assertions import describe
from .forms import (
    SuiteForm,
    SuiteImportForm,
    SuiteTemplateForm,
    SuiteUpdateForm,
    SuiteVersionForm,
    case_formset,
)
from .models import EvalSuite, EvalSuiteVersion
from .templates_builtin import TEMPLATES

PAGE_SIZE = 25
CASES_PAGE_SIZE = 50
# A case row posts 7 fields; the editor stays under Django's cap on the fields of one request.
FIELDS_PER_CASE = 7
EDITOR_MAX_CASES = max(
    10,
    ((getattr(settings, "DATA_UPLOAD_MAX_NUMBER_FIELDS", None) or 10_000) - 20) // FIELDS_PER_CASE,
)
CASE_ERROR = re.compile(r"^cases\[(\d+)\](?:\.([a-z_]+))?(.*)$")


# --- helpers -----------------------------------------------------------------------------------


def _partial(request: HttpRequest) -> bool:
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request


def _render(request, full: str, partial: str, context: dict) -> HttpResponse:
    response = render(request, partial if _partial(request) else full, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _add_service_error(form, exc: ApplicationError) -> None:
    """Show a service's refusal on the form: on the field it names (``default_assertions[0]``
    goes to ``default_assertions``), and as the form's message."""
    refuse_or_404(exc)
    for key, errors in exc.extra.items():
        name = re.split(r"[.\[]", key, maxsplit=1)[0]
        if name in form.fields:
            for error in errors if isinstance(errors, list) else [errors]:
                text = str(error) if name == key else f"{key[len(name) :].lstrip('.')}: {error}"
                form.add_error(name, text)
    form.add_error(None, exc.message)


def _suite_or_404(request, pk) -> EvalSuite:
    return get_object_or_404(selectors.suite_list_for(request.user), pk=pk)


def _require_change(request, suite: EvalSuite) -> None:
    if not selectors.can_change_suite(request.user, suite):
        raise PermissionDenied(
            f"Only product managers and admins of team {suite.owner_team.slug} can change "
            f"{suite.slug}."
        )


def _model_labels(cases) -> dict[str, str]:
    """Labels of the model versions the cases' assertions name (one query, or none)."""
    ids = {
        str(spec.get("model_version"))
        for case in cases
        for spec in case.assertions or []
        if isinstance(spec, dict) and spec.get("model_version")
    }
    valid = set()
    for value in ids:
        try:
            valid.add(uuid.UUID(value))
        except ValueError:
            continue
    if not valid:
        return {}
    versions = ModelVersion.objects.filter(pk__in=valid).select_related("model")
    return {str(mv.pk): f"{mv} ({mv.provider}/{mv.provider_model})" for mv in versions}


def _case_rows(cases) -> list[dict]:
    """Cases with their assertions in words, for a table."""
    cases = list(cases)
    labels = _model_labels(cases)
    rows = []
    for case in cases:
        specs = [s for s in case.assertions or [] if isinstance(s, dict)]
        words = [describe(spec, labels=labels) for spec in specs]
        if not words and case.expected.strip():
            words = ["equals the expected output (implicit)"]
        rows.append(
            {
                "case": case,
                "assertions": words,
                "variables": json.dumps(case.variables, ensure_ascii=False, sort_keys=True),
            }
        )
    return rows


def _page(request, queryset, size: int = PAGE_SIZE, param: str = "page"):
    return Paginator(queryset, size).get_page(request.GET.get(param))


# --- suites ------------------------------------------------------------------------------------


@login_required
@require_GET
def suite_list(request):
    q = request.GET.get("q", "").strip()
    suites = selectors.suite_list_for(request.user)
    if q:
        suites = suites.filter(
            Q(slug__icontains=q) | Q(name__icontains=q) | Q(description__icontains=q)
        )
    context = {
        "page": _page(request, suites),
        "q": q,
        "can_author": selectors.can_author_suites(request.user),
        "templates": TEMPLATES.values(),
    }
    return _render(
        request, "evaluations/suite_list.html", "evaluations/partials/suite_table.html", context
    )


@login_required
@require_http_methods(["GET", "POST"])
def suite_create(request):
    if not selectors.can_author_suites(request.user):
        raise PermissionDenied("Only product managers and admins can create evaluation suites.")
    form = SuiteForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            suite = services.suite_create(actor=request.user, **form.cleaned_data)
        except ApplicationError as exc:
            _add_service_error(form, exc)
        else:
            messages.success(request, f"Suite “{suite.name}” created: now add its cases.")
            return redirect("suite_version_create", pk=suite.pk)
    return render(request, "evaluations/suite_form.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
def suite_from_template(request):
    if not selectors.can_author_suites(request.user):
        raise PermissionDenied("Only product managers and admins can create evaluation suites.")
    initial = {"template": request.GET.get("template") or "prompt_injection"}
    if initial["template"] not in TEMPLATES:
        initial["template"] = "prompt_injection"
    form = SuiteTemplateForm(request.POST or None, user=request.user, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            version = services.suite_from_template(
                actor=request.user,
                owner_team=data["owner_team"],
                template=data["template"],
                slug=data["slug"] or None,
                name=data["name"] or None,
                secret_phrases=data["secret_phrases"],
                base_variables=data["base_variables"],
            )
        except ApplicationError as exc:
            _add_service_error(form, exc)
        else:
            messages.success(
                request,
                f"Suite “{version.suite.name}” created with {len(version.cases.all())} cases.",
            )
            return redirect("suite_detail", pk=version.suite_id)
    return render(
        request,
        "evaluations/suite_template_form.html",
        {"form": form, "templates": TEMPLATES.values()},
    )


@login_required
@require_GET
def suite_detail(request, pk):
    suite = _suite_or_404(request, pk)
    versions = (
        selectors.suite_version_list_for(request.user).filter(suite=suite).order_by("-version")
    )
    latest = None
    cases_page = None
    if suite.latest_version_pk:
        latest = versions.filter(pk=suite.latest_version_pk).first()
    if latest is not None:
        cases_page = _page(
            request, selectors.suite_case_list(latest), CASES_PAGE_SIZE, "cases_page"
        )
    return render(
        request,
        "evaluations/suite_detail.html",
        {
            "suite": suite,
            "page": _page(request, versions),
            "latest": latest,
            "cases_page": cases_page,
            "case_rows": _case_rows(cases_page.object_list) if cases_page else [],
            "cases_param": "cases_page",
            "can_change": selectors.can_change_suite(request.user, suite),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def suite_update(request, pk):
    suite = _suite_or_404(request, pk)
    _require_change(request, suite)
    form = SuiteUpdateForm(
        request.POST or None, initial={"name": suite.name, "description": suite.description}
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.suite_update(actor=request.user, suite=suite, **form.cleaned_data)
        except ApplicationError as exc:
            _add_service_error(form, exc)
        else:
            messages.success(request, "Suite saved.")
            return redirect("suite_detail", pk=suite.pk)
    return render(request, "evaluations/suite_update_form.html", {"form": form, "suite": suite})


# --- the cases editor --------------------------------------------------------------------------


def _map_case_errors(formset, rows: list[tuple[int, dict]], exc: ApplicationError) -> bool:
    """Put ``cases[i].field…`` errors on the row that held case ``i``; True when one was."""
    placed = False
    for key, errors in exc.extra.items():
        match = CASE_ERROR.match(key)
        if not match or int(match[1]) >= len(rows):
            continue
        form = formset.forms[rows[int(match[1])][0]]
        field, rest = match[2], match[3]
        for error in errors if isinstance(errors, list) else [errors]:
            if field in form.fields:
                form.add_error(field, f"{field}{rest}: {error}" if rest else str(error))
            else:
                form.add_error(None, f"{key}: {error}")
            placed = True
    return placed


def _row_labels(message: str, rows: list[tuple[int, dict]]) -> str:
    """``cases[1].key: …`` as the editor labels its rows: ``Case 3: key: …``."""

    def label(match: re.Match) -> str:
        i = int(match[1])
        return f"Case {rows[i][0] + 1}" + (": " if match[2] else "") if i < len(rows) else match[0]

    return re.sub(r"cases\[(\d+)\](\.)?", label, message)


def _editor_context(suite, latest, formset, form, **extra) -> dict:
    return {
        "suite": suite,
        "latest": latest,
        "formset": formset,
        "form": form,
        "max_cases": EDITOR_MAX_CASES,
        **extra,
    }


@login_required
@require_http_methods(["GET", "POST"])
def suite_version_create(request, pk):
    suite = _suite_or_404(request, pk)
    _require_change(request, suite)
    latest = selectors.suite_latest_version(suite)
    CaseFormSet = case_formset(EDITOR_MAX_CASES)
    if request.method == "GET":
        initial = [c.content() for c in selectors.suite_case_list(latest)] if latest else []
        if len(initial) > EDITOR_MAX_CASES:
            context = _editor_context(suite, latest, None, None, too_many=len(initial))
            return render(request, "evaluations/suite_version_form.html", context)
        if not initial:
            initial = [{}]
        formset = CaseFormSet(initial=initial, prefix="cases")
        formset.extra = 0
        return render(
            request,
            "evaluations/suite_version_form.html",
            _editor_context(suite, latest, formset, SuiteVersionForm()),
        )

    data = request.POST
    if "add_row" in data:
        data = data.copy()
        try:
            total = int(data.get("cases-TOTAL_FORMS", "0"))
        except ValueError:
            total = 0
        data["cases-TOTAL_FORMS"] = str(min(total + 1, EDITOR_MAX_CASES))
        formset = CaseFormSet(data, prefix="cases")
        return render(
            request,
            "evaluations/suite_version_form.html",
            _editor_context(suite, latest, formset, SuiteVersionForm(data), adding=True),
        )
    formset = CaseFormSet(data, prefix="cases")
    form = SuiteVersionForm(data)
    if formset.is_valid() and form.is_valid():
        rows = formset.rows()
        try:
            version = services.suite_version_create(
                actor=request.user,
                suite=suite,
                cases=[case for _, case in rows],
                changelog=form.cleaned_data["changelog"],
                source_dataset_version=UNSET,
            )
        except ApplicationError as exc:
            refuse_or_404(exc)
            _map_case_errors(formset, rows, exc)
            form.add_error(None, _row_labels(exc.message, rows))
        else:
            messages.success(request, f"Version {version} registered with {len(rows)} case(s).")
            return redirect("suite_version_detail", pk=version.pk)
    return render(
        request,
        "evaluations/suite_version_form.html",
        _editor_context(suite, latest, formset, form),
    )


@login_required
@require_GET
def suite_case_row(request, pk):
    """One empty row of the cases editor (htmx), and the formset's new total (out of band)."""
    suite = _suite_or_404(request, pk)
    _require_change(request, suite)
    try:
        index = int(request.GET.get("cases-TOTAL_FORMS", "0"))
    except ValueError:
        index = 0
    index = max(index, 0)
    if index >= EDITOR_MAX_CASES:
        return render(
            request,
            "evaluations/partials/case_row_limit.html",
            {"max_cases": EDITOR_MAX_CASES, "total": index},
        )
    formset = case_formset(EDITOR_MAX_CASES)(prefix="cases")
    row = formset.form(prefix=f"cases-{index}", empty_permitted=True, use_required_attribute=False)
    formset.add_fields(row, index)
    return render(
        request,
        "evaluations/partials/case_row.html",
        {"row": row, "index": index, "total": index + 1, "oob": True},
    )


# --- import ------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def suite_import(request, pk):
    suite = _suite_or_404(request, pk)
    _require_change(request, suite)
    dataset_versions = (
        dataset_version_list_for(user=request.user)
        .filter(dataset__owner_team_id=suite.owner_team_id, format=DatasetFormat.JSONL)
        .exclude(file="")
        .order_by("dataset__slug", "-version")
    )
    form = SuiteImportForm(request.POST or None, dataset_versions=dataset_versions)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            version = services.suite_import_dataset(
                actor=request.user,
                suite=suite,
                dataset_version=data["dataset_version"],
                variables_field=data["variables_field"] or None,
                expected_field=data["expected_field"] or None,
                assertions_field=data["assertions_field"] or None,
                key_field=data["key_field"] or None,
                default_assertions=data["default_assertions"],
                default_variables=data["default_variables"],
                changelog=data["changelog"],
            )
        except ApplicationError as exc:
            _add_service_error(form, exc)
        else:
            messages.success(request, f"Version {version} registered: {version.changelog}")
            return redirect("suite_version_detail", pk=version.pk)
    return render(
        request,
        "evaluations/suite_import_form.html",
        {
            "suite": suite,
            "form": form,
            "latest": selectors.suite_latest_version(suite),
            "has_datasets": dataset_versions.exists(),
        },
    )


# --- versions ----------------------------------------------------------------------------------


def _version_or_404(request, pk) -> EvalSuiteVersion:
    return get_object_or_404(selectors.suite_version_list_for(request.user), pk=pk)


def _version_context(request, version: EvalSuiteVersion, **extra) -> dict:
    can_change = selectors.can_change_suite(request.user, version.suite)
    cases_page = _page(request, selectors.suite_case_list(version), CASES_PAGE_SIZE, "page")
    context = {
        "suite": version.suite,
        "version": version,
        "can_change": can_change,
        "cases_page": cases_page,
        "case_rows": _case_rows(cases_page.object_list),
        "cases_param": "page",
        "deprecate_form": DeprecateForm() if can_change and not version.deprecated_at else None,
        "previous": EvalSuiteVersion.objects.filter(
            suite_id=version.suite_id, version__lt=version.version
        )
        .order_by("-version")
        .values("pk", "version")
        .first(),
    }
    context.update(extra)
    return context


@login_required
@require_GET
def suite_version_detail(request, pk):
    version = _version_or_404(request, pk)
    return render(
        request, "evaluations/suite_version_detail.html", _version_context(request, version)
    )


@login_required
@require_POST
def suite_version_deprecate(request, pk):
    version = _version_or_404(request, pk)
    if not selectors.can_change_suite(request.user, version.suite):
        raise PermissionDenied(f"You may not deprecate {version}.")
    form = DeprecateForm(request.POST)
    if not form.is_valid():
        context = _version_context(request, version, deprecate_form=form)
        return render(request, "evaluations/suite_version_detail.html", context)
    try:
        services.suite_version_deprecate(
            actor=request.user, version=version, reason=form.cleaned_data["reason"]
        )
    except ApplicationError as exc:
        refuse_or_404(exc)
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{version} is deprecated.")
    return redirect("suite_version_detail", pk=version.pk)
