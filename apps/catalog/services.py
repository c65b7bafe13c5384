"""Every write to products, artifacts and their versions.

Each service is one transaction that checks the actor's permission, writes, keeps history and
appends an audit event.
"""

import json
from datetime import date
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from apps.accounts.models import Team, User
from apps.accounts.roles import ADMIN, AUTHOR_ROLES, ROLE_OBJECT_VERBS, ROLES, group_name
from apps.audit.services import audit_changes, audit_record
from apps.core.exceptions import ApplicationError, Conflict, Forbidden
from apps.core.hashing import content_hash
from apps.core.history import as_actor
from apps.core.permissions import grant_to_group, perm_name

from . import prompting
from .datasets import profile_dataset
from .models import (
    STAGE_TRANSITIONS,
    Dataset,
    DatasetFormat,
    DatasetVersion,
    LineagePurpose,
    Model,
    ModelVersion,
    ModelVersionDataset,
    PIIClass,
    Product,
    PromptTemplate,
    PromptTemplateVersion,
    RiskClass,
    Stage,
    Version,
)

PRODUCT_FIELDS = ("slug", "name", "owner_team", "stage", "risk_class", "intended_use")
ARTIFACT_FIELDS = ("slug", "name", "owner_team", "description")


def _snapshot(obj: models.Model, fields: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for name in fields:
        value = getattr(obj, name)
        out[name] = str(value) if isinstance(value, models.Model) else value
    return out


def _require_author(actor: User, team: Team) -> None:
    if actor.is_superuser or actor.has_role(*AUTHOR_ROLES, team=team):
        return
    raise Forbidden(
        "forbidden",
        f"Only a product manager or admin of team {team.slug} can create its products and "
        "artifacts.",
    )


def _require_perm(actor: User, verb: str, obj: models.Model) -> None:
    if not actor.has_perm(perm_name(obj, verb), obj):
        raise Forbidden("forbidden", f"You may not {verb} {obj._meta.verbose_name} {obj}.")


def _grant_team(*, actor: User, obj: models.Model, team: Team, product_id=None) -> None:
    """Give each of the team's role groups its role's verbs on ``obj``."""
    for role in ROLES:
        group, _ = Group.objects.get_or_create(name=group_name(team.slug, role))
        perms = [perm_name(obj, verb) for verb in ROLE_OBJECT_VERBS[role]]
        grant_to_group(group=group, perms=perms, obj=obj)
    audit_record(
        actor=actor,
        verb="permission.granted",
        obj=obj,
        product_id=product_id,
        after={
            "team": team.slug,
            "grants": {role: list(ROLE_OBJECT_VERBS[role]) for role in ROLES},
        },
    )


def _full_clean(obj: models.Model, exclude: list[str] | None = None) -> None:
    obj.full_clean(exclude=exclude, validate_unique=True)


def _insert_unique(obj: models.Model, what: str) -> None:
    """Insert ``obj``; a unique slug taken by a concurrent request is a 409, not a 500."""
    try:
        with transaction.atomic():
            obj.save(force_insert=True)
    except IntegrityError:
        raise Conflict(
            "duplicate", f"A {what} with this slug already exists.", {"slug": ["Already used."]}
        ) from None


# --- Products -------------------------------------------------------------------------------


def product_create(
    *,
    actor: User,
    slug: str,
    name: str,
    owner_team: Team,
    stage: str = Stage.CONCEPT,
    risk_class: str = RiskClass.MINIMAL,
    intended_use: str = "",
) -> Product:
    _require_author(actor, owner_team)
    if stage != Stage.CONCEPT and not (actor.is_superuser or actor.has_role(ADMIN)):
        raise Forbidden(
            "gate_required",
            "A new product starts in concept; it moves on through signed stage gates. Only an "
            "admin may register an existing product in a later stage.",
            {"stage": ["Only concept (an admin may import a product in a later stage)."]},
        )
    with transaction.atomic():
        product = as_actor(
            Product(
                slug=slug,
                name=name,
                owner_team=owner_team,
                stage=stage,
                risk_class=risk_class,
                intended_use=intended_use,
                created_by=actor,
            ),
            actor,
        )
        _full_clean(product)
        _insert_unique(product, "product")
        audit_record(
            actor=actor,
            verb="product.created",
            obj=product,
            product_id=product.pk,
            after=_snapshot(product, PRODUCT_FIELDS),
        )
        _grant_team(actor=actor, obj=product, team=owner_team, product_id=product.pk)
    return product


def product_update(
    *,
    actor: User,
    product: Product,
    name: str | None = None,
    risk_class: str | None = None,
    intended_use: str | None = None,
) -> Product:
    with transaction.atomic():
        product = Product.objects.select_for_update().get(pk=product.pk)
        _require_perm(actor, "change", product)
        require_writable(product)
        before = _snapshot(product, PRODUCT_FIELDS)
        for field, value in (
            ("name", name),
            ("risk_class", risk_class),
            ("intended_use", intended_use),
        ):
            if value is not None:
                setattr(product, field, value)
        after = _snapshot(product, PRODUCT_FIELDS)
        if before == after:
            return product
        _full_clean(product)
        as_actor(product, actor).save()
        audit_changes(
            actor=actor,
            verb="product.updated",
            obj=product,
            product_id=product.pk,
            before=before,
            after=after,
        )
    return product


def require_writable(product: Product) -> None:
    """A retired product is read-only: its history stays, nothing about it changes."""
    if product.stage == Stage.RETIRED:
        raise Conflict(
            "retired",
            f"{product.slug} is retired: it is read-only.",
            {"product": ["Retired products are read-only."]},
        )


def require_stage_request(*, actor: User, product: Product, to_stage: str) -> None:
    """A stage is not a field to set: refuse, saying how a product moves (a signed request
    through the stage gate), after the checks a direct move would have made."""
    _require_perm(actor, "change", product)
    allowed = STAGE_TRANSITIONS[product.stage]
    if to_stage not in allowed:
        raise Conflict(
            "invalid_transition",
            f"A product in {product.stage} cannot move to {to_stage}; allowed: "
            + (", ".join(allowed) if allowed else "none (retired is final)")
            + ".",
            {"stage": [f"{product.stage} → {to_stage} is not allowed."]},
        )
    raise Conflict(
        "gate_required",
        f"A product moves to {to_stage} through its stage gate: request the move with "
        "POST /api/v1/lifecycle-requests/ {product, to_stage}; someone else signs it once its "
        "entry criteria are met.",
        {"stage": ["Request the move; it is a signed decision."]},
    )


def product_transition(
    *, actor: User | None, product: Product, to_stage: str, signed: dict | None = None
) -> Product:
    """Move a product along its lifecycle, only by the moves STAGE_TRANSITIONS allows.

    People move products through the lifecycle app's signed requests (stage gates), which pass
    the signature as ``signed`` (request id, signer, role) and have checked who may sign; the
    permission check here is for direct callers (the demo seed, tests)."""
    if to_stage not in Stage.values:
        raise ApplicationError(
            "invalid", f"Unknown stage {to_stage!r}.", {"stage": [f"One of {Stage.values}."]}
        )
    with transaction.atomic():
        product = Product.objects.select_for_update().get(pk=product.pk)
        if signed is None:
            _require_perm(actor, "change", product)
        current = product.stage
        if to_stage == current:
            return product
        allowed = STAGE_TRANSITIONS[current]
        if to_stage not in allowed:
            raise Conflict(
                "invalid_transition",
                f"A product in {current} cannot move to {to_stage}; allowed: "
                + (", ".join(allowed) if allowed else "none (retired is final)")
                + ".",
                {"stage": [f"{current} → {to_stage} is not allowed."]},
            )
        product.stage = to_stage
        as_actor(product, actor).save()
        audit_record(
            actor=actor,
            verb="product.stage_changed",
            obj=product,
            product_id=product.pk,
            before={"stage": current},
            after={"stage": to_stage, **({"signed": signed} if signed else {})},
        )
    return product


# --- Artifacts ------------------------------------------------------------------------------

ARTIFACTS: dict[str, type[models.Model]] = {
    "model": Model,
    "dataset": Dataset,
    "prompt": PromptTemplate,
}


def artifact_create(
    *,
    actor: User,
    kind: type[Model] | type[Dataset] | type[PromptTemplate],
    slug: str,
    name: str,
    owner_team: Team,
    description: str = "",
):
    _require_author(actor, owner_team)
    with transaction.atomic():
        artifact = as_actor(
            kind(
                slug=slug,
                name=name,
                owner_team=owner_team,
                description=description,
                created_by=actor,
            ),
            actor,
        )
        _full_clean(artifact)
        _insert_unique(artifact, str(kind._meta.verbose_name))
        audit_record(
            actor=actor,
            verb=f"{kind.audit_noun}.created",
            obj=artifact,
            after=_snapshot(artifact, ARTIFACT_FIELDS),
        )
        _grant_team(actor=actor, obj=artifact, team=owner_team)
    return artifact


def artifact_update(
    *, actor: User, artifact, name: str | None = None, description: str | None = None
):
    with transaction.atomic():
        artifact = type(artifact).objects.select_for_update().get(pk=artifact.pk)
        _require_perm(actor, "change", artifact)
        before = _snapshot(artifact, ARTIFACT_FIELDS)
        if name is not None:
            artifact.name = name
        if description is not None:
            artifact.description = description
        after = _snapshot(artifact, ARTIFACT_FIELDS)
        if before == after:
            return artifact
        _full_clean(artifact)
        as_actor(artifact, actor).save()
        audit_changes(
            actor=actor,
            verb=f"{artifact.audit_noun}.updated",
            obj=artifact,
            before=before,
            after=after,
        )
    return artifact


# --- Versions -------------------------------------------------------------------------------


def _next_version(parent_model: type[models.Model], parent, related: str) -> tuple[Any, int]:
    """Lock the artifact row so version numbers are assigned one at a time."""
    locked = parent_model.objects.select_for_update().get(pk=parent.pk)
    last = getattr(locked, related).order_by("-version").values_list("version", flat=True).first()
    return locked, (last or 0) + 1


def _save_version(*, actor: User, version: Version, content: dict, parent) -> Version:
    version.content_hash = content_hash(content)
    version.created_by = actor
    latest = type(version).objects.filter(**{version.PARENT: parent}).order_by("-version").first()
    if latest is not None and latest.content_hash == version.content_hash:
        raise Conflict(
            "unchanged",
            f"This is the same content as {latest}; a new version needs a change.",
        )
    exclude = ["content_hash", "version"]
    version.full_clean(exclude=exclude, validate_unique=False)
    as_actor(version, actor).save(force_insert=True)
    return version


def prompt_version_create(
    *,
    actor: User,
    prompt: PromptTemplate,
    messages: Any,
    variables_schema: Any = None,
    parameters: Any = None,
    changelog: str = "",
) -> PromptTemplateVersion:
    messages = prompting.validate_messages(messages)
    variables_schema = prompting.validate_variables_schema(variables_schema, messages)
    parameters = _validate_parameters(parameters)
    with transaction.atomic():
        prompt, number = _next_version(PromptTemplate, prompt, "versions")
        _require_perm(actor, "change", prompt)
        version = PromptTemplateVersion(
            prompt=prompt,
            version=number,
            messages=messages,
            variables_schema=variables_schema,
            parameters=parameters,
            changelog=changelog,
        )
        _save_version(actor=actor, version=version, content=version.content(), parent=prompt)
        audit_record(
            actor=actor,
            verb="prompt_version.created",
            obj=version,
            after={"prompt": prompt.slug, "version": number, "content_hash": version.content_hash},
        )
    return version


MAX_PARAMETERS_BYTES = 20_000


def _validate_parameters(parameters: Any, field: str = "parameters") -> dict:
    if parameters in (None, ""):
        return {}
    if not isinstance(parameters, dict):
        raise ApplicationError(
            "invalid", f"{field} must be a JSON object.", {field: ["Not an object."]}
        )
    if len(json.dumps(parameters)) > MAX_PARAMETERS_BYTES:
        raise ApplicationError("invalid", f"{field} is too large.", {field: ["Too large."]})
    return parameters


def _same_team(artifact, other, field: str) -> None:
    if other is not None and other.owner_team_id != artifact.owner_team_id:
        raise ApplicationError(
            "invalid",
            f"{field} must belong to team {artifact.owner_team.slug}.",
            {field: ["Belongs to another team."]},
        )


def model_version_create(
    *,
    actor: User,
    model: Model,
    provider: str,
    provider_model: str,
    parameters: Any = None,
    base_model: str = "",
    base_version: ModelVersion | None = None,
    training_datasets: list[DatasetVersion] | None = None,
    finetuning_datasets: list[DatasetVersion] | None = None,
    model_card: Any = None,
    changelog: str = "",
) -> ModelVersion:
    parameters = _validate_parameters(parameters)
    model_card = _validate_parameters(model_card, "model_card")
    if not (provider or "").strip() or not (provider_model or "").strip():
        raise ApplicationError(
            "invalid",
            "provider and provider_model are required.",
            {
                k: ["Required."]
                for k, v in (("provider", provider), ("provider_model", provider_model))
                if not (v or "").strip()
            },
        )
    links = [(LineagePurpose.TRAINING, d) for d in training_datasets or []] + [
        (LineagePurpose.FINETUNING, d) for d in finetuning_datasets or []
    ]
    with transaction.atomic():
        model, number = _next_version(Model, model, "versions")
        _require_perm(actor, "change", model)
        for _, dv in links:
            if not actor.has_perm(perm_name(Dataset, "view"), dv.dataset):
                raise ApplicationError(
                    "invalid", f"Unknown dataset version {dv.pk}.", {"datasets": ["Not found."]}
                )
        if base_version is not None and not actor.has_perm(
            perm_name(Model, "view"), base_version.model
        ):
            raise ApplicationError(
                "invalid", "Unknown base version.", {"base_version": ["Not found."]}
            )
        version = ModelVersion(
            model=model,
            version=number,
            provider=provider.strip(),
            provider_model=provider_model.strip(),
            parameters=parameters,
            base_model=base_model,
            base_version=base_version,
            model_card=model_card,
            changelog=changelog,
        )
        lineage = [
            ModelVersionDataset(model_version=version, dataset_version=dv, purpose=purpose)
            for purpose, dv in dict.fromkeys(links)
        ]
        _save_version(actor=actor, version=version, content=version.content(lineage), parent=model)
        for link in lineage:
            as_actor(link, actor).save()
        audit_record(
            actor=actor,
            verb="model_version.created",
            obj=version,
            after={
                "model": model.slug,
                "version": number,
                "content_hash": version.content_hash,
                "datasets": [[p, str(d.pk)] for p, d in dict.fromkeys(links)],
            },
        )
    return version


EXTENSIONS = {
    ".jsonl": DatasetFormat.JSONL,
    ".ndjson": DatasetFormat.JSONL,
    ".csv": DatasetFormat.CSV,
}


def dataset_version_create(
    *,
    actor: User,
    dataset: Dataset,
    file: UploadedFile | None = None,
    uri: str = "",
    format: str | None = None,
    sha256: str = "",
    row_count: int | None = None,
    source: str = "",
    licence: str = "",
    pii_class: str = PIIClass.NONE,
    retention_until: date | None = None,
    parent: DatasetVersion | None = None,
    changelog: str = "",
) -> DatasetVersion:
    """Register a dataset version from an uploaded JSONL/CSV file (profiled here) or a URI."""
    if file is None and not uri:
        raise ApplicationError(
            "invalid", "Upload a file or give a uri.", {"file": ["Upload a file or give a uri."]}
        )
    profile = None
    if file is not None:
        if file.size is not None and file.size > settings.DATASET_MAX_BYTES:
            raise ApplicationError(
                "too_large",
                f"The file is larger than {settings.DATASET_MAX_BYTES} bytes.",
                {"file": ["Too large."]},
            )
        if not format:
            name = (file.name or "").lower()
            format = next((f for ext, f in EXTENSIONS.items() if name.endswith(ext)), None)
            if format is None:
                raise ApplicationError(
                    "invalid",
                    "Only .jsonl and .csv files can be profiled; say the format.",
                    {"format": ["Give jsonl or csv."]},
                )
        if format not in DatasetFormat.values:
            raise ApplicationError(
                "invalid",
                f"Unknown format {format!r}.",
                {"format": [f"One of {DatasetFormat.values}."]},
            )
        profile = profile_dataset(file, format)
        sha256, row_count = profile.sha256, profile.row_count
    elif sha256 and (len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256)):
        raise ApplicationError(
            "invalid", "sha256 must be 64 lowercase hex digits.", {"sha256": ["Not a sha256."]}
        )
    with transaction.atomic():
        dataset, number = _next_version(Dataset, dataset, "versions")
        _require_perm(actor, "change", dataset)
        if parent is not None and parent.dataset_id != dataset.pk:
            raise ApplicationError(
                "invalid",
                "The parent must be a version of the same dataset.",
                {"parent": ["Another dataset's version."]},
            )
        version = DatasetVersion(
            dataset=dataset,
            version=number,
            uri=uri,
            format=format or DatasetFormat.OTHER,
            sha256=sha256,
            row_count=row_count,
            source=source,
            licence=licence,
            pii_class=pii_class,
            retention_until=retention_until,
            parent=parent,
            changelog=changelog,
            size_bytes=profile.size_bytes if profile else None,
            schema=profile.schema if profile else {},
        )
        if file is not None:
            version.file.save("upload", file, save=False)
        _save_version(actor=actor, version=version, content=version.content(), parent=dataset)
        audit_record(
            actor=actor,
            verb="dataset_version.created",
            obj=version,
            after={
                "dataset": dataset.slug,
                "version": number,
                "sha256": sha256,
                "row_count": row_count,
                "content_hash": version.content_hash,
            },
        )
    return version


