"""Forms of the lifecycle pages. Lists are written one item a line, in the words people use:

- user stories: ``As a support agent, I want drafted answers, so that I answer faster``
- target metrics: ``pass_rate support-quality >= 0.9``, ``p95_latency_ms <= 2000``,
  ``cost_per_1k_calls <= 1.5``, ``error_rate <= 0.01``
- risks: ``Wrong answer | 3 | 2 | An agent reviews every answer`` (title, likelihood 1-5,
  severity 1-5, mitigation)

The services validate the content; the forms only turn lines into the services' shapes and say
which line does not parse.
"""

import re

from django import forms

from apps.catalog.models import ModelVersion, Stage

STORY = re.compile(
    r"^\s*as an?\s+(?P<as_a>.+?),\s*I want\s+(?P<i_want>.+?),"
    r"\s*so that\s+(?P<so_that>.+?)\s*\.?\s*$",
    re.I,
)
TARGET = re.compile(
    r"^\s*(?P<metric>[a-z0-9_]+)(?:\s+(?P<suite>[A-Za-z0-9_-]+))?\s*(?P<op>>=|<=|=|≥|≤)\s*(?P<threshold>[0-9.]+)\s*$"
)


def _lines(text: str) -> list[tuple[int, str]]:
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


def parse_stories(text: str) -> list[dict]:
    out = []
    for n, line in _lines(text):
        m = STORY.match(line)
        if not m:
            raise forms.ValidationError(
                f"Line {n}: write “As a …, I want …, so that …”.", code="story"
            )
        out.append(m.groupdict())
    return out


def parse_targets(text: str) -> list[dict]:
    out = []
    for n, line in _lines(text):
        m = TARGET.match(line)
        if not m:
            raise forms.ValidationError(
                f"Line {n}: write “metric [suite] op threshold”, e.g. “pass_rate my-suite >= 0.9”.",
                code="target",
            )
        target = {
            "metric": m["metric"],
            "op": m["op"].replace("≥", ">=").replace("≤", "<="),
            "threshold": float(m["threshold"]),
        }
        if m["suite"]:
            target["suite"] = m["suite"]
        out.append(target)
    return out


def parse_risks(text: str) -> list[dict]:
    out = []
    for n, line in _lines(text):
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < 3 or not parts[1].isdigit() or not parts[2].isdigit():
            raise forms.ValidationError(
                f"Line {n}: write “title | likelihood 1-5 | severity 1-5 | mitigation”.",
                code="risk",
            )
        out.append(
            {
                "title": parts[0],
                "likelihood": int(parts[1]),
                "severity": int(parts[2]),
                "mitigation": " | ".join(parts[3:]),
            }
        )
    return out


def stories_text(stories: list[dict]) -> str:
    return "\n".join(
        f"As a {s['as_a']}, I want {s['i_want']}, so that {s['so_that']}" for s in stories or []
    )


def targets_text(targets: list[dict]) -> str:
    return "\n".join(
        " ".join(p for p in (t["metric"], t.get("suite", ""), t["op"], f"{t['threshold']:g}") if p)
        for t in targets or []
    )


def risks_text(risks: list[dict]) -> str:
    return "\n".join(
        f"{r['title']} | {r['likelihood']} | {r['severity']} | {r.get('mitigation', '')}"
        for r in risks or []
    )


def _area(rows: int = 3, **kw) -> forms.CharField:
    return forms.CharField(
        required=kw.pop("required", False), widget=forms.Textarea(attrs={"rows": rows}), **kw
    )


