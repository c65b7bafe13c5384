"""The release form: the bill of materials and the gateway settings, shaped for the services."""

from typing import Any

from django import forms

from apps.catalog.forms import VersionChoiceField, VersionMultipleChoiceField

from .services import CACHE_MODES, DEFAULT_SETTINGS

# Fallback models are picked in order, one select per place in the chain.
FALLBACK_SLOTS = 3
MAX_FALLBACK_SLOTS = 5  # what the service accepts


def fallback_field_name(index: int) -> str:
    return f"fallback_{index + 1}"


class ReleaseForm(forms.Form):
    version = forms.CharField(
        max_length=64, help_text="Semantic version, unique in the product, e.g. 1.4.0."
    )
    prompt_version = VersionChoiceField(queryset=None, label="Prompt template version")
    model_version = VersionChoiceField(queryset=None, label="Model version")
    dataset_versions = VersionMultipleChoiceField(
        queryset=None,
        required=False,
        label="Dataset versions",
        help_text="The data the release was tuned and evaluated on (Ctrl/⌘-click for several).",
        widget=forms.SelectMultiple(attrs={"size": 5}),
    )
    cache_mode = forms.ChoiceField(
        choices=[(m, m) for m in CACHE_MODES], initial="off", label="Cache"
    )
    cache_ttl_seconds = forms.IntegerField(
        min_value=0,
        max_value=30 * 86400,
        initial=0,
        label="Cache TTL (s)",
        help_text="Required when the cache is on.",
    )
    timeout_seconds = forms.FloatField(
        min_value=0.1,
        max_value=600,
        initial=DEFAULT_SETTINGS["timeout_seconds"],
        label="Timeout (s)",
        widget=forms.NumberInput(attrs={"step": "any"}),
    )
    max_retries = forms.IntegerField(
        min_value=0, max_value=10, initial=DEFAULT_SETTINGS["max_retries"], label="Max retries"
    )
    max_tokens = forms.IntegerField(
        min_value=1,
        max_value=1_000_000,
        required=False,
        label="Max tokens",
        help_text="Empty: the model's own limit.",
    )
    notes = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text="What this release changes and why.",
    )

    def __init__(
        self,
        *args,
        prompt_versions,
        model_versions,
        dataset_versions,
        fallback_versions,
        fallback_slots: int = FALLBACK_SLOTS,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.fields["prompt_version"].queryset = prompt_versions
        self.fields["model_version"].queryset = model_versions
        self.fields["dataset_versions"].queryset = dataset_versions
        if not dataset_versions.exists():
            self.fields[
                "dataset_versions"
            ].help_text = "The team has no dataset versions yet; register them under Datasets."
            self.fields["dataset_versions"].widget.attrs["size"] = 2
        self.fallback_names = [
            fallback_field_name(i) for i in range(min(fallback_slots, MAX_FALLBACK_SLOTS))
        ]
        for i, name in enumerate(self.fallback_names):
            self.fields[name] = VersionChoiceField(
                queryset=fallback_versions,
                required=False,
                empty_label="—",
                label=f"Fallback {i + 1}",
            )

    @property
    def fallback_fields(self) -> list:
        return [self[name] for name in self.fallback_names]

    @property
    def settings_fields(self) -> list:
        names = ("cache_mode", "cache_ttl_seconds", "timeout_seconds", "max_retries", "max_tokens")
        return [self[name] for name in names]

    def _filled_fallback_names(self) -> list[str]:
        return [name for name in self.fallback_names if self.cleaned_data.get(name)]

    def gateway_settings(self) -> dict[str, Any]:
        """The ``settings`` object the services take (validated there)."""
        data = self.cleaned_data
        timeout = data["timeout_seconds"]
        return {
            "fallback": [str(data[name].pk) for name in self._filled_fallback_names()],
            "cache": {"mode": data["cache_mode"], "ttl_seconds": data["cache_ttl_seconds"]},
            # 30, not 30.0: the same settings as the API sends give the same fingerprint
            "timeout_seconds": int(timeout) if float(timeout).is_integer() else timeout,
            "max_retries": data["max_retries"],
            "max_tokens": data["max_tokens"],
        }

    def service_aliases(self) -> dict[str, str]:
        """Service error keys (``settings.cache.ttl_seconds``) → the fields that show them."""
        aliases = {
            "settings": "cache_mode",
            "settings.cache": "cache_mode",
            "settings.cache.ttl_seconds": "cache_ttl_seconds",
            "settings.timeout_seconds": "timeout_seconds",
            "settings.max_retries": "max_retries",
            "settings.max_tokens": "max_tokens",
        }
        filled = self._filled_fallback_names()
        if filled:
            aliases["settings.fallback"] = filled[0]
        for i, name in enumerate(filled):
            aliases[f"settings.fallback[{i}]"] = name
        return aliases


def release_initial(release) -> dict[str, Any]:
    """Form values that start from ``release`` (its own edit, or the next draft after it)."""
    settings = {**DEFAULT_SETTINGS, **(release.settings or {})}
    cache = settings.get("cache") or {}
    initial = {
        "prompt_version": release.prompt_version_id,
        "model_version": release.model_version_id,
        "dataset_versions": [link.dataset_version_id for link in release.dataset_links.all()],
        "cache_mode": cache.get("mode", "off"),
        "cache_ttl_seconds": cache.get("ttl_seconds", 0),
        "timeout_seconds": settings["timeout_seconds"],
        "max_retries": settings["max_retries"],
        "max_tokens": settings["max_tokens"],
    }
    for i, mv_id in enumerate(settings.get("fallback") or []):
        initial[fallback_field_name(i)] = mv_id
    return initial