def _artifact_of(version: Version):
    return getattr(version, version.PARENT)


def version_deprecate(*, actor: User, version: Version, reason: str = "") -> Version:
    with transaction.atomic():
        version = type(version).objects.select_for_update().get(pk=version.pk)
        _require_perm(actor, "change", _artifact_of(version))
        if version.deprecated_at:
            raise Conflict("already_deprecated", f"{version} is already deprecated.")
        version.deprecated_at = timezone.now()
        version.deprecated_by = actor
        version.deprecation_reason = reason
        as_actor(version, actor).save()
        audit_record(
            actor=actor,
            verb=f"{version.audit_noun}.deprecated",
            obj=version,
            before={"deprecated_at": None},
            after={"deprecated_at": version.deprecated_at, "reason": reason},
        )
    return version


def version_references(version: Version) -> list[str]:
    """What refers to ``version`` (lineage, children, and later releases): any relation at all."""
    found = []
    for rel in version._meta.related_objects:
        if rel.related_model._meta.label_lower.startswith("catalog.historical"):
            continue
        if rel.get_accessor_name() in version.OWNED_RELATIONS:
            continue
        if rel.many_to_many:
            exists = getattr(version, rel.get_accessor_name()).exists()
        else:
            exists = rel.related_model._base_manager.filter(**{rel.field.name: version}).exists()
        if exists:
            found.append(str(rel.related_model._meta.verbose_name_plural))
    return found


def version_delete(*, actor: User, version: Version) -> None:
    with transaction.atomic():
        version = type(version).objects.select_for_update().get(pk=version.pk)
        _require_perm(actor, "change", _artifact_of(version))
        refs = version_references(version)
        if refs:
            raise Conflict(
                "referenced",
                f"{version} is referenced by {', '.join(refs)} and cannot be deleted; "
                "deprecate it instead.",
            )
        audit_record(
            actor=actor,
            verb=f"{version.audit_noun}.deleted",
            obj=version,
            before={"content_hash": version.content_hash},
        )
        for accessor in version.OWNED_RELATIONS:
            for part in getattr(version, accessor).all():
                as_actor(part, actor).delete()
        stored_file = getattr(version, "file", None)
        as_actor(version, actor).delete()
        if stored_file:
            storage, name = stored_file.storage, stored_file.name
            transaction.on_commit(lambda: storage.delete(name), robust=True)