class BriefForm(forms.Form):
    problem_statement = _area(4, required=True, label="Problem statement")
    target_users = _area(2, label="Target users")
    user_stories = _area(
        4,
        label="User stories",
        help_text="One a line: As a …, I want …, so that …",
    )
    intended_uses = _area(3, label="Intended uses")
    out_of_scope_uses = _area(3, label="Out-of-scope uses")
    data_sources = _area(2, label="Data: sources")
    data_consent = _area(2, label="Data: consent")
    data_pii = _area(2, label="Data: PII handling")
    target_metrics = _area(
        4,
        label="Target metrics",
        help_text=(
            "One a line: pass_rate <suite> >= 0.9 · p95_latency_ms <= 2000 · "
            "cost_per_1k_calls <= 1.5 · error_rate <= 0.01"
        ),
    )
    changelog = forms.CharField(required=False, max_length=5000, label="What changed")

    def clean_user_stories(self):
        return parse_stories(self.cleaned_data["user_stories"])

    def clean_target_metrics(self):
        return parse_targets(self.cleaned_data["target_metrics"])

    def service_kwargs(self) -> dict:
        d = self.cleaned_data
        return {
            "problem_statement": d["problem_statement"],
            "target_users": d["target_users"],
            "user_stories": d["user_stories"],
            "intended_uses": d["intended_uses"],
            "out_of_scope_uses": d["out_of_scope_uses"],
            "data_strategy": {
                "sources": d["data_sources"],
                "consent": d["data_consent"],
                "pii_handling": d["data_pii"],
            },
            "target_metrics": d["target_metrics"],
            "changelog": d["changelog"],
        }

    @classmethod
    def initial_from(cls, brief) -> dict:
        if brief is None:
            return {}
        data = brief.data_strategy or {}
        return {
            "problem_statement": brief.problem_statement,
            "target_users": brief.target_users,
            "user_stories": stories_text(brief.user_stories),
            "intended_uses": brief.intended_uses,
            "out_of_scope_uses": brief.out_of_scope_uses,
            "data_sources": data.get("sources", ""),
            "data_consent": data.get("consent", ""),
            "data_pii": data.get("pii_handling", ""),
            "target_metrics": targets_text(brief.target_metrics),
        }


class AssessmentForm(forms.Form):
    technical = _area(4, label="Technical feasibility")
    ethical = _area(4, label="Ethical feasibility and impact")
    economic = _area(3, label="Economic feasibility")
    risks = _area(
        4, label="Risks", help_text="One a line: title | likelihood 1-5 | severity 1-5 | mitigation"
    )
    affected_groups = _area(3, label="Affected groups", help_text="One a line.")
    model_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.none(), required=False, label="Priced with model version"
    )
    calls_per_month = forms.IntegerField(min_value=0, initial=0, label="Expected calls a month")
    tokens_in_per_call = forms.IntegerField(min_value=0, initial=0, label="Tokens in per call")
    tokens_out_per_call = forms.IntegerField(min_value=0, initial=0, label="Tokens out per call")

    def __init__(self, *args, product, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model_version"].queryset = ModelVersion.objects.filter(
            model__owner_team_id=product.owner_team_id
        ).select_related("model")

    def clean_risks(self):
        return parse_risks(self.cleaned_data["risks"])

    def clean_affected_groups(self):
        return [line for _, line in _lines(self.cleaned_data["affected_groups"])]

    @classmethod
    def initial_from(cls, a) -> dict:
        if a is None:
            return {}
        return {
            "technical": a.technical,
            "ethical": a.ethical,
            "economic": a.economic,
            "risks": risks_text(a.risks),
            "affected_groups": "\n".join(a.affected_groups or []),
            "model_version": a.model_version_id,
            "calls_per_month": a.calls_per_month,
            "tokens_in_per_call": a.tokens_in_per_call,
            "tokens_out_per_call": a.tokens_out_per_call,
        }


class StageRequestForm(forms.Form):
    to_stage = forms.ChoiceField(choices=Stage.choices)
    comment = forms.CharField(
        required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 2})
    )
    sunset_at = forms.DateTimeField(required=False, label="Sunset date (UTC)")
    migration_note = forms.CharField(
        required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 3})
    )
    successor = forms.SlugField(required=False, label="Successor API (slug)")


class SignForm(forms.Form):
    password = forms.CharField(
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )
    comment = forms.CharField(
        required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 2})
    )
