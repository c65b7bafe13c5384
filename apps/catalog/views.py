"""Catalog pages: dashboard, products, models, datasets, prompt templates and their versions.

Every read goes through ``selectors`` (so an object out of scope is a 404) and every write
through ``services``; an ``ApplicationError`` becomes a form error or a message, a refusal
(``Forbidden``) a 403.
"""

import difflib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.roles import AUTHOR_ROLES
from apps.audit.models import AuditEvent
from apps.audit.selectors import recent_activity_for
from apps.core.exceptions import ApplicationError
from apps.core.pages import refuse_or_404
from apps.core.permissions import perm_name

from . import prompting, selectors, services
from .forms import (
    ArtifactForm,
    DatasetVersionForm,
    DeprecateForm,
    MessageFormSet,
    ModelVersionForm,
    ProductForm,
    PromptVersionForm,
    RenderPreviewForm,
)
from .models import (
    Dataset,
    DatasetVersion,
    Model,
    ModelVersion,
    PromptTemplate,
    PromptTemplateVersion,
    Stage,
)
from .panels import product_panels

PAGE_SIZE = 25
HISTORY_LIMIT = 50


# --- helpers -----------------------------------------------------------------------------------


def _add_service_error(form, exc: ApplicationError, aliases: dict[str, str] | None = None) -> None:
    """Show a service's refusal on the form: per-field messages where a field matches."""
    refuse_or_404(exc)
    for key, errors in exc.extra.items():
        name = (aliases or {}).get(key, key)
        if name in form.fields:
            for error in errors if isinstance(errors, list) else [errors]:
                form.add_error(name, str(error))
    form.add_error(None, exc.message)


def _add_validation_error(form, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


def _page(request: HttpRequest, queryset):
    return Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))


def _partial(request: HttpRequest) -> bool:
    """An htmx request for a fragment (not htmx restoring a page from its history)."""
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request


def _render(request, full: str, partial: str, context: dict) -> HttpResponse:
    response = render(request, partial if _partial(request) else full, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _uuid_or_404(value: str | None) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise Http404("Not a valid id.") from None


def _can_author(user) -> bool:
    return user.is_superuser or user.has_role(*AUTHOR_ROLES)


def _require_author(user, what: str) -> None:
    if not _can_author(user):
        raise PermissionDenied(f"Only product managers and admins can create {what}.")


def _can_change(user, obj) -> bool:
    return user.has_perm(perm_name(obj, "change"), obj)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _json_lines(value: Any) -> list[str]:
    return _pretty(value).splitlines()


def _text_diff(old: list[str], new: list[str], old_label: str, new_label: str) -> list[dict]:
    """The same row shape as ``prompting.line_diff``, for any list of lines."""
    rows = []
    for line in difflib.unified_diff(old, new, old_label, new_label, lineterm="", n=3):
        if line.startswith(("---", "+++")):
            continue
        op = line[:1] if line[:1] in "+-@" else " "
        rows.append({"op": op, "text": line[1:] if op != "@" else line})
    return rows


def _diff_stats(rows: list[dict]) -> dict[str, int]:
    return {
        "added": sum(1 for r in rows if r["op"] == "+"),
        "removed": sum(1 for r in rows if r["op"] == "-"),
    }


def _sample_variables(schema: dict) -> dict:
    """A starting point for the render preview: one placeholder per declared variable."""
    samples = {"string": "", "integer": 0, "number": 0, "boolean": False, "array": [], "object": {}}
    out = {}
    for name, spec in ((schema or {}).get("properties") or {}).items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "string")
        out[name] = spec.get("default", samples.get(kind, "")) if isinstance(spec, dict) else ""
    return out


# --- artifact kinds ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """What differs between models, datasets and prompt templates on the pages."""

    key: str  # URL-name prefix: prompt, model, dataset
    model: type
    version_model: type
    parent_field: str
    singular: str
    plural: str
    list_for: Callable
    versions_for: Callable

    @property
    def urls(self) -> dict[str, str]:
        names = (
            "list",
            "create",
            "detail",
            "version_create",
            "version_detail",
            "version_deprecate",
            "diff",
        )
        return {name: f"{self.key}_{name}" for name in names}


