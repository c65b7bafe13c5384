"""Account pages: sign-in, sign-out, password change and personal access tokens."""

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_http_methods, require_POST

from apps.core.exceptions import ApplicationError

from . import services
from .forms import LoginForm, TokenCreateForm
from .selectors import token_list_for


class LoginView(auth_views.LoginView):
    """Django's sign-in; django-axes counts the failures and renders the lockout page."""

    template_name = "accounts/login.html"
    authentication_form = LoginForm
    redirect_authenticated_user = True


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "accounts/password_change.html"


class PasswordChangeDoneView(auth_views.PasswordChangeDoneView):
    template_name = "accounts/password_change_done.html"


def _add_service_error(form, exc: ApplicationError) -> None:
    if exc.status == 403:
        raise PermissionDenied(exc.message)
    for field, errors in exc.extra.items():
        if field in form.fields:
            for error in errors if isinstance(errors, list) else [errors]:
                form.add_error(field, str(error))
    form.add_error(None, exc.message)


@login_required
@require_http_methods(["GET", "POST"])
def token_list(request):
    """The user's personal access tokens; a new token's secret is shown once, in this response."""
    new_token = None
    form = TokenCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            new_token = services.token_create(
                actor=request.user,
                user=request.user,
                name=form.cleaned_data["name"],
                days=form.cleaned_data["days"],
            )
        except ApplicationError as exc:
            _add_service_error(form, exc)
        else:
            form = TokenCreateForm()
    tokens = token_list_for(user=request.user)
    response = render(
        request,
        "accounts/tokens.html",
        {"tokens": tokens, "form": form, "new_token": new_token},
    )
    if new_token:
        add_never_cache_headers(response)  # the secret must not linger in any cache
    return response


@login_required
@require_POST
def token_revoke(request, pk):
    token = get_object_or_404(token_list_for(user=request.user), pk=pk)
    try:
        services.token_revoke(actor=request.user, token=token)
    except ApplicationError as exc:
        if exc.status == 403:
            raise PermissionDenied(exc.message) from None
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Token “{token.name}” ({token.prefix}…) is revoked.")
    return redirect("token_list")
