"""The developer-portal REST API: published APIs, plans, applications, subscriptions and keys.

Views are thin: querysets come from ``portal.selectors`` (out of scope is a 404), shapes from
the serializers, and every write is one call to ``portal.services``, which checks who may act
(403), refuses what the state does not allow (409) and records the audit event. Views open no
transaction. A key's secret is in the create and rotate responses only.
"""

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from apps.core.api import FILTER_BACKENDS, error_responses

from .. import selectors, services
from ..models import APIKey, Application, Plan, PublishedAPI, Subscription
from .filters import (
    APIKeyFilter,
    ApplicationFilter,
    PlanFilter,
    PublishedAPIFilter,
    SubscriptionFilter,
)
from .serializers import (
    APIDeprecateSerializer,
    APIKeyCreateSerializer,
    APIKeyRotateSerializer,
    APIKeySerializer,
    ApplicationSerializer,
    ApplicationUpdateSerializer,
    NewAPIKeySerializer,
    PlanSerializer,
    PlanUpdateSerializer,
    PublishedAPISerializer,
    PublishedAPIUpdateSerializer,
    SubscriptionApproveSerializer,
    SubscriptionCreateSerializer,
    SubscriptionReasonSerializer,
    SubscriptionSerializer,
)

LIST_ERRORS = error_responses(400, 401, 404)
READ_ERRORS = error_responses(401, 404)
CREATE_ERRORS = error_responses(400, 401, 403, 404, 409)
WRITE_ERRORS = error_responses(400, 401, 403, 404, 409)
EXAMPLE_ID = "0d6b8f5e-8a43-4f1c-9c0e-2a6e1b3d4c5f"


def _crud(noun: str, serializer, *, create=None, update=None, create_response=None, example=None):
    views = {
        "list": extend_schema(
            summary=f"List {noun}s", responses={200: serializer(many=True), **LIST_ERRORS}
        ),
        "retrieve": extend_schema(
            summary=f"Get {noun}", responses={200: serializer, **READ_ERRORS}
        ),
    }
    if create is not None:
        views["create"] = extend_schema(
            summary=f"Create {noun}",
            request=create,
            responses={201: create_response or serializer, **CREATE_ERRORS},
            examples=[OpenApiExample(f"A new {noun}", value=example, request_only=True)]
            if example
            else None,
        )
    if update is not None:
        views["partial_update"] = extend_schema(
            summary=f"Change {noun}", request=update, responses={200: serializer, **WRITE_ERRORS}
        )
    return views


def _act(summary: str, serializer, request=None, description: str | None = None):
    return extend_schema(
        summary=summary,
        description=description,
        request=request,
        responses={200: serializer, **WRITE_ERRORS},
    )


class PortalViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Lists and reads through a selector; ``_respond`` re-reads a written object the same way."""

    model: type = PublishedAPI
    selector = staticmethod(selectors.api_list_for)
    parser_classes = [JSONParser]
    filter_backends = FILTER_BACKENDS
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return self.model.objects.none()
        return self.selector(user=self.request.user)

    def _respond(self, obj, code: int = status.HTTP_200_OK, serializer_class=None) -> Response:
        fresh = self.get_queryset().get(pk=obj.pk)
        serializer_class = serializer_class or self.get_serializer_class()
        return Response(serializer_class(fresh).data, status=code)

    def _body(self, serializer_class):
        serializer = serializer_class(data=self.request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


# --- Published APIs --------------------------------------------------------------------------


@extend_schema_view(
    **_crud(
        "a published API",
        PublishedAPISerializer,
        create=PublishedAPISerializer,
        update=PublishedAPIUpdateSerializer,
        example={
            "product": EXAMPLE_ID,
            "slug": "support-assistant",
            "name": "Support assistant",
            "summary": "Answers customers' support questions.",
            "docs": "# Support assistant\n\nCall it with the `openai` client.",
        },
    ),
    publish=_act("Publish a draft API (it needs a release to serve)", PublishedAPISerializer),
    deprecate=_act(
        "Deprecate a published API: sunset date and migration note, mailed to subscribers",
        PublishedAPISerializer,
        APIDeprecateSerializer,
    ),
    retire=_act("Retire a deprecated API: it answers no more", PublishedAPISerializer),
)
class PublishedAPIViewSet(PortalViewSet):
    """Published APIs: a product exposed to developers under a slug (the gateway's ``model``).
    ``status`` moves draft → published → deprecated → retired by the actions. Every signed-in
    user sees the published and deprecated ones; the product's team sees all."""

    model = PublishedAPI
    selector = staticmethod(selectors.api_list_for)
    serializer_class = PublishedAPISerializer
    filterset_class = PublishedAPIFilter
    search_fields = ["slug", "name", "summary"]
    ordering_fields = ["slug", "name", "status", "created_at", "published_at"]
    ordering = ["slug"]

    def create(self, request, *args, **kwargs):
        api = services.api_create(actor=request.user, **self._body(PublishedAPISerializer))
        return self._respond(api, status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        api = self.get_object()
        api = services.api_update(
            actor=request.user, api=api, **self._body(PublishedAPIUpdateSerializer)
        )
        return self._respond(api)

    @action(detail=True, methods=["post"], filter_backends=[])
    def publish(self, request, *args, **kwargs):
        api = services.api_publish(actor=request.user, api=self.get_object())
        return self._respond(api)

    @action(detail=True, methods=["post"], filter_backends=[])
    def deprecate(self, request, *args, **kwargs):
        api = self.get_object()
        api = services.api_deprecate(
            actor=request.user, api=api, **self._body(APIDeprecateSerializer)
        )
        return self._respond(api)

    @action(detail=True, methods=["post"], filter_backends=[])
    def retire(self, request, *args, **kwargs):
        api = services.api_retire(actor=request.user, api=self.get_object())
        return self._respond(api)


# --- Plans -----------------------------------------------------------------------------------


@extend_schema_view(
    **_crud(
        "a plan",
        PlanSerializer,
        create=PlanSerializer,
        update=PlanUpdateSerializer,
        example={
            "api": EXAMPLE_ID,
            "slug": "pro",
            "name": "Pro",
            "requests_per_minute": 600,
            "tokens_per_month": None,
            "approval_required": True,
        },
    )
)
class PlanViewSet(PortalViewSet):
    """Plans of an API: requests per minute, an optional monthly token quota, and whether a
    subscription needs approval. Filter by ``api`` (id or slug). Switching
    ``approval_required`` off while requests wait needs ``approve_pending`` (409
    ``pending_backlog`` otherwise)."""

    model = Plan
    selector = staticmethod(selectors.plan_list_for)
    serializer_class = PlanSerializer
    filterset_class = PlanFilter
    search_fields = ["slug", "name", "api__slug"]
    ordering_fields = ["slug", "name", "requests_per_minute", "created_at"]
    ordering = ["api__slug", "requests_per_minute", "slug"]

    def create(self, request, *args, **kwargs):
        plan = services.plan_create(actor=request.user, **self._body(PlanSerializer))
        return self._respond(plan, status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        plan = self.get_object()
        plan = services.plan_update(
            actor=request.user, plan=plan, **self._body(PlanUpdateSerializer)
        )
        return self._respond(plan)


# --- Applications ----------------------------------------------------------------------------


@extend_schema_view(
    **_crud(
        "an application",
        ApplicationSerializer,
        create=ApplicationSerializer,
        update=ApplicationUpdateSerializer,
        example={"name": "Help-desk widget", "description": "Answers on our help pages."},
    )
)
class ApplicationViewSet(PortalViewSet):
    """A developer's applications: what subscribes to plans and holds API keys. You see your
    own (auditors see all)."""

    model = Application
    selector = staticmethod(selectors.application_list_for)
    serializer_class = ApplicationSerializer
    filterset_class = ApplicationFilter
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created_at", "updated_at"]
    ordering = ["name"]

    def create(self, request, *args, **kwargs):
        app = services.application_create(actor=request.user, **self._body(ApplicationSerializer))
        return self._respond(app, status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        app = self.get_object()
        app = services.application_update(
            actor=request.user, application=app, **self._body(ApplicationUpdateSerializer)
        )
        return self._respond(app)


# --- Subscriptions ---------------------------------------------------------------------------


@extend_schema_view(
    **_crud(
        "a subscription",
        SubscriptionSerializer,
        create=SubscriptionCreateSerializer,
        example={
            "application": EXAMPLE_ID,
            "plan": "free",
            "api": "support-assistant",
            "justification": "Our help pages answer questions with it.",
        },
    ),
    approve=_act(
        "Approve a pending request", SubscriptionSerializer, SubscriptionApproveSerializer
    ),
    reject=_act(
        "Reject a pending request, with a reason",
        SubscriptionSerializer,
        SubscriptionReasonSerializer,
    ),
    suspend=_act(
        "Suspend an active subscription, with a reason",
        SubscriptionSerializer,
        SubscriptionReasonSerializer,
    ),
    resume=_act("Resume a suspended subscription", SubscriptionSerializer),
    cancel=_act("Cancel a subscription (its owner, or an approver)", SubscriptionSerializer),
)
class SubscriptionViewSet(PortalViewSet):
    """Subscriptions of applications to plans. ``state`` moves pending → active | rejected;
    active ⇄ suspended; any live one → cancelled. A plan without approval makes it active at
    once. Nobody decides their own request. You see your applications' subscriptions and those
    you may decide."""

    model = Subscription
    selector = staticmethod(selectors.subscription_list_for)
    serializer_class = SubscriptionSerializer
    filterset_class = SubscriptionFilter
    search_fields = ["application__name", "api__slug", "plan__slug"]
    ordering_fields = ["created_at", "decided_at", "state"]
    ordering = ["-created_at"]
    http_method_names = ["get", "post", "head", "options"]

    def create(self, request, *args, **kwargs):
        sub = services.subscription_request(
            actor=request.user, **self._body(SubscriptionCreateSerializer)
        )
        return self._respond(sub, status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"], filter_backends=[])
    def approve(self, request, *args, **kwargs):
        sub = self.get_object()
        body = self._body(SubscriptionApproveSerializer)
        sub = services.subscription_approve(
            actor=request.user, subscription=sub, comment=body.get("comment", "")
        )
        return self._respond(sub)

    @action(detail=True, methods=["post"], filter_backends=[])
    def reject(self, request, *args, **kwargs):
        sub = self.get_object()
        body = self._body(SubscriptionReasonSerializer)
        sub = services.subscription_reject(
            actor=request.user, subscription=sub, reason=body.get("reason", "")
        )
        return self._respond(sub)

    @action(detail=True, methods=["post"], filter_backends=[])
    def suspend(self, request, *args, **kwargs):
        sub = self.get_object()
        body = self._body(SubscriptionReasonSerializer)
        sub = services.subscription_suspend(
            actor=request.user, subscription=sub, reason=body.get("reason", "")
        )
        return self._respond(sub)

    @action(detail=True, methods=["post"], filter_backends=[])
    def resume(self, request, *args, **kwargs):
        sub = services.subscription_resume(actor=request.user, subscription=self.get_object())
        return self._respond(sub)

    @action(detail=True, methods=["post"], filter_backends=[])
    def cancel(self, request, *args, **kwargs):
        sub = services.subscription_cancel(actor=request.user, subscription=self.get_object())
        return self._respond(sub)


# --- API keys --------------------------------------------------------------------------------


def _new_key_data(new: services.NewKey, fresh: APIKey) -> dict:
    data = NewAPIKeySerializer(fresh).data
    data["key"] = new.secret
    return data


@extend_schema_view(
    **_crud(
        "an API key",
        APIKeySerializer,
        create=APIKeyCreateSerializer,
        create_response=NewAPIKeySerializer,
        example={"application": EXAMPLE_ID, "name": "production"},
    ),
    rotate=extend_schema(
        summary="Rotate a key: a new key (shown once); the old one works for the grace period",
        request=APIKeyRotateSerializer,
        responses={200: NewAPIKeySerializer, **WRITE_ERRORS},
    ),
    revoke=_act("Revoke a key at once", APIKeySerializer),
)
class APIKeyViewSet(PortalViewSet):
    """API keys of your applications. The secret is returned once, as ``key``, by the create
    and rotate responses; later reads show only the ``prefix``. A key works for its
    application's active subscriptions until it expires, is revoked, or its rotation grace
    period ends."""

    model = APIKey
    selector = staticmethod(selectors.key_list_for)
    serializer_class = APIKeySerializer
    filterset_class = APIKeyFilter
    search_fields = ["name", "prefix"]
    ordering_fields = ["created_at", "expires_at", "name", "last_used_at"]
    ordering = ["-created_at"]
    http_method_names = ["get", "post", "head", "options"]

    def create(self, request, *args, **kwargs):
        new = services.key_create(actor=request.user, **self._body(APIKeyCreateSerializer))
        fresh = self.get_queryset().get(pk=new.key.pk)
        return Response(_new_key_data(new, fresh), status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"], filter_backends=[])
    def rotate(self, request, *args, **kwargs):
        key = self.get_object()
        body = self._body(APIKeyRotateSerializer)
        new = services.key_rotate(actor=request.user, key=key, grace_hours=body.get("grace_hours"))
        fresh = self.get_queryset().get(pk=new.key.pk)
        return Response(_new_key_data(new, fresh))

    @action(detail=True, methods=["post"], filter_backends=[])
    def revoke(self, request, *args, **kwargs):
        key = services.key_revoke(actor=request.user, key=self.get_object())
        return self._respond(key)
