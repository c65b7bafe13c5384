"""ASGI entry point: the gateway's thin app serves ``/v1/``, Django serves everything else.

Both run in this one process with the same settings, models and services. The gateway
(``apps.portal.gateway.app``) skips Django's request cycle (middleware, URL resolving, the
sync↔async hops of a sync stack): its hot path is a few dict lookups, one limiter round trip
and the pipeline. It also answers the ASGI lifespan protocol: on shutdown it writes every
pending usage and ProviderCall row (Django's handler takes no lifespan messages).

    uvicorn plmportal.asgi:application
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "plmportal.settings")
django_application = get_asgi_application()

from apps.portal.gateway.app import GatewayApp  # noqa: E402  (needs the apps loaded)

gateway_application = GatewayApp()


async def application(scope, receive, send):
    kind = scope["type"]
    if kind == "http":
        path = scope["path"]
        if path.startswith("/v1/") or path == "/v1":
            return await gateway_application(scope, receive, send)
    elif kind == "lifespan":
        return await gateway_application(scope, receive, send)
    return await django_application(scope, receive, send)
