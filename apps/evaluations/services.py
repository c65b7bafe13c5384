"""Every write to evaluation suites and their versions.

Each service is one transaction that checks the actor may write (product managers and admins of
the suite's team, superusers: ``selectors.can_change_suite``), validates, writes, keeps history
and appends one audit event per object written.

Versions are immutable, like the catalog's: editing the cases, importing more from a dataset
version, makes a new version holding the full list of cases. The content hash is the sha256 of
``EvalSuiteVersion.content()`` (the cases in order and the source dataset version's hash); a new
version with the same content as the latest is refused (409 ``unchanged``).

A case is ``{key, variables, expected, assertions, group, vary}``:

- ``key`` names it uniquely within the version (letters, digits, ``_ . : / @ -``, at most 100
  characters); a case without one gets ``case-<position>`` (1-based, the next free one);
- ``variables`` is a JSON object (the prompt's variables), ``expected`` a text (may be empty);
- ``assertions`` a list checked by ``assertions.validate_assertions``; an ``equals`` or a
  ``similarity`` without a ``value`` compares with ``expected``, which must then be given; the
  ``model_version`` of an ``llm_judge`` or of a semantic ``similarity`` must be a model
  version of the suite's team, and for embeddings run on an OpenAI-compatible provider (the
  built-in and Anthropic providers have no embeddings endpoint: refused here, at save time);
- ``group`` and ``vary``: cases of one group vary one variable (``vary``, the same for the whole
  group, present in each case's variables) with the same expectation.

A mistake is an ``ApplicationError`` naming the case: ``cases[3].assertions[0].pattern`` (or
``line 7`` for a row of an imported dataset).
"""

import io
import json
import re
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.models import Team, User
from apps.audit.services import audit_changes, audit_record
from apps.catalog.models import DatasetFormat, DatasetVersion, ModelVersion
from apps.core.exceptions import ApplicationError, Conflict, Forbidden
from apps.core.hashing import content_hash
from apps.core.history import as_actor
from apps.core.models import UNSET
from apps.gateway.embeddings import supports_embeddings
from apps.gateway.models import Provider

from . import selectors
from .assertions import USES_EXPECTED, validate_assertions
from .models import EvalCase, EvalSuite, EvalSuiteVersion
from .templates_builtin import TEMPLATES

MAX_CASES = 5_000
MAX_KEY = 100
MAX_LABEL = 100  # group and vary
MAX_EXPECTED = 100_000
MAX_VARIABLES_BYTES = 50_000
MAX_CHANGELOG = 20_000
MAX_SECRET_PHRASES = 50
KEY_PATTERN = re.compile(r"^[\w][\w.:/@-]*$")
CASE_FIELDS = ("key", "variables", "expected", "assertions", "group", "vary")
IGNORED_CASE_FIELDS = ("id", "position")  # what a client echoing a read sends back
SUITE_FIELDS = ("slug", "name", "owner_team", "description")


# --- helpers --------------------------------------------------------------------------------


def _snapshot(suite: EvalSuite) -> dict[str, Any]:
    return {
        "slug": suite.slug,
        "name": suite.name,
        "owner_team": suite.owner_team.slug,
        "description": suite.description,
    }


def _require_author(actor: User, team: Team) -> None:
    if not selectors.can_author_for(actor, team):
        raise Forbidden(
            "forbidden",
            f"Only a product manager or admin of team {team.slug} can create its evaluation "
            "suites.",
        )


def _require_change(actor: User, suite: EvalSuite) -> None:
    if not selectors.can_change_suite(actor, suite):
        raise Forbidden(
            "forbidden",
            f"Only a product manager or admin of team {suite.owner_team.slug} can change the "
            f"evaluation suite {suite.slug}.",
        )


def _clean(obj, *, exclude: list[str] | None = None) -> None:
    """``full_clean`` with Django's refusals turned into the one domain error."""
    try:
        obj.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        fields = exc.message_dict if hasattr(exc, "error_dict") else {}
        first = next(iter(fields.items()), None)
        message = f"{first[0]}: {first[1][0]}" if first else "; ".join(exc.messages)
        raise ApplicationError("invalid", message, fields) from None


def _bad(label: str, sub: str, message: str) -> ApplicationError:
    name = f"{label}.{sub}" if sub else label
    return ApplicationError("invalid", f"{name}: {message}", {name: [message]})