KINDS: dict[str, Kind] = {
    "prompt": Kind(
        "prompt",
        PromptTemplate,
        PromptTemplateVersion,
        "prompt",
        "prompt template",
        "Prompt templates",
        selectors.prompt_list_for,
        selectors.prompt_version_list_for,
    ),
    "model": Kind(
        "model",
        Model,
        ModelVersion,
        "model",
        "model",
        "Models",
        selectors.model_list_for,
        selectors.model_version_list_for,
    ),
    "dataset": Kind(
        "dataset",
        Dataset,
        DatasetVersion,
        "dataset",
        "dataset",
        "Datasets",
        selectors.dataset_list_for,
        selectors.dataset_version_list_for,
    ),
}

# Where an audit event's object lives in the UI.
_EVENT_URLS = {
    "catalog.product": "product_detail",
    "catalog.prompttemplate": "prompt_detail",
    "catalog.model": "model_detail",
    "catalog.dataset": "dataset_detail",
    "catalog.prompttemplateversion": "prompt_version_detail",
    "catalog.modelversion": "model_version_detail",
    "catalog.datasetversion": "dataset_version_detail",
    "releases.release": "release_detail",  # URL names only: reversed when present
    "changes.changerequest": "change_detail",
}


def _event_url(event: AuditEvent) -> str:
    name = _EVENT_URLS.get(event.object_type)
    if not name or not event.object_id:
        return ""
    try:
        return reverse(name, args=[event.object_id])
    except NoReverseMatch:
        return ""


# --- dashboard ---------------------------------------------------------------------------------


@login_required
def dashboard(request):
    user = request.user
    products = selectors.product_list_for(user=user)
    stage_counts = {
        row["stage"]: row["n"]
        for row in products.order_by().values("stage").annotate(n=Count("pk"))
    }
    events = recent_activity_for(user=user, product_ids=products.values("pk"))
    for event in events:
        event.url = _event_url(event)
    counts = {
        "products": sum(stage_counts.values()),
        "prompts": selectors.prompt_list_for(user=user).count(),
        "models": selectors.model_list_for(user=user).count(),
        "datasets": selectors.dataset_list_for(user=user).count(),
    }
    pipeline = [{"stage": stage, "count": stage_counts.get(stage, 0)} for stage in Stage.values]
    return render(
        request,
        "catalog/dashboard.html",
        {
            "products": products.order_by("-updated_at")[:10],
            "events": events,
            "counts": counts,
            "pipeline": pipeline,
            "can_author": _can_author(user),
        },
    )


# --- products ----------------------------------------------------------------------------------


@login_required
def product_list(request):
    q = request.GET.get("q", "").strip()
    stage = request.GET.get("stage", "")
    products = selectors.product_list_for(user=request.user)
    if q:
        products = products.filter(
            Q(slug__icontains=q) | Q(name__icontains=q) | Q(intended_use__icontains=q)
        )
    if stage in Stage.values:
        products = products.filter(stage=stage)
    else:
        stage = ""
    context = {
        "page": _page(request, products),
        "q": q,
        "stage": stage,
        "stages": Stage.values,
        "can_author": _can_author(request.user),
    }
    return _render(
        request, "catalog/product_list.html", "catalog/partials/product_table.html", context
    )


@login_required
@require_http_methods(["GET", "POST"])
def product_create(request):
    _require_author(request.user, "products")
    form = ProductForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            product = services.product_create(actor=request.user, **form.cleaned_data)
        except ApplicationError as exc:
            _add_service_error(form, exc)
        except ValidationError as exc:
            _add_validation_error(form, exc)
        else:
            messages.success(request, f"Product “{product.name}” created.")
            return redirect("product_detail", pk=product.pk)
    return render(request, "catalog/product_form.html", {"form": form})


