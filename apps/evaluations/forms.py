"""Forms of the evaluation-suite pages. They parse and shape input; the rules are in the services.

The cases editor is a formset: one row per case (key, group, vary, variables as a JSON object,
expected output, assertions as a JSON list), a "Remove" box per row, and a row left entirely
empty is ignored.
"""

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from apps.accounts.models import User
from apps.catalog.forms import JSONObjectField, TeamChoiceField, VersionChoiceField, author_teams

from .templates_builtin import TEMPLATE_CHOICES

MONO = {"class": "mono", "spellcheck": "false"}


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


class JSONListField(forms.CharField):
    """A textarea holding a JSON list (of assertions); a parse error names line and column."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 4, **MONO}))
        super().__init__(*args, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return json.dumps(value, indent=1, ensure_ascii=False) if value else ""
        return value

    def to_python(self, value: Any) -> Any:
        if isinstance(value, list):
            return value
        text = super().to_python(value)
        if not text:
            return []
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                "Not valid JSON: %(msg)s (line %(line)s, column %(col)s).",
                code="invalid_json",
                params={"msg": exc.msg, "line": exc.lineno, "col": exc.colno},
            ) from None
        if isinstance(parsed, dict):
            parsed = [parsed]  # one assertion written without its list
        if not isinstance(parsed, list):
            raise ValidationError(
                'Must be a JSON list of assertions: [{"type": …}, …].', code="not_list"
            )
        return parsed


class SuiteForm(forms.Form):
    slug = forms.SlugField(max_length=64, help_text="Unique within the team.")
    name = forms.CharField(max_length=150)
    owner_team = TeamChoiceField(queryset=None, label="Owner team")
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)

    def __init__(self, *args, user: User, **kwargs):
        super().__init__(*args, **kwargs)
        teams = author_teams(user)
        self.fields["owner_team"].queryset = teams
        if len(teams) == 1:
            self.fields["owner_team"].initial = teams[0].pk


class SuiteUpdateForm(forms.Form):
    name = forms.CharField(max_length=150)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)


class SuiteTemplateForm(forms.Form):
    template = forms.ChoiceField(choices=TEMPLATE_CHOICES, widget=forms.RadioSelect)
    owner_team = TeamChoiceField(queryset=None, label="Owner team")
    slug = forms.SlugField(
        max_length=64, required=False, help_text="Defaults to the template's (prompt-injection)."
    )
    name = forms.CharField(max_length=150, required=False, help_text="Defaults to the template's.")
    secret_phrases = forms.CharField(
        required=False,
        label="Phrases of your system prompt",
        widget=forms.Textarea(attrs={"rows": 3, **MONO}),
        help_text="One per line: distinctive phrases of your system prompt that an answer must "
        "never repeat (they are added to every must-not-contain assertion).",
    )
    base_variables = JSONObjectField(
        label="Variables for every case",
        widget=forms.Textarea(attrs={"rows": 3, **MONO}),
        help_text='Your prompt\'s other variables, e.g. {"company": "Acme"}; each case fills '
        "question.",
    )

    def __init__(self, *args, user: User, **kwargs):
        super().__init__(*args, **kwargs)
        teams = author_teams(user)
        self.fields["owner_team"].queryset = teams
        if len(teams) == 1:
            self.fields["owner_team"].initial = teams[0].pk

    def clean_secret_phrases(self) -> list[str]:
        text = _normalise_newlines(self.cleaned_data.get("secret_phrases") or "")
        return [line.strip() for line in text.split("\n") if line.strip()]


class CaseForm(forms.Form):
    """One case of the editor; ``variables`` is a JSON object, ``assertions`` a JSON list."""

    key = forms.CharField(
        max_length=100, required=False, widget=forms.TextInput(attrs={"placeholder": "auto"})
    )
    group = forms.CharField(max_length=100, required=False)
    vary = forms.CharField(max_length=100, required=False)
    variables = JSONObjectField(widget=forms.Textarea(attrs={"rows": 4, **MONO}))
    expected = forms.CharField(
        required=False, strip=False, widget=forms.Textarea(attrs={"rows": 4})
    )
    assertions = JSONListField()

    def clean_expected(self) -> str:
        return _normalise_newlines(self.cleaned_data.get("expected") or "")

    def case(self) -> dict:
        data = self.cleaned_data
        return {
            "key": data.get("key", ""),
            "variables": data.get("variables") or {},
            "expected": data.get("expected", ""),
            "assertions": data.get("assertions") or [],
            "group": data.get("group", ""),
            "vary": data.get("vary", ""),
        }

    def is_blank(self) -> bool:
        data = getattr(self, "cleaned_data", None) or {}
        return not any(
            (data.get(name) or "") if isinstance(data.get(name), str) else data.get(name)
            for name in ("key", "group", "vary", "variables", "expected", "assertions")
        )


class BaseCaseFormSet(forms.BaseFormSet):
    def rows(self) -> list[tuple[int, dict]]:
        """(form index, case) for every row kept (not removed, not blank), in order."""
        out = []
        for i, form in enumerate(self.forms):
            if not hasattr(form, "cleaned_data"):
                continue
            if self.can_delete and self._should_delete_form(form):
                continue
            if form.is_blank():
                continue
            out.append((i, form.case()))
        return out

    def clean(self) -> None:
        if any(self.errors):
            return
        if not self.rows():
            raise ValidationError("Give at least one case.", code="no_cases")


def case_formset(max_num: int):
    return forms.formset_factory(
        CaseForm,
        formset=BaseCaseFormSet,
        extra=0,
        can_delete=True,
        max_num=max_num,
        validate_max=True,
        absolute_max=max_num,
    )


class SuiteVersionForm(forms.Form):
    changelog = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        help_text="What changed and why.",
    )


class SuiteImportForm(forms.Form):
    dataset_version = VersionChoiceField(
        queryset=None,
        label="Dataset version",
        help_text="A JSONL dataset version of the suite's team, stored in the portal.",
    )
    expected_field = forms.CharField(
        max_length=100,
        initial="expected",
        required=False,
        label="Expected-output field",
        help_text="The field of a row holding its expected output.",
    )
    assertions_field = forms.CharField(
        max_length=100,
        initial="assertions",
        required=False,
        label="Assertions field",
        help_text="The field of a row holding its assertions (a JSON list).",
    )
    variables_field = forms.CharField(
        max_length=100,
        required=False,
        label="Variables field",
        help_text="The field holding a row's variables (an object). Empty: the row's other "
        "fields are its variables.",
    )
    key_field = forms.CharField(
        max_length=100, required=False, label="Key field", help_text="Empty: case-<n>."
    )
    default_assertions = JSONListField(
        label="Assertions of rows without any",
        help_text='e.g. [{"type": "similarity", "threshold": 0.6}]',
    )
    default_variables = JSONObjectField(
        label="Variables for every row",
        widget=forms.Textarea(attrs={"rows": 3, **MONO}),
        help_text='A row\'s own values win, e.g. {"company": "Acme"}.',
    )
    changelog = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)

    def __init__(self, *args, dataset_versions, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["dataset_version"].queryset = dataset_versions
