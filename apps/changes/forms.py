"""Forms of the change-request pages. They parse input; the rules live in the services."""

from django import forms

from .models import Risk


class ReleaseChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        return f"{obj.version} — {obj.status} · {obj.prompt_version} + {obj.model_version}"


class ChangeRequestForm(forms.Form):
    title = forms.CharField(max_length=200)
    proposed = ReleaseChoiceField(
        queryset=None,
        label="Proposed release",
        help_text="A draft release of this product; it is frozen when the request is submitted.",
    )
    baseline = ReleaseChoiceField(
        queryset=None,
        required=False,
        label="Baseline",
        empty_label="None — this is the product's first release",
        help_text="The release this change replaces: the product's released release.",
    )
    risk = forms.ChoiceField(choices=Risk.choices, initial=Risk.MEDIUM)
    rationale = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text="Why the change is needed and how it was checked.",
    )

    def __init__(self, *args, proposed, baselines, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["proposed"].queryset = proposed
        self.fields["baseline"].queryset = baselines


class SignatureForm(forms.Form):
    """Approve or reject: a signature with the reviewer's password and a comment."""

    comment = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text="Required when you reject.",
    )
    password = forms.CharField(
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        strip=False,
        label="Your password",
        help_text="Approvals and rejections are signed with it.",
    )


class CommentForm(forms.Form):
    comment = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Comment",
        max_length=5000,
        help_text="Not a signature: it counts toward no quorum.",
    )


class WithdrawForm(forms.Form):
    comment = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        label="Why",
        help_text="Optional; recorded in the trail.",
    )
