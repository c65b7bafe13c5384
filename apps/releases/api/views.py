"""The releases REST API: releases (a product's LLM-BOM), their diff, and what was live when.

Views are thin: querysets come from ``releases.selectors`` (out of scope is a 404), and every
write is one call to ``releases.services``, which checks the actor's permission (403), refuses
what the release's status does not allow (409) and records the audit event. Views open no
transaction.
"""

import re

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, generics, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from apps.catalog import selectors as catalog_selectors
from apps.catalog.models import Product
from apps.core.api import FILTER_BACKENDS, ErrorSerializer, error_responses

from .. import selectors, services
from ..diff import release_diff
from ..models import Release
from .filters import ReleaseFilter
from .serializers import (
    LiveQuerySerializer,
    ReleaseCompareSerializer,
    ReleaseDiffQuerySerializer,
    ReleaseSerializer,
    ReleaseUpdateSerializer,
)

READ_ERRORS = error_responses(401, 404)
WRITE_ERRORS = error_responses(400, 401, 403, 404, 409)
ACTION_ERRORS = error_responses(401, 403, 404, 409)


def release_ref(release: Release | None) -> dict | None:
    if release is None:
        return None
    return {
        "id": release.pk,
        "version": release.version,
        "label": str(release),
        "status": release.status,
        "fingerprint": release.fingerprint,
    }


@extend_schema_view(
    list=extend_schema(
        summary="List releases",
        responses={200: ReleaseSerializer(many=True), **error_responses(400, 401, 404)},
    ),
    retrieve=extend_schema(
        summary="Get a release", responses={200: ReleaseSerializer, **READ_ERRORS}
    ),
    create=extend_schema(
        summary="Create a draft release",
        request=ReleaseSerializer,
        responses={201: ReleaseSerializer, **error_responses(400, 401, 403, 409)},
        examples=[
            OpenApiExample(
                "A new draft",
                value={
                    "product": "6f1c2b9e-3d4a-4a8e-9a53-0b7d1f2c3e4a",
                    "version": "2.0.0",
                    "prompt_version": "0d6b8f5e-8a43-4f1c-9c0e-2a6e1b3d4c5f",
                    "model_version": "9a1e7c3b-5d2f-4b8a-8e6c-1f0a2b3c4d5e",
                    "dataset_versions": [],
                    "settings": {"timeout_seconds": 20, "cache": {"mode": "off"}},
                },
                request_only=True,
            )
        ],
    ),
    partial_update=extend_schema(
        summary="Change a draft release (409 once it was proposed)",
        request=ReleaseUpdateSerializer,
        responses={200: ReleaseSerializer, **WRITE_ERRORS},
    ),
    retire=extend_schema(
        summary="Retire a release (it stays readable)",
        request=None,
        responses={200: ReleaseSerializer, **ACTION_ERRORS},
    ),
)
class ReleaseViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Releases: a product's prompt version, model version, dataset versions and gateway
    settings under a semantic version, with a ``fingerprint`` over all of it. Only a draft that
    was never proposed can be changed; a release becomes ``released`` only by implementing an
    approved change request. Releases are not deleted: they are retired."""

    serializer_class = ReleaseSerializer
    parser_classes = [JSONParser]
    filter_backends = FILTER_BACKENDS
    filterset_class = ReleaseFilter
    search_fields = ["version", "notes", "product__slug"]
    ordering_fields = ["created_at", "updated_at", "version", "status", "effective_from"]
    ordering = ["-created_at"]
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return Release.objects.none()
        return selectors.release_list_for(user=self.request.user)

    def _respond(self, release: Release, status_code: int = status.HTTP_200_OK) -> Response:
        fresh = self.get_queryset().get(pk=release.pk)
        return Response(self.get_serializer(fresh).data, status=status_code)

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        release = services.release_create(actor=request.user, **serializer.validated_data)
        return self._respond(release, status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        release = self.get_object()
        serializer = ReleaseUpdateSerializer(
            release, data=request.data, partial=True, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        changes = {k: v for k, v in serializer.validated_data.items() if k != "product"}
        release = services.release_update(actor=request.user, release=release, **changes)
        return self._respond(release)

    @action(detail=True, methods=["post"])
    def retire(self, request, *args, **kwargs):
        release = services.release_retire(actor=request.user, release=self.get_object())
        return self._respond(release)

    @extend_schema(
        summary="What changes from another release (from) to this one (to)",
        parameters=[
            OpenApiParameter(
                "against",
                OpenApiTypes.UUID,
                OpenApiParameter.QUERY,
                required=False,
                description="Id of the release to compare with (the old side); by default the "
                "product's released release (none when this is it, or there is none).",
            )
        ],
        responses={200: ReleaseCompareSerializer, **error_responses(400, 401, 404)},
    )
    @action(detail=True, methods=["get"])
    def diff(self, request, *args, **kwargs):
        release = self.get_object()
        query = ReleaseDiffQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        against_id = query.validated_data.get("against")
        if against_id is not None:
            other = self.get_queryset().filter(pk=against_id).first()
            if other is None:
                raise exceptions.NotFound("No release with the id given in `against`.")
        else:
            current = selectors.release_current(product=release.product)
            other = (
                self.get_queryset().get(pk=current.pk)
                if current is not None and current.pk != release.pk
                else None
            )
        body = {"from": release_ref(other), "to": release_ref(release)}
        body.update(release_diff(other, release))
        return Response(ReleaseCompareSerializer(body).data)


# --- What was live when -----------------------------------------------------------------------

# A "+" of a UTC offset that reached us unencoded reads as a space: "…T10:00:00 02:00".
_OFFSET_AS_SPACE = re.compile(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$")


class ProductLiveView(generics.GenericAPIView):
    """The release of a product that was live (released) at an instant."""

    serializer_class = ReleaseSerializer
    queryset = Product.objects.none()  # typed for the schema; reads go through the selectors

    @extend_schema(
        summary="The release that was live at an instant",
        parameters=[
            OpenApiParameter(
                "at",
                OpenApiTypes.DATETIME,
                OpenApiParameter.QUERY,
                required=False,
                description="ISO 8601 instant, such as `2025-03-01T12:00:00Z`; now when "
                "omitted. Without an offset it is read as UTC.",
            )
        ],
        responses={
            200: ReleaseSerializer,
            **error_responses(400, 401),
            404: OpenApiResponse(
                ErrorSerializer,
                description="No such product in your scope, or no release was live then.",
            ),
        },
    )
    def get(self, request, pk, *args, **kwargs):
        product = catalog_selectors.product_list_for(user=request.user).filter(pk=pk).first()
        if product is None:
            raise exceptions.NotFound("No such product.")
        params = request.query_params.copy()
        if "at" in params:
            params["at"] = _OFFSET_AS_SPACE.sub(r"\1+\2", params["at"].strip())
        query = LiveQuerySerializer(data=params)
        query.is_valid(raise_exception=True)
        at = query.validated_data.get("at") or timezone.now()
        live = selectors.release_live_at(product=product, at=at)
        if live is None:
            raise exceptions.NotFound(f"No release of {product.slug} was live at {at.isoformat()}.")
        live = selectors.release_list_for(user=request.user).get(pk=live.pk)
        return Response(self.get_serializer(live).data)