def _history_rows(product) -> list[dict]:
    """The product's simple-history records, newest first, with what each one changed."""
    records = list(product.history.order_by("-history_date", "-history_id")[: HISTORY_LIMIT + 1])
    rows = []
    for i, record in enumerate(records[:HISTORY_LIMIT]):
        previous = records[i + 1] if i + 1 < len(records) else None
        changes = []
        if record.history_type == "~":
            if previous is None:
                previous = record.prev_record
            if previous is not None:
                delta = record.diff_against(
                    previous, excluded_fields=["created_at", "updated_at", "created_by"]
                )
                changes = [
                    {"field": c.field.replace("_", " "), "old": c.old, "new": c.new}
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
    return rows


@login_required
def product_detail(request, pk):
    product = get_object_or_404(selectors.product_list_for(user=request.user), pk=pk)
    can_change = _can_change(request.user, product)
    artifacts = selectors.product_artifacts(user=request.user, product=product)
    return render(
        request,
        "catalog/product_detail.html",
        {
            "product": product,
            "panels": product_panels(request=request, product=product, can_change=can_change),
            "can_change": can_change,
            "stages": Stage.values,
            "artifact_groups": [
                ("Prompt templates", "prompt", artifacts["prompts"].order_by("slug")),
                ("Models", "model", artifacts["models"].order_by("slug")),
                ("Datasets", "dataset", artifacts["datasets"].order_by("slug")),
            ],
            "history": _history_rows(product),
        },
    )


# --- artifacts ---------------------------------------------------------------------------------


def _kind(key: str) -> Kind:
    return KINDS[key]


def _artifact_or_404(request, kind: Kind, pk):
    return get_object_or_404(kind.list_for(user=request.user), pk=pk)


@login_required
def artifact_list(request, kind: str):
    k = _kind(kind)
    q = request.GET.get("q", "").strip()
    artifacts = k.list_for(user=request.user).order_by("slug", "owner_team__slug")
    if q:
        artifacts = artifacts.filter(
            Q(slug__icontains=q) | Q(name__icontains=q) | Q(description__icontains=q)
        )
    context = {
        "kind": k,
        "urls": k.urls,
        "page": _page(request, artifacts),
        "q": q,
        "can_author": _can_author(request.user),
    }
    return _render(
        request, "catalog/artifact_list.html", "catalog/partials/artifact_table.html", context
    )


@login_required
@require_http_methods(["GET", "POST"])
def artifact_create(request, kind: str):
    k = _kind(kind)
    _require_author(request.user, k.plural.lower())
    form = ArtifactForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            artifact = services.artifact_create(
                actor=request.user, kind=k.model, **form.cleaned_data
            )
        except ApplicationError as exc:
            _add_service_error(form, exc)
        except ValidationError as exc:
            _add_validation_error(form, exc)
        else:
            messages.success(request, f"{k.singular.capitalize()} “{artifact.name}” created.")
            return redirect(k.urls["detail"], pk=artifact.pk)
    return render(request, "catalog/artifact_form.html", {"form": form, "kind": k, "urls": k.urls})


@login_required
def artifact_detail(request, kind: str, pk):
    k = _kind(kind)
    artifact = _artifact_or_404(request, k, pk)
    versions = (
        k.versions_for(user=request.user).filter(**{k.parent_field: artifact}).order_by("-version")
    )
    choices = list(versions.values_list("pk", "version"))
    return render(
        request,
        "catalog/artifact_detail.html",
        {
            "kind": k,
            "urls": k.urls,
            "artifact": artifact,
            "page": _page(request, versions),
            "version_choices": choices,
            "diff_from": choices[1][0] if len(choices) > 1 else None,
            "diff_to": choices[0][0] if choices else None,
            "can_change": _can_change(request.user, artifact),
        },
    )


# --- versions ----------------------------------------------------------------------------------


def _latest(k: Kind, artifact):
    return k.version_model.objects.filter(**{k.parent_field: artifact}).order_by("-version").first()


def _prompt_version_form(request, k: Kind, prompt):
    latest = _latest(k, prompt)
    if latest is not None:
        initial_messages = latest.messages
        initial = {"variables_schema": latest.variables_schema, "parameters": latest.parameters}
    else:
        initial_messages = [{"role": "system", "content": ""}, {"role": "user", "content": ""}]
        initial = {"variables_schema": {"type": "object", "properties": {}}, "parameters": {}}
    data = request.POST if request.method == "POST" else None
    form = PromptVersionForm(data, initial=initial)
    # Bound rows are read as posted; the latest version only seeds the blank form.
    formset = MessageFormSet(data, initial=None if data else initial_messages, prefix="messages")
    if request.method == "POST" and form.is_valid() and formset.is_valid():
        rows = formset.rows()
        try:
            version = services.prompt_version_create(
                actor=request.user,
                prompt=prompt,
                messages=[message for _, message in rows],
                **form.cleaned_data,
            )
        except ApplicationError as exc:
            refuse_or_404(exc)
            for key, errors in exc.extra.items():
                # messages[i].content -> the formset row that held message i
                if key.startswith("messages[") and "]." in key:
                    index, _, field = key[len("messages[") :].partition("].")
                    if index.isdigit() and int(index) < len(rows):
                        row_form = formset.forms[rows[int(index)][0]]
                        if field in row_form.fields:
                            for error in errors:
                                row_form.add_error(field, str(error))
            _add_service_error(form, exc)
        else:
            return version
    return {"form": form, "formset": formset, "latest": latest}


def _model_version_form(request, k: Kind, model):
    latest = _latest(k, model)
    initial = {}
    if latest is not None:
        initial = {
            "provider": latest.provider,
            "provider_model": latest.provider_model,
            "parameters": latest.parameters,
            "base_model": latest.base_model,
            "model_card": latest.model_card,
        }
    base_versions = (
        selectors.model_version_list_for(user=request.user)
        .filter(model__owner_team_id=model.owner_team_id)
        .prefetch_related(None)
        .order_by("model__slug", "-version")
    )
    dataset_versions = (
        selectors.dataset_version_list_for(user=request.user)
        .filter(dataset__owner_team_id=model.owner_team_id)
        .order_by("dataset__slug", "-version")
    )
    form = ModelVersionForm(
        request.POST or None,
        initial=initial,
        base_versions=base_versions,
        dataset_versions=dataset_versions,
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            return services.model_version_create(
                actor=request.user,
                model=model,
                provider=data["provider"],
                provider_model=data["provider_model"],
                parameters=data["parameters"],
                base_model=data["base_model"],
                base_version=data["base_version"],
                training_datasets=list(data["training_datasets"]),
                finetuning_datasets=list(data["finetuning_datasets"]),
                model_card=data["model_card"],
                changelog=data["changelog"],
            )
        except ApplicationError as exc:
            _add_service_error(form, exc, aliases={"datasets": "training_datasets"})
        except ValidationError as exc:
            _add_validation_error(form, exc)
    return {"form": form, "latest": latest}


def _dataset_version_form(request, k: Kind, dataset):
    latest = _latest(k, dataset)
    parents = (
        selectors.dataset_version_list_for(user=request.user)
        .filter(dataset=dataset)
        .order_by("-version")
    )
    initial = {"parent": latest.pk} if latest else {}
    if latest is not None:
        initial.update(
            {"source": latest.source, "licence": latest.licence, "pii_class": latest.pii_class}
        )
    form = DatasetVersionForm(
        request.POST or None, request.FILES or None, initial=initial, parents=parents
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            return services.dataset_version_create(
                actor=request.user,
                dataset=dataset,
                file=data["file"] or None,
                uri=data["uri"],
                format=data["format"] or None,
                source=data["source"],
                licence=data["licence"],
                pii_class=data["pii_class"],
                retention_until=data["retention_until"],
                parent=data["parent"],
                changelog=data["changelog"],
            )
        except ApplicationError as exc:
            _add_service_error(form, exc)
        except ValidationError as exc:
            _add_validation_error(form, exc)
    return {"form": form, "latest": latest}


_VERSION_FORMS = {
    "prompt": _prompt_version_form,
    "model": _model_version_form,
    "dataset": _dataset_version_form,
}


@login_required
@require_http_methods(["GET", "POST"])
def version_create(request, kind: str, pk):
    k = _kind(kind)
    artifact = _artifact_or_404(request, k, pk)
    if not _can_change(request.user, artifact):
        raise PermissionDenied(f"You may not add versions to {artifact}.")
    result = _VERSION_FORMS[kind](request, k, artifact)
    if isinstance(result, k.version_model):
        messages.success(request, f"Version {result} registered.")
        return redirect(k.urls["version_detail"], pk=result.pk)
    context = {"kind": k, "urls": k.urls, "artifact": artifact, **result}
    return render(request, f"catalog/{kind}_version_form.html", context)


def _version_or_404(request, k: Kind, pk):
    return get_object_or_404(k.versions_for(user=request.user), pk=pk)


def _version_context(request, k: Kind, version, **extra) -> dict:
    artifact = getattr(version, k.parent_field)
    can_change = _can_change(request.user, artifact)
    context = {
        "kind": k,
        "urls": k.urls,
        "artifact": artifact,
        "version": version,
        "can_change": can_change,
        "deprecate_form": DeprecateForm() if can_change and not version.deprecated_at else None,
        "content_json": _pretty(version.content()),
        "pretty": {
            name: _pretty(getattr(version, name))
            for name in ("variables_schema", "parameters", "model_card")
            if hasattr(version, name)
        },
        "previous": k.versions_for(user=request.user)
        .filter(**{k.parent_field: artifact, "version__lt": version.version})
        .order_by("-version")
        .values("pk", "version")
        .first(),
    }
    if k.key == "prompt":
        context["preview_form"] = RenderPreviewForm(
            initial={"variables": _sample_variables(version.variables_schema)}
        )
    context.update(extra)
    return context


@login_required
def version_detail(request, kind: str, pk):
    k = _kind(kind)
    version = _version_or_404(request, k, pk)
    return render(request, "catalog/version_detail.html", _version_context(request, k, version))


@login_required
@require_POST
def version_deprecate(request, kind: str, pk):
    k = _kind(kind)
    version = _version_or_404(request, k, pk)
    form = DeprecateForm(request.POST)
    if not form.is_valid():
        if not _can_change(request.user, getattr(version, k.parent_field)):
            raise PermissionDenied(f"You may not deprecate {version}.")
        context = _version_context(request, k, version, deprecate_form=form)
        return render(request, "catalog/version_detail.html", context)
    try:
        services.version_deprecate(
            actor=request.user, version=version, reason=form.cleaned_data["reason"]
        )
    except ApplicationError as exc:
        refuse_or_404(exc)
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{version} is deprecated.")
    return redirect(k.urls["version_detail"], pk=version.pk)


@login_required
@require_POST
def prompt_version_render(request, pk):
    """Render a prompt version with the given variables (the htmx preview on its page)."""
    k = KINDS["prompt"]
    version = _version_or_404(request, k, pk)
    form = RenderPreviewForm(request.POST)
    rendered, error = None, None
    if form.is_valid():
        try:
            rendered = prompting.render_messages(
                version.messages, version.variables_schema, form.cleaned_data["variables"]
            )
        except ApplicationError as exc:
            error = exc
    details = []
    if error is not None:
        for field, errors in error.extra.items():
            details += [f"{field}: {e}" for e in errors if str(e) not in error.message]
    preview = {
        "preview_form": form,
        "rendered": rendered,
        "render_error": error,
        "render_error_details": details,
    }
    if _partial(request):
        return render(
            request, "catalog/partials/render_preview.html", {"version": version, **preview}
        )
    context = _version_context(request, k, version, **preview)
    return render(request, "catalog/version_detail.html", context)


# --- diff --------------------------------------------------------------------------------------


def _diff_sections(k: Kind, old, new) -> list[dict]:
    labels = (f"v{old.version}", f"v{new.version}")
    if k.key == "prompt":
        sections = [
            ("Messages", prompting.line_diff(old.messages, new.messages, *labels)),
            (
                "Variables schema",
                _text_diff(
                    _json_lines(old.variables_schema), _json_lines(new.variables_schema), *labels
                ),
            ),
            (
                "Parameters",
                _text_diff(_json_lines(old.parameters), _json_lines(new.parameters), *labels),
            ),
        ]
    else:
        sections = [
            ("Content", _text_diff(_json_lines(old.content()), _json_lines(new.content()), *labels))
        ]
    return [{"title": title, "rows": rows, **_diff_stats(rows)} for title, rows in sections]


@login_required
def artifact_diff(request, kind: str, pk):
    k = _kind(kind)
    artifact = _artifact_or_404(request, k, pk)
    versions = k.versions_for(user=request.user).filter(**{k.parent_field: artifact})
    choices = list(versions.order_by("-version").values_list("pk", "version"))
    from_id, to_id = request.GET.get("from"), request.GET.get("to")
    # By default the last two versions: the newest against the one before it.
    if not to_id and choices:
        to_id = choices[0][0]
    if not from_id and len(choices) >= 2:
        from_id = choices[1][0]
    old = new = None
    sections = []
    if from_id and to_id:
        wanted = {_uuid_or_404(from_id), _uuid_or_404(to_id)}
        found = {v.pk: v for v in versions.filter(pk__in=wanted)}
        if set(found) != wanted:
            raise Http404("No such version of this artifact.")
        old, new = found[_uuid_or_404(from_id)], found[_uuid_or_404(to_id)]
        sections = _diff_sections(k, old, new)
    return render(
        request,
        "catalog/diff.html",
        {
            "kind": k,
            "urls": k.urls,
            "artifact": artifact,
            "old": old,
            "new": new,
            "sections": sections,
            "identical": bool(sections) and not any(s["rows"] for s in sections),
            "version_choices": choices,
        },
    )
