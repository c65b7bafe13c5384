"""Forms of the playground and batch pages. They parse input; the rules live in the services.

``VariablesForm`` is generated from a prompt version's ``variables_schema`` (JSON Schema): one
field per declared property, in the schema's order.

| schema                                   | field                                       |
| ---------------------------------------- | ------------------------------------------- |
| ``enum`` (any type)                      | a select of the values                      |
| ``string`` with ``maxLength`` ≤ 200      | a text input                                |
| ``string`` otherwise                     | a textarea                                  |
| ``integer``                              | a number input (``minimum``/``maximum``)    |
| ``number``                               | a number input (``step="any"``)             |
| ``boolean``                              | a checkbox (a yes/no select in a batch)     |
| anything else (array, object, no type)   | a textarea taking JSON                      |

A property in ``required`` is a required field (marked ``*``); its ``title`` is the label (else
the name), its ``description`` the help text, its ``default`` the initial value. An optional
field left empty is not sent, so the template's ``default`` filter applies. For a batch
(``for_batch=True``) every field is optional: its value is used for the rows that have none.
"""

import json
from typing import Any

from django import forms

from apps.catalog.models import DatasetFormat

from .models import DEFAULT_CONCURRENCY, MAX_CONCURRENCY, MIN_CONCURRENCY

VARIABLES_PREFIX = "var"
TEXT_INPUT_MAX = 200


def _kind(prop: dict) -> str | None:
    kind = prop.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    return kind if isinstance(kind, str) else None


def _enum_field(prop: dict, common: dict) -> forms.Field:
    values = prop["enum"]
    keys = {}
    for value in values:
        key = value if isinstance(value, str) else json.dumps(value)
        keys[key] = value
    choices = [(key, key) for key in keys]
    if not common["required"]:
        choices = [("", "—"), *choices]
    return forms.TypedChoiceField(
        choices=choices, coerce=lambda key: keys[key], empty_value=None, **common
    )


def field_for(prop: Any, *, required: bool, for_batch: bool) -> forms.Field:
    """The form field of one schema property."""
    prop = prop if isinstance(prop, dict) else {}
    kind = _kind(prop)
    common: dict[str, Any] = {
        "required": required,
        "help_text": str(prop.get("description") or ""),
    }
    if prop.get("default") is not None:
        common["initial"] = prop["default"]
    if isinstance(prop.get("enum"), list) and prop["enum"]:
        return _enum_field(prop, common)
    if kind == "string":
        max_length = prop.get("maxLength")
        bounded = isinstance(max_length, int) and max_length <= TEXT_INPUT_MAX
        widget = forms.TextInput() if bounded else forms.Textarea(attrs={"rows": 3})
        return forms.CharField(
            widget=widget,
            max_length=max_length if isinstance(max_length, int) else None,
            min_length=prop.get("minLength") if isinstance(prop.get("minLength"), int) else None,
            strip=False,
            **common,
        )
    if kind in ("integer", "number"):
        bounds = {
            "min_value": prop.get("minimum"),
            "max_value": prop.get("maximum"),
        }
        bounds = {k: v for k, v in bounds.items() if isinstance(v, int | float)}
        if kind == "integer":
            return forms.IntegerField(**bounds, **common)
        return forms.FloatField(widget=forms.NumberInput(attrs={"step": "any"}), **bounds, **common)
    if kind == "boolean":
        if for_batch:
            widget = forms.NullBooleanSelect()
            widget.choices = [("unknown", "— (from each row)"), ("true", "Yes"), ("false", "No")]
            return forms.NullBooleanField(widget=widget, **{**common, "required": False})
        return forms.BooleanField(**{**common, "required": False})
    help_text = common.pop("help_text")
    return forms.JSONField(
        widget=forms.Textarea(attrs={"rows": 3, "class": "mono"}),
        help_text=(help_text + " " if help_text else "") + "JSON.",
        **common,
    )


