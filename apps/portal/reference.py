"""The generated reference of a published API: its variables as a table, example values from
the JSON schema, and ready-to-paste calls (curl, the official ``openai`` client, invoke)."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

EXAMPLE_MESSAGES = [{"role": "user", "content": "Hello"}]


def _kind(spec: dict) -> str | None:
    kind = spec.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    return kind


def type_label(spec: Any) -> str:
    if not isinstance(spec, dict):
        return "any"
    if spec.get("enum"):
        return "one of " + ", ".join(json.dumps(v, ensure_ascii=False) for v in spec["enum"])
    kind = spec.get("type")
    if isinstance(kind, list):
        label = " or ".join(str(k) for k in kind)
    else:
        label = str(kind) if kind else "any"
    if kind == "array" and isinstance(spec.get("items"), dict):
        label = f"array of {type_label(spec['items'])}"
    if spec.get("format"):
        label += f" ({spec['format']})"
    return label


def example_value(name: str, spec: Any) -> Any:
    """A plausible value for a variable: the schema's own example, default, first enum value or
    const, else one made from its type."""
    if not isinstance(spec, dict):
        return f"example {name}"
    if "example" in spec:
        return spec["example"]
    if isinstance(spec.get("examples"), list) and spec["examples"]:
        return spec["examples"][0]
    if "default" in spec:
        return spec["default"]
    if spec.get("enum"):
        return spec["enum"][0]
    if "const" in spec:
        return spec["const"]
    kind = _kind(spec)
    if kind == "integer":
        return int(spec.get("minimum", 1))
    if kind == "number":
        return spec.get("minimum", 1.5)
    if kind == "boolean":
        return True
    if kind == "array":
        return [example_value(name, spec.get("items") or {"type": "string"})]
    if kind == "object":
        return example_variables(spec)
    return f"example {name.replace('_', ' ')}"


def example_variables(schema: Any) -> dict:
    properties = (schema or {}).get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return {}
    return {name: example_value(name, spec) for name, spec in properties.items()}


def reference_rows(schema: Any) -> list[dict]:
    if not isinstance(schema, dict):
        return []
    required = set(schema.get("required") or [])
    rows = []
    for name, spec in (schema.get("properties") or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        rows.append(
            {
                "name": name,
                "type": type_label(spec),
                "required": name in required,
                "description": spec.get("description") or spec.get("title") or "",
            }
        )
    return rows


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _py(value: Any, indent: int = 0) -> str:
    """``value`` as a Python literal, laid out like JSON (True/False/None, double quotes)."""
    pad = "    " * (indent + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{pad}{json.dumps(str(k))}: {_py(v, indent + 1)}," for k, v in value.items()]
        return "{\n" + "\n".join(items) + "\n" + "    " * indent + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        items = [f"{pad}{_py(v, indent + 1)}," for v in value]
        return "[\n" + "\n".join(items) + "\n" + "    " * indent + "]"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if value is None:
        return "None"
    return json.dumps(value, ensure_ascii=False)


def base_url() -> str:
    return str(getattr(settings, "PORTAL_PUBLIC_URL", "") or "http://127.0.0.1:8000").rstrip("/")


def examples(slug: str, variables: dict) -> dict[str, str]:
    base = base_url()
    chat_body = {"model": slug, "messages": EXAMPLE_MESSAGES, "variables": variables}
    body = json.dumps(chat_body, indent=2, ensure_ascii=False)
    curl = (
        f"curl {base}/v1/chat/completions \\\n"
        '  -H "Authorization: Bearer $PLM_API_KEY" \\\n'
        '  -H "Content-Type: application/json" \\\n'
        f"  -d {_shell_quote(body)}"
    )
    python = (
        "import os\n\n"
        "from openai import OpenAI\n\n"
        f'client = OpenAI(base_url="{base}/v1", api_key=os.environ["PLM_API_KEY"])\n'
        "response = client.chat.completions.create(\n"
        f"    model={json.dumps(slug)},\n"
        '    messages=[{"role": "user", "content": "Hello"}],\n'
        f'    extra_body={{"variables": {_py(variables, 1)}}},\n'
        ")\n"
        "print(response.choices[0].message.content)"
    )
    invoke_body = json.dumps({"variables": variables}, indent=2, ensure_ascii=False)
    invoke = (
        f"curl -X POST {base}/v1/apis/{slug}/invoke \\\n"
        '  -H "Authorization: Bearer $PLM_API_KEY" \\\n'
        '  -H "Content-Type: application/json" \\\n'
        f"  -d {_shell_quote(invoke_body)}"
    )
    return {"curl": curl, "python": python, "invoke": invoke, "base_url": base}
