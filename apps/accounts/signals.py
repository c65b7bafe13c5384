"""Security events from Django's and axes' auth signals, recorded through the services."""

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver

from . import services


def _ip(request) -> str:
    if request is None:
        return ""
    return request.META.get("REMOTE_ADDR", "")[:64]


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kwargs):
    services.login_recorded(user=user, ip_address=_ip(request))


@receiver(user_login_failed)
def _login_failed(sender, credentials, request=None, **kwargs):
    services.login_failed_recorded(
        username=str(credentials.get("username", "")), ip_address=_ip(request)
    )


@receiver(user_locked_out)
def _locked_out(sender, request=None, username=None, ip_address=None, **kwargs):
    services.lockout_recorded(username=str(username or ""), ip_address=str(ip_address or ""))
