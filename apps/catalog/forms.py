"""Forms for the catalog pages. They parse and shape input; the rules live in the services."""

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from apps.accounts.models import Team, User
from apps.accounts.selectors import author_team_list_for

from . import prompting
from .models import DatasetFormat, PIIClass, RiskClass, Stage


def author_teams(user: User):
    return author_team_list_for(user=user)


def _normalise_newlines(text: str) -> str:
    # Browsers submit textarea line breaks as CRLF; prompts are stored with plain LF.
    return text.replace("\r\n", "\n").replace("\r", "\n")


class JSONObjectField(forms.CharField):
    """A textarea holding a JSON object; a parse error names the line and column."""

    widget = forms.Textarea(attrs={"rows": 6, "class": "mono", "spellcheck": "false"})

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("strip", True)
        super().__init__(*args, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, dict | list):
            return json.dumps(value, indent=2, ensure_ascii=False)
        return value

    def to_python(self, value: Any) -> Any:
        text = super().to_python(value)
        if isinstance(text, dict):
            return text
        if not text:
            return {}
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                "Not valid JSON: %(msg)s (line %(line)s, column %(col)s).",
                code="invalid_json",
                params={"msg": exc.msg, "line": exc.lineno, "col": exc.colno},
            ) from None
        if not isinstance(parsed, dict):
            raise ValidationError("Must be a JSON object: {…}.", code="not_object")
        return parsed


class TeamChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Team) -> str:
        return f"{obj.name} ({obj.slug})" if obj.name and obj.name != obj.slug else obj.slug


class ProductForm(forms.Form):
    slug = forms.SlugField(max_length=64, help_text="Lower case, digits and dashes; unique.")
    name = forms.CharField(max_length=150)
    owner_team = TeamChoiceField(queryset=Team.objects.none(), label="Owner team")
    stage = forms.ChoiceField(choices=Stage.choices, initial=Stage.CONCEPT)
    risk_class = forms.ChoiceField(
        choices=RiskClass.choices, initial=RiskClass.MINIMAL, label="Risk class"
    )
    intended_use = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        required=False,
        label="Intended use",
        help_text="Who uses the product, for what, and what it must not be used for.",
    )

    def __init__(self, *args, user: User, **kwargs):
        super().__init__(*args, **kwargs)
        teams = author_teams(user)
        self.fields["owner_team"].queryset = teams
        if len(teams) == 1:
            self.fields["owner_team"].initial = teams[0].pk


class ArtifactForm(forms.Form):
    slug = forms.SlugField(max_length=64, help_text="Unique within the team.")
    name = forms.CharField(max_length=150)
    owner_team = TeamChoiceField(queryset=Team.objects.none(), label="Owner team")
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)

    def __init__(self, *args, user: User, **kwargs):
        super().__init__(*args, **kwargs)
        teams = author_teams(user)
        self.fields["owner_team"].queryset = teams
        if len(teams) == 1:
            self.fields["owner_team"].initial = teams[0].pk


# --- Prompt versions ---------------------------------------------------------------------------


class MessageForm(forms.Form):
    """One chat message of a prompt template; a row left empty is ignored."""

    role = forms.ChoiceField(choices=[(r, r) for r in prompting.ROLES], initial="user")
    content = forms.CharField(
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 4, "class": "mono", "spellcheck": "false"}),
    )

    def clean_content(self) -> str:
        return _normalise_newlines(self.cleaned_data.get("content") or "")


class BaseMessageFormSet(forms.BaseFormSet):
    def rows(self) -> list[tuple[int, dict]]:
        """(form index, message) for every row with content, in order."""
        out = []
        for i, form in enumerate(self.forms):
            data = getattr(form, "cleaned_data", None) or {}
            if (data.get("content") or "").strip():
                out.append((i, {"role": data["role"], "content": data["content"]}))
        return out

    def clean(self) -> None:
        if any(self.errors):
            return
        if not self.rows():
            raise ValidationError("Give at least one message with content.", code="no_messages")