class VariablesForm(forms.Form):
    """The variables of a prompt version, one field per property of its schema."""

    def __init__(self, *args, schema: dict | None, for_batch: bool = False, **kwargs):
        kwargs.setdefault("prefix", VARIABLES_PREFIX)
        super().__init__(*args, **kwargs)
        schema = schema if isinstance(schema, dict) else {}
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        required = set(schema.get("required") or []) if not for_batch else set()
        self.for_batch = for_batch
        self.kinds: dict[str, str | None] = {}
        for name, prop in properties.items():
            field = field_for(prop, required=name in required, for_batch=for_batch)
            field.label = str((prop or {}).get("title") or name) if isinstance(prop, dict) else name
            self.fields[name] = field
            self.kinds[name] = _kind(prop) if isinstance(prop, dict) else None

    def variables(self) -> dict:
        """The cleaned values to send: empty optional fields are left out."""
        out = {}
        for name, field in self.fields.items():
            value = self.cleaned_data.get(name)
            if isinstance(field, forms.BooleanField) and not isinstance(
                field, forms.NullBooleanField
            ):
                out[name] = bool(value)  # an unticked box is a "no", not a missing value
                continue
            if value is None or (value == "" and not field.required):
                continue
            out[name] = value
        return out

    def show_errors(self, extra: dict) -> bool:
        """Put a service's per-variable messages (``variables.<name>``) on their fields; True
        when at least one found its field."""
        placed = False
        for key, messages in extra.items():
            name = key.removeprefix("variables.").split(".", 1)[0]
            if key.startswith("variables.") and name in self.fields:
                for message in messages if isinstance(messages, list) else [messages]:
                    self.add_error(name, str(message))
                placed = True
        return placed


class ReleaseChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        return f"{obj.product.slug} {obj.version} ({obj.status})"


class PromptVersionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        return f"{obj.prompt.slug} v{obj.version}" + (" (deprecated)" if obj.deprecated_at else "")


class ModelVersionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        return f"{obj.model.slug} v{obj.version} · {obj.provider}/{obj.provider_model}"


class DatasetVersionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        rows = f"{obj.row_count:,} rows" if obj.row_count is not None else "rows unknown"
        return f"{obj.dataset.slug} v{obj.version} · {obj.format}, {rows}"


class TargetForm(forms.Form):
    """A release, or a prompt version and a model version."""

    release = ReleaseChoiceField(
        queryset=None,
        required=False,
        empty_label="— or pick a prompt version and a model version —",
        help_text="Its prompt, model, fallbacks and settings, as a subscriber would call it.",
    )
    prompt_version = PromptVersionChoiceField(
        queryset=None, required=False, label="Prompt version", empty_label="—"
    )
    model_version = ModelVersionChoiceField(
        queryset=None, required=False, label="Model version", empty_label="—"
    )

    def __init__(
        self, *args, releases, prompt_versions, model_versions, variables_url="", **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.fields["release"].queryset = releases
        self.fields["prompt_version"].queryset = prompt_versions
        self.fields["model_version"].queryset = model_versions
        for name in ("release", "prompt_version"):
            attrs = self.fields[name].widget.attrs
            attrs["data-target-field"] = name
            if variables_url:
                # Picking a release or a prompt version swaps in its variables form (htmx).
                attrs.update(
                    {
                        "hx-get": variables_url,
                        "hx-target": "#variables",
                        "hx-trigger": "change",
                        "hx-include": "[data-target-field]",
                        "hx-sync": "closest form:replace",
                    }
                )

    def clean(self):
        data = super().clean()
        release = data.get("release")
        pv, mv = data.get("prompt_version"), data.get("model_version")
        if self.errors:
            return data
        if release and (pv or mv):
            raise forms.ValidationError(
                "Pick a release, or a prompt version and a model version, not both."
            )
        if not release:
            if not pv:
                self.add_error("prompt_version", "Pick a prompt version (or a release above).")
            if not mv:
                self.add_error("model_version", "Pick a model version (or a release above).")
        return data

    def target(self) -> dict:
        data = self.cleaned_data
        if data.get("release"):
            return {"release": data["release"]}
        return {"prompt_version": data["prompt_version"], "model_version": data["model_version"]}


class BatchForm(forms.Form):
    dataset_version = DatasetVersionChoiceField(
        queryset=None,
        label="Dataset version",
        empty_label="—",
        help_text="A JSONL or CSV file stored in the portal; one row is one set of variables.",
    )
    concurrency = forms.IntegerField(
        min_value=MIN_CONCURRENCY,
        max_value=MAX_CONCURRENCY,
        initial=DEFAULT_CONCURRENCY,
        help_text=f"Calls in flight at once ({MIN_CONCURRENCY} to {MAX_CONCURRENCY}): what the "
        "provider is asked to bear.",
    )

    def __init__(self, *args, dataset_versions, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["dataset_version"].queryset = dataset_versions.filter(
            format__in=(DatasetFormat.JSONL, DatasetFormat.CSV)
        ).exclude(file="")
