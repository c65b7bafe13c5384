"""Forms of the compliance pages: the "what was live at" instant, filing and updating incidents."""

from django import forms
from django.utils import timezone

from apps.releases.models import Release

from .models import INCIDENT_TRANSITIONS, Incident, Severity

DATETIME_LOCAL = "%Y-%m-%dT%H:%M"


class LiveAtForm(forms.Form):
    at = forms.CharField(
        required=False,
        label="At",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}),
        help_text="Local date and time of the server's time zone; or an ISO 8601 instant.",
    )


class _LocalDateTime(forms.DateTimeField):
    widget = forms.DateTimeInput(attrs={"type": "datetime-local"}, format=DATETIME_LOCAL)
    input_formats = [DATETIME_LOCAL, "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"]


class IncidentForm(forms.ModelForm):
    occurred_at = _LocalDateTime(
        required=False, help_text="When it started (server time zone); now when empty."
    )
    severity = forms.ChoiceField(choices=Severity.choices, initial=Severity.SEV3)

    class Meta:
        model = Incident
        fields = ["title", "severity", "release", "occurred_at", "description", "actions_taken"]
        widgets = {
            "description": forms.Textarea(attrs={"rows": 3}),
            "actions_taken": forms.Textarea(attrs={"rows": 2}),
        }

    def __init__(self, *args, product=None, **kwargs):
        super().__init__(*args, **kwargs)
        product = product or getattr(self.instance, "product", None)
        self.fields["release"].queryset = (
            Release.objects.filter(product=product).order_by("-created_at").only("id", "version")
            if product is not None
            else Release.objects.none()
        )
        self.fields["release"].required = False
        self.fields["release"].label_from_instance = lambda r: r.version
        self.fields["release"].empty_label = "— none / unknown —"
        if not self.is_bound and not self.instance.pk:
            self.initial.setdefault("occurred_at", timezone.localtime().strftime(DATETIME_LOCAL))


class IncidentUpdateForm(IncidentForm):
    resolved_at = _LocalDateTime(required=False)

    class Meta(IncidentForm.Meta):
        fields = [*IncidentForm.Meta.fields, "resolved_at"]


class IncidentStatusForm(forms.Form):
    status = forms.ChoiceField(choices=[])
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, incident: Incident, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["status"].choices = [(s, s) for s in INCIDENT_TRANSITIONS[incident.status]]
