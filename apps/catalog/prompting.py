"""Prompt templates: chat messages with ``{{ variables }}``, rendered in a Jinja2 sandbox."""

import difflib
import functools
import json
from typing import Any

import jsonschema
from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from apps.core.exceptions import ApplicationError

ROLES = ("system", "user", "assistant", "developer", "tool")
MAX_MESSAGES = 100
MAX_CONTENT = 100_000

_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


@functools.lru_cache(maxsize=1024)
def _template(source: str):
    """The compiled template of ``source`` (compiling costs ~0.5 ms; versions never change)."""
    return _env.from_string(source)


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"type": "object", **json.loads(schema_json)})


def validate_messages(messages: Any) -> list[dict]:
    """Check the shape of ``messages`` and that every template parses; returns them cleaned."""
    if not isinstance(messages, list) or not messages:
        raise ApplicationError(
            "invalid",
            "messages must be a non-empty list of {role, content}.",
            {"messages": ["Give at least one message."]},
        )
    if len(messages) > MAX_MESSAGES:
        raise ApplicationError(
            "invalid", f"At most {MAX_MESSAGES} messages.", {"messages": ["Too many."]}
        )
    cleaned = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise ApplicationError(
                "invalid",
                f"{where} must be an object with role and content.",
                {where: ["Not an object."]},
            )
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise ApplicationError(
                "invalid",
                f"{where}.role must be one of {', '.join(ROLES)}.",
                {f"{where}.role": [f"Unknown role {role!r}."]},
            )
        if not isinstance(content, str) or not content.strip():
            raise ApplicationError(
                "invalid",
                f"{where}.content must be non-empty text.",
                {f"{where}.content": ["Required."]},
            )
        if len(content) > MAX_CONTENT:
            raise ApplicationError(
                "invalid",
                f"{where}.content is longer than {MAX_CONTENT} characters.",
                {f"{where}.content": ["Too long."]},
            )
        try:
            _env.parse(content)
        except TemplateSyntaxError as exc:
            raise ApplicationError(
                "template_syntax",
                f"{where}.content line {exc.lineno}: {exc.message}",
                {f"{where}.content": [f"line {exc.lineno}: {exc.message}"]},
            ) from None
        cleaned.append({"role": role, "content": content})
    return cleaned


def template_variables(messages: list[dict]) -> set[str]:
    names: set[str] = set()
    for message in messages:
        names |= meta.find_undeclared_variables(_env.parse(message["content"]))
    return names


def validate_variables_schema(schema: Any, messages: list[dict]) -> dict:
    if schema in (None, ""):
        schema = {}
    if not isinstance(schema, dict):
        raise ApplicationError(
            "invalid",
            "variables_schema must be a JSON Schema object.",
            {"variables_schema": ["Not an object."]},
        )
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ApplicationError(
            "invalid",
            f"variables_schema is not a valid JSON Schema: {exc.message}",
            {"variables_schema": [exc.message]},
        ) from None
    used = template_variables(messages)
    declared = set((schema.get("properties") or {}).keys())
    undeclared = sorted(used - declared)
    if undeclared:
        raise ApplicationError(
            "invalid",
            "The template uses variables the schema does not declare: "
            + ", ".join(undeclared)
            + ". Add them to variables_schema.properties.",
            {"variables_schema": [f"Undeclared: {', '.join(undeclared)}."]},
        )
    return schema


def render_messages(messages: list[dict], variables_schema: dict, variables: Any) -> list[dict]:
    """Render every message with ``variables``; a missing or wrong variable is a clear 400."""
    if variables is None:
        variables = {}
    if not isinstance(variables, dict):
        raise ApplicationError(
            "invalid_variables", "variables must be an object.", {"variables": ["Not an object."]}
        )
    validator = _validator(json.dumps(variables_schema or {}, sort_keys=True))
    errors = sorted(validator.iter_errors(variables), key=lambda e: list(e.path))
    if errors:
        fields = {}
        for err in errors:
            path = ".".join(str(p) for p in err.path) or "variables"
            fields.setdefault(f"variables.{path}" if err.path else "variables", []).append(
                err.message
            )
        first = errors[0]
        raise ApplicationError(
            "invalid_variables",
            f"Variables do not match the template's schema: {first.message}",
            fields,
        )
    rendered = []
    for i, message in enumerate(messages):
        try:
            content = _template(message["content"]).render(**variables)
        except UndefinedError as exc:
            raise ApplicationError(
                "invalid_variables",
                f"messages[{i}]: {exc.message}",
                {"variables": [str(exc.message)]},
            ) from None
        except SecurityError as exc:
            raise ApplicationError(
                "template_security",
                f"messages[{i}]: the sandbox refused: {exc}",
            ) from None
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise ApplicationError(
                "render_failed", f"messages[{i}] could not be rendered: {exc}"
            ) from None
        rendered.append({"role": message["role"], "content": content})
    return rendered


def messages_as_text(messages: list[dict]) -> list[str]:
    lines: list[str] = []
    for message in messages:
        lines.append(f"[{message['role']}]")
        lines.extend(str(message["content"]).splitlines() or [""])
    return lines


def line_diff(old: list[dict], new: list[dict], old_label: str, new_label: str) -> list[dict]:
    """A unified line diff of two message lists: ``[{"op": " "|"+"|"-"|"@", "text"}]``."""
    rows = []
    for line in difflib.unified_diff(
        messages_as_text(old), messages_as_text(new), old_label, new_label, lineterm="", n=3
    ):
        if line.startswith(("---", "+++")):
            continue
        op = line[:1] if line[:1] in "+-@" else " "
        rows.append({"op": op, "text": line[1:] if op != "@" else line})
    return rows
