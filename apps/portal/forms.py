"""Forms of the portal pages. They parse and shape input; the rules live in the services."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.utils import timezone

from apps.catalog.forms import _normalise_newlines

SLUG_HELP = "Lowercase letters, digits and hyphens: the gateway's `model`."


class _Text(forms.CharField):
    """A textarea whose line breaks are stored as LF."""

    def to_python(self, value):
        return _normalise_newlines(super().to_python(value))


class APICreateForm(forms.Form):
    product = forms.ModelChoiceField(queryset=None, empty_label="Choose a product…")
    slug = forms.SlugField(max_length=64, help_text=SLUG_HELP)
    name = forms.CharField(max_length=150)
    summary = forms.CharField(max_length=300, required=False)
    docs = _Text(
        required=False,
        widget=forms.Textarea(attrs={"rows": 10, "class": "mono"}),
        help_text="Markdown: headings, lists, code blocks, links and tables.",
    )
    release = forms.ModelChoiceField(
        queryset=None,
        required=False,
        empty_label="Follow the product's current release",
        help_text="Pin a release, or leave empty to serve whatever release is current.",
    )

    def __init__(self, *args, products, releases, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["product"].queryset = products
        self.fields["product"].label_from_instance = lambda p: f"{p.name} ({p.slug})"
        self.fields["release"].queryset = releases
        self.fields["release"].label_from_instance = lambda r: f"{r.product.slug} {r.version}"

    def clean(self):
        data = super().clean()
        product, release = data.get("product"), data.get("release")
        if product and release and release.product_id != product.pk:
            self.add_error("release", "This release belongs to another product.")
        return data


class APIEditForm(forms.Form):
    name = forms.CharField(max_length=150)
    summary = forms.CharField(max_length=300, required=False)
    docs = _Text(
        required=False,
        widget=forms.Textarea(attrs={"rows": 14, "class": "mono"}),
        help_text="Markdown: headings, lists, code blocks, links and tables.",
    )
    release = forms.ModelChoiceField(
        queryset=None,
        required=False,
        empty_label="Follow the product's current release",
    )

    def __init__(self, *args, releases, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["release"].queryset = releases
        self.fields["release"].label_from_instance = lambda r: f"{r.version} ({r.status})"


class DeprecateAPIForm(forms.Form):
    sunset_at = forms.DateField(
        label="Sunset date",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The API stops answering on this day.",
    )
    migration_note = _Text(
        label="Migration note",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="What subscribers should do next.",
    )
    successor = forms.ModelChoiceField(queryset=None, required=False, empty_label="No successor")

    def __init__(self, *args, successors, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["successor"].queryset = successors
        self.fields["successor"].label_from_instance = lambda a: f"{a.name} ({a.slug})"

    def clean_sunset_at(self):
        day = self.cleaned_data["sunset_at"]
        if day <= timezone.localdate():
            raise forms.ValidationError("The sunset date must be in the future.")
        return day

    def sunset_datetime(self) -> dt.datetime:
        day = self.cleaned_data["sunset_at"]
        return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


class PlanForm(forms.Form):
    APPROVE_PENDING = (("", "—"), ("approve", "Approve them all"), ("leave", "Leave them pending"))

    slug = forms.SlugField(max_length=64, help_text="Lowercase letters, digits and hyphens.")
    name = forms.CharField(max_length=100)
    requests_per_minute = forms.IntegerField(min_value=1, max_value=1_000_000)
    tokens_per_month = forms.IntegerField(
        min_value=1, required=False, help_text="Leave empty for no monthly token quota."
    )
    approval_required = forms.BooleanField(
        required=False, initial=True, help_text="Each subscription waits for an approver."
    )
    terms = _Text(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    active = forms.BooleanField(
        required=False, initial=True, help_text="An inactive plan takes no new subscriptions."
    )
    approve_pending = forms.ChoiceField(
        choices=APPROVE_PENDING, required=False, widget=forms.HiddenInput
    )

    def __init__(self, *args, editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.editing = editing
        if editing:
            # A plan's slug is its name in the API and in subscriptions: it does not change.
            del self.fields["slug"]
        else:
            del self.fields["active"]
            del self.fields["approve_pending"]

    def approve_pending_answer(self) -> bool | None:
        answer = self.cleaned_data.get("approve_pending")
        return {"approve": True, "leave": False}.get(answer or "")


class ApplicationForm(forms.Form):
    name = forms.CharField(max_length=100)
    description = _Text(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class SubscribeForm(forms.Form):
    application = forms.ModelChoiceField(queryset=None, empty_label="Choose an application…")
    plan = forms.ModelChoiceField(queryset=None, empty_label=None, widget=forms.RadioSelect)
    justification = _Text(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="What you will build with it: approvers read this.",
    )

    def __init__(self, *args, applications, plans, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["application"].queryset = applications
        self.fields["plan"].queryset = plans
        self.fields["plan"].label_from_instance = _plan_label


def _plan_label(plan) -> str:
    quota = f"{plan.tokens_per_month:,} tokens/month" if plan.tokens_per_month else "no quota"
    approval = "approval required" if plan.approval_required else "instant"
    return f"{plan.name} — {plan.requests_per_minute:,} requests/min, {quota}, {approval}"


class KeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Where the key is used, e.g. “staging”.")
    expires_on = forms.DateField(
        label="Expires on",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Leave empty for the default lifetime.",
    )

    def clean_expires_on(self):
        day = self.cleaned_data.get("expires_on")
        if day and day <= timezone.localdate():
            raise forms.ValidationError("The expiry date must be in the future.")
        return day

    def expires_at(self) -> dt.datetime | None:
        day = self.cleaned_data.get("expires_on")
        if not day:
            return None
        return timezone.make_aware(dt.datetime.combine(day, dt.time(23, 59)))


class ApproveForm(forms.Form):
    comment = forms.CharField(
        required=False, max_length=2000, widget=forms.TextInput(attrs={"placeholder": "Comment"})
    )


class ReasonForm(forms.Form):
    """Reject or suspend: the subscriber is told why."""

    reason = forms.CharField(
        max_length=2000,
        error_messages={"required": "Give a reason: the subscriber sees it."},
        widget=forms.TextInput(attrs={"placeholder": "Reason (required)"}),
    )