def _no_nul(value: Any, label: str, sub: str) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise _bad(label, sub, "Text cannot contain NUL characters.")
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in str(key):
                raise _bad(label, sub, "Keys cannot contain NUL characters.")
            _no_nul(item, label, sub)
    elif isinstance(value, list):
        for item in value:
            _no_nul(item, label, sub)


def _text(value: Any, label: str, sub: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad(label, sub, "Must be text.")
    if len(value) > limit:
        raise _bad(label, sub, f"At most {limit:,} characters.")
    _no_nul(value, label, sub)
    return value


def _changelog(changelog: Any) -> str:
    return _text(changelog, "changelog", "", MAX_CHANGELOG)


# --- cases ----------------------------------------------------------------------------------


def _clean_case(raw: Any, label: str) -> dict:
    if not isinstance(raw, dict):
        raise _bad(label, "", "A case must be an object with variables, expected, assertions.")
    unknown = sorted(set(raw) - set(CASE_FIELDS) - set(IGNORED_CASE_FIELDS))
    if unknown:
        raise _bad(label, unknown[0], f"Unknown field; a case has {', '.join(CASE_FIELDS)}.")
    key = raw.get("key")
    if key is not None and not isinstance(key, str):
        raise _bad(label, "key", "Must be text.")
    key = (key or "").strip()
    if len(key) > MAX_KEY:
        raise _bad(label, "key", f"At most {MAX_KEY} characters.")
    if key and not KEY_PATTERN.match(key):
        raise _bad(
            label, "key", "Letters, digits and _ . : / @ - only, starting with a letter or digit."
        )
    variables = raw.get("variables")
    if variables is None:
        variables = {}
    if not isinstance(variables, dict):
        raise _bad(label, "variables", 'Must be a JSON object, such as {"question": "…"}.')
    _no_nul(variables, label, "variables")
    if len(json.dumps(variables, default=str)) > MAX_VARIABLES_BYTES:
        raise _bad(label, "variables", f"At most {MAX_VARIABLES_BYTES:,} bytes of JSON.")
    expected = _text(raw.get("expected"), label, "expected", MAX_EXPECTED)
    assertions = validate_assertions(raw.get("assertions"), where=f"{label}.assertions")
    for j, spec in enumerate(assertions):
        if spec["type"] in USES_EXPECTED and "value" not in spec and not expected.strip():
            raise _bad(
                label,
                f"assertions[{j}].value",
                f"{spec['type']} compares with the case's expected output, which is empty: give "
                "the expected output or a value.",
            )
    group = _text(raw.get("group"), label, "group", MAX_LABEL).strip()
    vary = _text(raw.get("vary"), label, "vary", MAX_LABEL).strip()
    if vary and not group:
        raise _bad(label, "group", f"A case that varies {vary!r} belongs to a group: name it.")
    if group and not vary:
        raise _bad(label, "vary", f"Name the variable the cases of group {group!r} vary.")
    if vary and vary not in variables:
        raise _bad(
            label, "variables", f"No variable {vary!r}, which the case's group {group!r} varies."
        )
    return {
        "key": key,
        "variables": variables,
        "expected": expected,
        "assertions": assertions,
        "group": group,
        "vary": vary,
    }


def _clean_cases(raw_cases: Any, labels: list[str] | None = None) -> list[dict]:
    """Every case checked and normalised, keys given to those without (``case-<n>``)."""
    if not isinstance(raw_cases, list):
        raise ApplicationError(
            "invalid", "cases must be a list of cases.", {"cases": ["Not a list."]}
        )
    if not raw_cases:
        raise ApplicationError(
            "invalid", "A suite version needs at least one case.", {"cases": ["Empty."]}
        )
    if len(raw_cases) > MAX_CASES:
        raise ApplicationError(
            "invalid",
            f"A suite version holds at most {MAX_CASES:,} cases.",
            {"cases": ["Too many."]},
        )
    labels = labels or [f"cases[{i}]" for i in range(len(raw_cases))]
    cases = [_clean_case(raw, labels[i]) for i, raw in enumerate(raw_cases)]
    seen: dict[str, int] = {}
    for i, case in enumerate(cases):
        if not case["key"]:
            continue
        if case["key"] in seen:
            other = labels[seen[case["key"]]]
            raise _bad(labels[i], "key", f"{case['key']!r} is already the key of {other}.")
        seen[case["key"]] = i
    for i, case in enumerate(cases):
        if not case["key"]:
            n = i + 1
            while f"case-{n}" in seen:
                n += 1
            case["key"] = f"case-{n}"
            seen[case["key"]] = i
    varies: dict[str, tuple[str, int]] = {}
    for i, case in enumerate(cases):
        if not case["group"]:
            continue
        first = varies.setdefault(case["group"], (case["vary"], i))
        if first[0] != case["vary"]:
            raise _bad(
                labels[i],
                "vary",
                f"Every case of group {case['group']!r} varies the same variable: "
                f"{first[0]!r} (as {labels[first[1]]} does), not {case['vary']!r}.",
            )
    return cases


def _model_version_refs(cases: list[dict]):
    for i, case in enumerate(cases):
        for j, spec in enumerate(case["assertions"]):
            if "model_version" in spec:
                yield i, j, spec


def _check_references(suite: EvalSuite, cases: list[dict], labels: list[str]) -> None:
    """Judge and embedding model versions: the suite's team's; embeddings need an endpoint."""
    refs = list(_model_version_refs(cases))
    if not refs:
        return
    ids = {spec["model_version"] for _, _, spec in refs}
    versions = {
        str(mv.pk): mv
        for mv in ModelVersion.objects.select_related("model").filter(
            pk__in=ids, model__owner_team_id=suite.owner_team_id
        )
    }
    slugs = {mv.provider for mv in versions.values()}
    providers = {p.slug: p for p in Provider.objects.filter(slug__in=slugs)}
    for i, j, spec in refs:
        sub = f"assertions[{j}].model_version"
        mv = versions.get(spec["model_version"])
        if mv is None:
            raise _bad(
                labels[i],
                sub,
                f"No model version {spec['model_version']} in team {suite.owner_team.slug}.",
            )
        if spec["type"] == "similarity":
            provider = providers.get(mv.provider)
            if not supports_embeddings(provider):
                kind = provider.get_kind_display() if provider else "unknown"
                raise _bad(
                    labels[i],
                    sub,
                    f"{mv} runs on provider {mv.provider!r} ({kind}), which has no embeddings "
                    "endpoint: semantic similarity needs a model version on an "
                    "OpenAI-compatible provider. Use method lexical instead.",
                )


def _check_dataset_version(suite: EvalSuite, dataset_version: DatasetVersion | None) -> None:
    if dataset_version is not None and dataset_version.dataset.owner_team_id != suite.owner_team_id:
        raise ApplicationError(
            "invalid",
            f"The dataset version must belong to team {suite.owner_team.slug}.",
            {"source_dataset_version": ["Belongs to another team."]},
        )


# --- suites ---------------------------------------------------------------------------------


def suite_create(
    *, actor: User, owner_team: Team, slug: str, name: str, description: str = ""
) -> EvalSuite:
    _require_author(actor, owner_team)
    suite = EvalSuite(
        slug=slug,
        name=name,
        owner_team=owner_team,
        description=description or "",
        created_by=actor,
    )
    _clean(suite)
    with transaction.atomic():
        if EvalSuite.objects.filter(owner_team=owner_team, slug=slug).exists():
            raise Conflict(
                "duplicate",
                f"Team {owner_team.slug} already has an evaluation suite {slug!r}.",
                {"slug": ["Already used."]},
            )
        try:
            with transaction.atomic():
                as_actor(suite, actor).save(force_insert=True)
        except IntegrityError:
            raise Conflict(
                "duplicate",
                f"Team {owner_team.slug} already has an evaluation suite {slug!r}.",
                {"slug": ["Already used."]},
            ) from None
        audit_record(actor=actor, verb="eval_suite.created", obj=suite, after=_snapshot(suite))
    return suite


def suite_update(
    *, actor: User, suite: EvalSuite, name: str | None = None, description: str | None = None
) -> EvalSuite:
    """Change a suite's name or description (its slug and team are set on create)."""
    with transaction.atomic():
        suite = EvalSuite.objects.select_for_update().select_related("owner_team").get(pk=suite.pk)
        _require_change(actor, suite)
        before = _snapshot(suite)
        if name is not None:
            suite.name = name
        if description is not None:
            suite.description = description
        after = _snapshot(suite)
        if before == after:
            return suite
        _clean(suite)
        as_actor(suite, actor).save()
        audit_changes(actor=actor, verb="eval_suite.updated", obj=suite, before=before, after=after)
    return suite


# --- versions -------------------------------------------------------------------------------


def _lock_for_version(suite: EvalSuite) -> tuple[EvalSuite, int, EvalSuiteVersion | None]:
    """Lock the suite row so version numbers are assigned one at a time."""
    locked = EvalSuite.objects.select_for_update().select_related("owner_team").get(pk=suite.pk)
    latest = (
        EvalSuiteVersion.objects.select_related("source_dataset_version")
        .filter(suite=locked)
        .order_by("-version")
        .first()
    )
    return locked, (latest.version if latest else 0) + 1, latest


def _save_version(
    *,
    actor: User,
    suite: EvalSuite,
    number: int,
    latest: EvalSuiteVersion | None,
    cases: list[dict],
    changelog: str,
    source_dataset_version: DatasetVersion | None,
) -> EvalSuiteVersion:
    version = EvalSuiteVersion(
        suite=suite,
        version=number,
        changelog=changelog,
        source_dataset_version=source_dataset_version,
        created_by=actor,
    )
    objs = [EvalCase(suite_version=version, position=i, **case) for i, case in enumerate(cases)]
    version.content_hash = content_hash(version.content(objs))
    if latest is not None and latest.content_hash == version.content_hash:
        raise Conflict(
            "unchanged",
            f"This is the same content as {latest}; a new version needs a change.",
        )
    _clean(version, exclude=["content_hash", "version"])
    as_actor(version, actor).save(force_insert=True)
    EvalCase.objects.bulk_create(objs)
    return version


def _version_audit(version: EvalSuiteVersion, cases: list[dict], **extra) -> dict:
    return {
        "suite": version.suite.slug,
        "version": version.version,
        "content_hash": version.content_hash,
        "cases": len(cases),
        "source_dataset_version": (
            str(version.source_dataset_version_id) if version.source_dataset_version_id else None
        ),
        **extra,
    }


def suite_version_create(
    *,
    actor: User,
    suite: EvalSuite,
    cases: list[dict],
    changelog: str = "",
    source_dataset_version: DatasetVersion | None = UNSET,  # type: ignore[assignment]
) -> EvalSuiteVersion:
    """A new version of ``suite`` holding exactly ``cases``, in order.

    ``source_dataset_version`` is the dataset version the cases came from; left out, the new
    version keeps the latest version's (an edit of imported cases still comes from the
    dataset); ``None`` clears it."""
    _require_change(actor, suite)
    changelog = _changelog(changelog)
    cleaned = _clean_cases(cases)
    with transaction.atomic():
        suite, number, latest = _lock_for_version(suite)
        _require_change(actor, suite)
        _check_references(suite, cleaned, [f"cases[{i}]" for i in range(len(cleaned))])
        if source_dataset_version is UNSET:
            source_dataset_version = latest.source_dataset_version if latest else None
        _check_dataset_version(suite, source_dataset_version)
        version = _save_version(
            actor=actor,
            suite=suite,
            number=number,
            latest=latest,
            cases=cleaned,
            changelog=changelog,
            source_dataset_version=source_dataset_version,
        )
        audit_record(
            actor=actor,
            verb="eval_suite_version.created",
            obj=version,
            after=_version_audit(version, cleaned),
        )
    return version


def suite_version_deprecate(
    *, actor: User, version: EvalSuiteVersion, reason: str = ""
) -> EvalSuiteVersion:
    """Mark a version as one not to run any more; it stays readable, and so do its runs."""
    reason = _text(reason, "reason", "", MAX_CHANGELOG)
    with transaction.atomic():
        version = (
            EvalSuiteVersion.objects.select_for_update()
            .select_related("suite", "suite__owner_team")
            .get(pk=version.pk)
        )
        _require_change(actor, version.suite)
        if version.deprecated_at:
            raise Conflict("already_deprecated", f"{version} is already deprecated.")
        version.deprecated_at = timezone.now()
        version.deprecated_by = actor
        version.deprecation_reason = reason
        as_actor(version, actor).save()
        audit_record(
            actor=actor,
            verb="eval_suite_version.deprecated",
            obj=version,
            before={"deprecated_at": None},
            after={"deprecated_at": version.deprecated_at, "reason": reason},
        )
    return version


# --- import from a dataset version ----------------------------------------------------------


def _refuse_dataset(code: str, message: str) -> ApplicationError:
    return ApplicationError(code, message, {"dataset_version": [message]})


def _jsonl_rows(version: DatasetVersion, limit: int) -> list[tuple[int, dict]]:
    """(line number, object) for every non-blank line of a stored JSONL dataset version."""
    if not version.file:
        raise _refuse_dataset(
            "dataset_not_stored",
            f"{version} is a reference to {version.uri or 'an outside file'}, not a file stored "
            "in the portal: upload it as a new version to import its rows.",
        )
    if version.format != DatasetFormat.JSONL:
        raise _refuse_dataset(
            "dataset_format",
            f"{version} is a {version.format} file; cases are imported from JSONL (one JSON "
            "object per line).",
        )
    rows: list[tuple[int, dict]] = []
    try:
        with version.file.open("rb") as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            for lineno, line in enumerate(text, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise _refuse_dataset(
                        "malformed_dataset",
                        f"{version}, line {lineno}: not valid JSON ({exc.msg}).",
                    ) from None
                if not isinstance(row, dict):
                    raise _refuse_dataset(
                        "malformed_dataset", f"{version}, line {lineno}: not a JSON object."
                    )
                if len(rows) == limit:
                    raise _refuse_dataset(
                        "too_many_rows",
                        f"{version} has more rows than the {limit:,} cases the suite can still "
                        f"take (a version holds at most {MAX_CASES:,}).",
                    )
                rows.append((lineno, row))
    except FileNotFoundError:
        raise _refuse_dataset(
            "dataset_missing", f"The file of {version} is missing from the portal's storage."
        ) from None
    except UnicodeDecodeError:
        raise _refuse_dataset("malformed_dataset", f"The file of {version} is not UTF-8.") from None
    if not rows:
        raise _refuse_dataset("empty_dataset", f"{version} has no rows.")
    return rows


def _field_name(value: Any, name: str) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or len(value) > MAX_LABEL or "\x00" in value:
        raise ApplicationError(
            "invalid", f"{name} must be a field name.", {name: ["Not a field name."]}
        )
    return value


def _row_case(
    row: dict,
    lineno: int,
    *,
    variables_field: str | None,
    expected_field: str | None,
    assertions_field: str | None,
    key_field: str | None,
    default_assertions: list[dict],
    default_variables: dict,
) -> dict:
    label = f"line {lineno}"
    if variables_field:
        variables = row.get(variables_field, {})
        if not isinstance(variables, dict):
            raise _bad(label, variables_field, "Must be a JSON object of variables.")
    else:
        used = {expected_field, assertions_field, key_field, "group", "vary"}
        variables = {k: v for k, v in row.items() if k not in used}
    expected = row.get(expected_field, "") if expected_field else ""
    if expected is None:
        expected = ""
    elif not isinstance(expected, str):
        expected = json.dumps(expected, ensure_ascii=False, sort_keys=True)
    key = row.get(key_field) if key_field else None
    if key is not None and not isinstance(key, str):
        key = json.dumps(key) if not isinstance(key, int) else str(key)
    case = {
        "key": key,
        "variables": {**default_variables, **variables},
        "expected": expected,
        "assertions": (
            row[assertions_field]
            if assertions_field and assertions_field in row
            else [dict(a) for a in default_assertions]
        ),
    }
    for name in ("group", "vary"):
        if name in row:
            case[name] = row[name]
    return case


def suite_import_dataset(
    *,
    actor: User,
    suite: EvalSuite,
    dataset_version: DatasetVersion,
    variables_field: str | None = None,
    expected_field: str = "expected",
    assertions_field: str = "assertions",
    key_field: str | None = None,
    default_assertions: list[dict] | None = None,
    default_variables: dict | None = None,
    changelog: str = "",
) -> EvalSuiteVersion:
    """A new version: the latest version's cases, then one case per row of a JSONL dataset
    version (which the new version records as its source).

    A row's variables are the object in its ``variables_field`` or, without one, the row's other
    fields (all but the expected, assertions, key, ``group`` and ``vary`` fields), over
    ``default_variables``; its expected output is the ``expected_field`` (a non-text value as
    JSON); its assertions the ``assertions_field``, else ``default_assertions``; its key the
    ``key_field``, else ``case-<n>``; ``group`` and ``vary`` fields are read as such. A bad row is
    refused naming its line number."""
    _require_change(actor, suite)
    names = {
        "variables_field": _field_name(variables_field, "variables_field"),
        "expected_field": _field_name(expected_field, "expected_field"),
        "assertions_field": _field_name(assertions_field, "assertions_field"),
        "key_field": _field_name(key_field, "key_field"),
    }
    defaults = validate_assertions(default_assertions, where="default_assertions")
    if default_variables is None:
        default_variables = {}
    if not isinstance(default_variables, dict):
        raise ApplicationError(
            "invalid",
            "default_variables must be a JSON object.",
            {"default_variables": ["Not an object."]},
        )
    _no_nul(default_variables, "default_variables", "")
    changelog = _changelog(changelog)
    if dataset_version.dataset.owner_team_id != suite.owner_team_id:
        raise _refuse_dataset(
            "invalid", f"The dataset version must belong to team {suite.owner_team.slug}."
        )
    with transaction.atomic():
        suite, number, latest = _lock_for_version(suite)
        _require_change(actor, suite)
        existing = [case.content() for case in selectors.suite_case_list(latest)] if latest else []
        rows = _jsonl_rows(dataset_version, MAX_CASES - len(existing))
        imported = [
            _row_case(
                row,
                lineno,
                default_assertions=defaults,
                default_variables=default_variables,
                **names,
            )
            for lineno, row in rows
        ]
        labels = [f"cases[{i}]" for i in range(len(existing))] + [
            f"line {lineno}" for lineno, _ in rows
        ]
        try:
            cleaned = _clean_cases(existing + imported, labels)
            _check_references(suite, cleaned, labels)
        except ApplicationError as exc:
            raise ApplicationError(
                exc.code, f"{dataset_version}, {exc.message}", exc.extra
            ) from None
        version = _save_version(
            actor=actor,
            suite=suite,
            number=number,
            latest=latest,
            cases=cleaned,
            changelog=changelog or f"Imported {len(imported)} case(s) from {dataset_version}.",
            source_dataset_version=dataset_version,
        )
        audit_record(
            actor=actor,
            verb="eval_suite_version.created",
            obj=version,
            after=_version_audit(version, cleaned, imported=len(imported)),
        )
    return version


# --- built-in templates ---------------------------------------------------------------------


def suite_from_template(
    *,
    actor: User,
    owner_team: Team,
    template: str = "prompt_injection",
    slug: str | None = None,
    name: str | None = None,
    description: str | None = None,
    secret_phrases: list[str] | None = None,
    base_variables: dict | None = None,
) -> EvalSuiteVersion:
    """A new suite and its first version from a built-in template (``templates_builtin``).

    ``secret_phrases`` (distinctive phrases of your system prompt) are added to the template's
    ``must_not_contain`` assertions; ``base_variables`` to every case's variables (the other
    variables of your prompt, which the template's ``question`` does not fill)."""
    found = TEMPLATES.get(template)
    if found is None:
        raise ApplicationError(
            "invalid",
            f"Unknown template {template!r}; one of {', '.join(TEMPLATES)}.",
            {"template": ["Unknown template."]},
        )
    phrases = []
    for i, phrase in enumerate(secret_phrases or []):
        if not isinstance(phrase, str):
            raise _bad(f"secret_phrases[{i}]", "", "Must be text.")
        phrase = _text(phrase, f"secret_phrases[{i}]", "", 1000).strip()
        if phrase:
            phrases.append(phrase)
    if len(phrases) > MAX_SECRET_PHRASES:
        raise ApplicationError(
            "invalid",
            f"At most {MAX_SECRET_PHRASES} secret phrases.",
            {"secret_phrases": ["Too many."]},
        )
    if base_variables is not None and not isinstance(base_variables, dict):
        raise ApplicationError(
            "invalid",
            "base_variables must be a JSON object.",
            {"base_variables": ["Not an object."]},
        )
    cases = found.cases(secret_phrases=phrases, base_variables=base_variables)
    with transaction.atomic():
        suite = suite_create(
            actor=actor,
            owner_team=owner_team,
            slug=slug or found.slug,
            name=name or found.name,
            description=found.description if description is None else description,
        )
        return suite_version_create(
            actor=actor,
            suite=suite,
            cases=cases,
            changelog=f"From the built-in template {found.name!r}.",
            source_dataset_version=None,
        )
