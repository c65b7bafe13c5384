"""How pages show a service's refusal: a 403 or 404 as such, anything else on the form."""

from django.core.exceptions import PermissionDenied
from django.http import Http404

from .exceptions import ApplicationError


def refuse_or_404(exc: ApplicationError) -> None:
    """Raise the page's 403 or 404 for a refusal that is one; return otherwise."""
    if exc.status == 403:
        raise PermissionDenied(exc.message)
    if exc.status == 404:
        raise Http404(exc.message)


def form_error(form, exc: ApplicationError) -> None:
    """Put a service's refusal on ``form``: each message under the field it names (a nested name
    such as ``risks[0].likelihood`` under ``risks``, prefixed with the name), and the whole
    message at the top."""
    refuse_or_404(exc)
    for key, errors in exc.extra.items():
        field = key.split("[")[0].split(".")[0]
        if field in form.fields:
            for error in errors:
                form.add_error(field, f"{key}: {error}" if key != field else error)
    form.add_error(None, exc.message)
