"""The form of the new-run page. It parses input; the rules live in ``evaluations.runs``.

What to run: a suite (its latest version that is not deprecated) or one suite version; against
what: a release, or a prompt version and a model version (``playground.forms.TargetForm``).
"""

from django import forms

from apps.playground.forms import TargetForm

from . import runs
from .models import DEFAULT_CONCURRENCY, MAX_CONCURRENCY, MIN_CONCURRENCY


class SuiteChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        latest = getattr(obj, "latest_version", None)
        return f"{obj.slug} — {obj.name}" + (f" (latest v{latest})" if latest else " (no version)")


class SuiteVersionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        cases = getattr(obj, "case_count", None)
        label = f"{obj.suite.slug} v{obj.version}"
        if cases is not None:
            label += f" · {cases} case{'s' if cases != 1 else ''}"
        return label + (" (deprecated)" if obj.deprecated_at else "")


class EvalRunForm(TargetForm):
    suite = SuiteChoiceField(
        queryset=None,
        required=False,
        empty_label="— or pick a suite version below —",
        help_text="Runs the suite's latest version that is not deprecated.",
    )
    suite_version = SuiteVersionChoiceField(
        queryset=None, required=False, label="Suite version", empty_label="—"
    )
    concurrency = forms.IntegerField(
        min_value=MIN_CONCURRENCY,
        max_value=MAX_CONCURRENCY,
        initial=DEFAULT_CONCURRENCY,
        help_text=f"The run's calls in flight at once ({MIN_CONCURRENCY} to {MAX_CONCURRENCY}); "
        "the provider's own limit, shared by every run, may hold it lower.",
    )

    field_order = ["suite", "suite_version", "release", "prompt_version", "model_version"]

    def __init__(self, *args, suites, suite_versions, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["suite"].queryset = suites
        self.fields["suite_version"].queryset = suite_versions

    def clean(self):
        data = super().clean()
        suite, version = data.get("suite"), data.get("suite_version")
        if "suite" in self.errors or "suite_version" in self.errors:
            return data
        if suite and version:
            self.add_error("suite_version", "Pick a suite or one of its versions, not both.")
        elif not suite and not version:
            self.add_error("suite", "Pick the suite to run (or one of its versions).")
        elif suite:
            latest = runs.latest_suite_version(suite)
            if latest is None:
                self.add_error("suite", f"Suite {suite.slug} has no current version to run.")
            else:
                data["suite_version"] = latest
        return data

    def run_arguments(self) -> dict:
        return {
            "suite_version": self.cleaned_data["suite_version"],
            "concurrency": self.cleaned_data["concurrency"],
            **self.target(),
        }