MessageFormSet = forms.formset_factory(
    MessageForm, formset=BaseMessageFormSet, extra=3, max_num=prompting.MAX_MESSAGES
)


class PromptVersionForm(forms.Form):
    variables_schema = JSONObjectField(
        label="Variables schema",
        help_text="A JSON Schema object; declare every {{ variable }} the messages use under "
        "“properties”.",
    )
    parameters = JSONObjectField(
        label="Default parameters",
        help_text='Sent with every call unless overridden, e.g. {"temperature": 0.2}.',
        widget=forms.Textarea(attrs={"rows": 3, "class": "mono", "spellcheck": "false"}),
    )
    changelog = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        help_text="What changed and why.",
    )


class RenderPreviewForm(forms.Form):
    variables = JSONObjectField(
        label="Variables",
        widget=forms.Textarea(attrs={"rows": 5, "class": "mono", "spellcheck": "false"}),
    )


# --- Model versions ----------------------------------------------------------------------------


class VersionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        suffix = " (deprecated)" if obj.deprecated_at else ""
        return f"{obj}{suffix}"


class VersionMultipleChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj) -> str:
        suffix = " (deprecated)" if obj.deprecated_at else ""
        return f"{obj}{suffix}"


class ModelVersionForm(forms.Form):
    provider = forms.CharField(
        max_length=64, initial="builtin", help_text="Slug of the gateway provider."
    )
    provider_model = forms.CharField(
        max_length=200, label="Provider model", help_text="The model name the provider expects."
    )
    parameters = JSONObjectField(
        help_text='Call parameters, e.g. {"temperature": 0.2, "max_tokens": 512}.'
    )
    base_model = forms.CharField(max_length=200, required=False, label="Base model")
    base_version = VersionChoiceField(
        queryset=None, required=False, label="Base version", empty_label="—"
    )
    training_datasets = VersionMultipleChoiceField(
        queryset=None,
        required=False,
        label="Training dataset versions",
        widget=forms.SelectMultiple(attrs={"size": 5}),
    )
    finetuning_datasets = VersionMultipleChoiceField(
        queryset=None,
        required=False,
        label="Fine-tuning dataset versions",
        widget=forms.SelectMultiple(attrs={"size": 5}),
    )
    model_card = JSONObjectField(
        label="Model card",
        help_text='Model-card fields, e.g. {"intended_use": "…", "limitations": "…"}.',
    )
    changelog = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)

    def __init__(self, *args, base_versions, dataset_versions, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["base_version"].queryset = base_versions
        self.fields["training_datasets"].queryset = dataset_versions
        self.fields["finetuning_datasets"].queryset = dataset_versions


# --- Dataset versions --------------------------------------------------------------------------


class DatasetVersionForm(forms.Form):
    file = forms.FileField(
        required=False,
        help_text="A .jsonl or .csv file: it is hashed, counted and its columns are inferred.",
        widget=forms.ClearableFileInput(attrs={"accept": ".jsonl,.ndjson,.csv"}),
    )
    uri = forms.CharField(
        max_length=500,
        required=False,
        label="…or URI",
        help_text="Where the data lives when it is not uploaded (s3://…, https://…).",
    )
    format = forms.ChoiceField(
        choices=[("", "Detect from the file name"), *DatasetFormat.choices], required=False
    )
    source = forms.CharField(max_length=300, required=False)
    licence = forms.CharField(max_length=100, required=False)
    pii_class = forms.ChoiceField(choices=PIIClass.choices, initial=PIIClass.NONE, label="PII")
    retention_until = forms.DateField(
        required=False,
        label="Retain until",
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    parent = VersionChoiceField(
        queryset=None, required=False, empty_label="—", label="Parent version"
    )
    changelog = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)

    def __init__(self, *args, parents, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["parent"].queryset = parents


# --- Small actions -----------------------------------------------------------------------------


class DeprecateForm(forms.Form):
    reason = forms.CharField(
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why nobody should use this version any more.",
    )
