"""The gateway REST API: providers (admins write; secrets write-only) and their prices, and
the provider calls (read-only telemetry).

Views are thin: querysets come from ``gateway.selectors`` (a provider or a call the user may not
see is a 404), every write is one call to ``gateway.services`` (admins only: 403 otherwise).
"""

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from apps.core.api import FILTER_BACKENDS, error_responses

from .. import selectors, services
from ..models import Provider, ProviderCall
from .filters import ProviderCallFilter, ProviderFilter, StableOrderingFilter
from .serializers import (
    ProviderCallSerializer,
    ProviderPriceSerializer,
    ProviderSerializer,
    ProviderUpdateSerializer,
)


@extend_schema_view(
    list=extend_schema(
        summary="List providers",
        responses={200: ProviderSerializer(many=True), **error_responses(400, 401)},
    ),
    retrieve=extend_schema(
        summary="Get a provider", responses={200: ProviderSerializer, **error_responses(401, 404)}
    ),
    create=extend_schema(
        summary="Create a provider (admins)",
        request=ProviderSerializer,
        responses={201: ProviderSerializer, **error_responses(400, 401, 403, 409)},
        examples=[
            OpenApiExample(
                "An OpenAI-compatible provider",
                value={
                    "slug": "local-vllm",
                    "name": "Local vLLM",
                    "kind": "openai_compatible",
                    "base_url": "http://127.0.0.1:8000/v1",
                    "secret": "sk-...",
                },
                request_only=True,
            )
        ],
    ),
    partial_update=extend_schema(
        summary="Change a provider or replace its secret (admins)",
        request=ProviderUpdateSerializer,
        responses={200: ProviderSerializer, **error_responses(400, 401, 403, 404, 409)},
    ),
)
class ProviderViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Providers calls go to. ``secret`` is write-only; responses say ``secret_set``."""

    serializer_class = ProviderSerializer
    parser_classes = [JSONParser]
    filter_backends = FILTER_BACKENDS
    filterset_class = ProviderFilter
    search_fields = ["slug", "name"]
    ordering_fields = ["slug", "name", "kind", "created_at", "updated_at"]
    ordering = ["slug"]
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return Provider.objects.none()
        return selectors.provider_list_for(user=self.request.user)

    def _respond(self, provider, status_code=status.HTTP_200_OK) -> Response:
        provider = self.get_queryset().get(pk=provider.pk)
        return Response(ProviderSerializer(provider).data, status=status_code)

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        provider = services.provider_create(actor=request.user, **serializer.validated_data)
        return self._respond(provider, status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        provider = self.get_object()
        serializer = ProviderUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        provider = services.provider_update(
            actor=request.user, provider=provider, **serializer.validated_data
        )
        return self._respond(provider)

    @extend_schema(
        methods=["GET"],
        summary="List a provider's prices",
        request=None,
        responses={200: ProviderPriceSerializer(many=True), **error_responses(401, 404)},
    )
    @extend_schema(
        methods=["POST"],
        summary="Set the price of one of a provider's models (admins)",
        request=ProviderPriceSerializer,
        responses={200: ProviderPriceSerializer, **error_responses(400, 401, 403, 404)},
    )
    @action(detail=True, methods=["get", "post"], pagination_class=None, filter_backends=[])
    def prices(self, request, pk=None):
        provider = self.get_object()
        if request.method == "GET":
            prices = selectors.provider_price_list_for(user=request.user, provider=provider)
            return Response(ProviderPriceSerializer(prices, many=True).data)
        serializer = ProviderPriceSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        price = services.provider_price_set(
            actor=request.user, provider=provider, **serializer.validated_data
        )
        return Response(ProviderPriceSerializer(price).data)


@extend_schema_view(
    list=extend_schema(
        summary="List provider calls",
        description=(
            "Calls through the gateway pipeline, newest first: tokens, cost, latency and "
            "outcome, never the messages or the output. Calls of the products of your teams "
            "(auditors and admins: of every product); calls made without a product (direct "
            "calls to a provider) are listed for admins only."
        ),
        responses={200: ProviderCallSerializer(many=True), **error_responses(400, 401, 404)},
    ),
    retrieve=extend_schema(
        summary="Get a provider call",
        responses={200: ProviderCallSerializer, **error_responses(401, 404)},
    ),
)
class ProviderCallViewSet(viewsets.ReadOnlyModelViewSet):
    """Provider calls: one row per call through the pipeline (read-only)."""

    serializer_class = ProviderCallSerializer
    filter_backends = [DjangoFilterBackend, StableOrderingFilter]
    filterset_class = ProviderCallFilter
    ordering_fields = ["created_at", "latency_ms", "cost"]
    ordering = ["-created_at"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return ProviderCall.objects.none()
        return selectors.provider_call_list_for(user=self.request.user)
