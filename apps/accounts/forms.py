"""Forms for the account pages: sign-in and personal access tokens."""

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm

TOKEN_DAY_CHOICES = [
    (7, "7 days"),
    (30, "30 days"),
    (90, "90 days"),
    (180, "180 days"),
    (365, "1 year"),
]


class LoginForm(AuthenticationForm):
    """Django's sign-in form with the browser hints a password manager needs."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["username"].widget.attrs.update({"autocomplete": "username"})
        self.fields["password"].widget.attrs.update({"autocomplete": "current-password"})


class TokenCreateForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="What the token is for, e.g. “CI pipeline” or “laptop scripts”.",
    )
    days = forms.TypedChoiceField(
        label="Expires in",
        coerce=int,
        choices=TOKEN_DAY_CHOICES,
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        default = settings.PERSONAL_TOKEN_DEFAULT_DAYS
        choices = dict(TOKEN_DAY_CHOICES)
        if default not in choices:
            choices[default] = f"{default} days"
        self.fields["days"].choices = sorted(choices.items())
        self.fields["days"].initial = default
