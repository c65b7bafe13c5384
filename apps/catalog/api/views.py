"""The catalog REST API: products, artifacts and their immutable versions.

Views are thin: querysets come from ``catalog.selectors`` (out of scope is a 404), shapes from
the serializers, and every write is one call to ``catalog.services``, which checks the actor's
permission (403), keeps history and records the audit event. Views open no transaction.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response

from apps.core.api import FILTER_BACKENDS, error_responses

from .. import prompting, selectors, services
from ..models import (
    Dataset,
    DatasetVersion,
    Model,
    ModelVersion,
    Product,
    PromptTemplate,
    PromptTemplateVersion,
)
from .filters import (
    ArtifactFilter,
    DatasetVersionFilter,
    ModelVersionFilter,
    ProductFilter,
    PromptVersionFilter,
)
from .serializers import (
    ArtifactUpdateSerializer,
    DatasetSerializer,
    DatasetVersionSerializer,
    DeprecateSerializer,
    DiffQuerySerializer,
    DiffSerializer,
    ModelArtifactSerializer,
    ModelVersionSerializer,
    ProductSerializer,
    ProductUpdateSerializer,
    PromptSerializer,
    PromptVersionSerializer,
    RenderRequestSerializer,
    RenderResponseSerializer,
)

LIST_ERRORS = error_responses(400, 401, 404)
READ_ERRORS = error_responses(401, 404)
CREATE_ERRORS = error_responses(400, 401, 403, 409)
WRITE_ERRORS = error_responses(400, 401, 403, 404, 409)
DELETE_ERRORS = error_responses(401, 403, 404, 409)


def _crud_schema(noun: str, serializer, *, update=None, destroy: bool = False, create_example=None):
    """The ``@extend_schema_view`` of a resource: typed bodies and the error shape."""
    views = {
        "list": extend_schema(
            summary=f"List {noun}s",
            responses={200: serializer(many=True), **LIST_ERRORS},
        ),
        "retrieve": extend_schema(
            summary=f"Get a {noun}", responses={200: serializer, **READ_ERRORS}
        ),
        "create": extend_schema(
            summary=f"Create a {noun}",
            request=serializer,
            responses={201: serializer, **CREATE_ERRORS},
            examples=[OpenApiExample(f"A new {noun}", value=create_example, request_only=True)]
            if create_example
            else None,
        ),
    }
    if update is not None:
        views["partial_update"] = extend_schema(
            summary=f"Change a {noun}",
            request=update,
            responses={200: serializer, **WRITE_ERRORS},
        )
    if destroy:
        views["destroy"] = extend_schema(
            summary=f"Delete a {noun} that nothing references",
            responses={204: None, **DELETE_ERRORS},
        )
    return extend_schema_view(**views)


class CatalogViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Lists and reads through a selector; ``_reload`` re-reads a written object the same way."""

    model: type = Product
    selector = staticmethod(selectors.product_list_for)
    parser_classes = [JSONParser]
    filter_backends = FILTER_BACKENDS

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return self.model.objects.none()
        return self.selector(user=self.request.user)

    def _reload(self, obj):
        return self.get_queryset().get(pk=obj.pk)

    def _respond(self, obj, status_code: int = status.HTTP_200_OK) -> Response:
        serializer = self.get_serializer(self._reload(obj))
        return Response(serializer.data, status=status_code)


# --- Products -------------------------------------------------------------------------------


@_crud_schema(
    "product",
    ProductSerializer,
    update=ProductUpdateSerializer,
    create_example={
        "slug": "support-assistant",
        "name": "Support assistant",
        "owner_team": "demo",
        "risk_class": "limited",
        "intended_use": "Answers customers' questions about their orders.",
    },
)
class ProductViewSet(CatalogViewSet):
    """Products. ``PATCH`` changes ``name``, ``risk_class``, ``intended_use``, or moves the
    ``stage`` (only by the allowed lifecycle moves: 409 otherwise). Products are not deleted:
    they are retired."""

    model = Product
    selector = staticmethod(selectors.product_list_for)
    serializer_class = ProductSerializer
    filterset_class = ProductFilter
    search_fields = ["slug", "name"]
    ordering_fields = ["slug", "name", "stage", "risk_class", "created_at", "updated_at"]
    ordering = ["slug"]
    http_method_names = ["get", "post", "patch", "head", "options"]

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        product = services.product_create(actor=request.user, **serializer.validated_data)
        return self._respond(product, status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        product = self.get_object()
        serializer = ProductUpdateSerializer(product, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        stage = changes.pop("stage", product.stage)
        if stage != product.stage:
            services.require_stage_request(actor=request.user, product=product, to_stage=stage)
        product = services.product_update(actor=request.user, product=product, **changes)
        return self._respond(product)


# --- Artifacts ------------------------------------------------------------------------------


class ArtifactViewSet(CatalogViewSet):
    """Models, datasets and prompt templates: identities shared by a team's products."""

    filterset_class = ArtifactFilter
    search_fields = ["slug", "name"]
    ordering_fields = [
        "slug",
        "name",
        "created_at",
        "updated_at",
        "version_count",
        "latest_version",
    ]
    ordering = ["slug"]
    http_method_names = ["get", "post", "patch", "head", "options"]

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        artifact = services.artifact_create(
            actor=request.user, kind=self.model, **serializer.validated_data
        )
        return self._respond(artifact, status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        artifact = self.get_object()
        serializer = ArtifactUpdateSerializer(artifact, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        artifact = services.artifact_update(
            actor=request.user, artifact=artifact, **serializer.validated_data
        )
        return self._respond(artifact)


@_crud_schema("model", ModelArtifactSerializer, update=ArtifactUpdateSerializer)
class ModelViewSet(ArtifactViewSet):
    model = Model
    selector = staticmethod(selectors.model_list_for)
    serializer_class = ModelArtifactSerializer


@_crud_schema("dataset", DatasetSerializer, update=ArtifactUpdateSerializer)
class DatasetViewSet(ArtifactViewSet):
    model = Dataset
    selector = staticmethod(selectors.dataset_list_for)
    serializer_class = DatasetSerializer


@_crud_schema("prompt template", PromptSerializer, update=ArtifactUpdateSerializer)
class PromptViewSet(ArtifactViewSet):
    model = PromptTemplate
    selector = staticmethod(selectors.prompt_list_for)
    serializer_class = PromptSerializer


# --- Versions -------------------------------------------------------------------------------


class VersionViewSet(CatalogViewSet):
    """Immutable versions: create, read, deprecate, and delete while nothing references them."""

    create_service = staticmethod(services.prompt_version_create)
    search_fields = ["changelog"]
    ordering_fields = ["version", "created_at", "deprecated_at"]
    http_method_names = ["get", "post", "delete", "head", "options"]

    def http_method_not_allowed(self, request, *args, **kwargs):
        if request.method in ("PUT", "PATCH"):
            raise exceptions.MethodNotAllowed(
                request.method,
                detail="Versions are immutable: create a new version instead. Only deprecation "
                "changes a version, through POST …/deprecate/.",
                code="immutable",
            )
        return super().http_method_not_allowed(request, *args, **kwargs)

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        version = self.create_service(actor=request.user, **serializer.validated_data)
        return self._respond(version, status.HTTP_201_CREATED)

    def destroy(self, request, *args, **kwargs):
        services.version_delete(actor=request.user, version=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @action(detail=True, methods=["post"])
    def deprecate(self, request, *args, **kwargs):
        version = self.get_object()
        serializer = DeprecateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        version = services.version_deprecate(
            actor=request.user, version=version, reason=serializer.validated_data.get("reason", "")
        )
        return self._respond(version)


def _deprecate_schema(serializer):
    return extend_schema(
        summary="Deprecate a version (it stays readable and referenced)",
        request=DeprecateSerializer,
        responses={200: serializer, **WRITE_ERRORS},
    )


@extend_schema_view(deprecate=_deprecate_schema(PromptVersionSerializer))
@_crud_schema("prompt version", PromptVersionSerializer, destroy=True)
class PromptVersionViewSet(VersionViewSet):
    model = PromptTemplateVersion
    selector = staticmethod(selectors.prompt_version_list_for)
    create_service = staticmethod(services.prompt_version_create)
    serializer_class = PromptVersionSerializer
    filterset_class = PromptVersionFilter
    search_fields = ["changelog", "prompt__slug"]

    @extend_schema(
        summary="Render the version's messages with variables (sandboxed)",
        request=RenderRequestSerializer,
        responses={200: RenderResponseSerializer, **error_responses(400, 401, 404)},
        examples=[
            OpenApiExample(
                "Variables", value={"variables": {"q": "Where is my order?"}}, request_only=True
            )
        ],
    )
    @action(detail=True, methods=["post"])
    def render(self, request, *args, **kwargs):
        version = self.get_object()
        serializer = RenderRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        messages = prompting.render_messages(
            version.messages, version.variables_schema, serializer.validated_data.get("variables")
        )
        return Response(RenderResponseSerializer({"messages": messages}).data)

    @extend_schema(
        summary="Line diff of another version's messages (from) against this one (to)",
        parameters=[
            OpenApiParameter(
                "against",
                OpenApiTypes.UUID,
                OpenApiParameter.QUERY,
                required=True,
                description="Id of the version to compare with (the old side); any prompt "
                "version you can see.",
            )
        ],
        responses={200: DiffSerializer, **error_responses(400, 401, 404)},
    )
    @action(detail=True, methods=["get"])
    def diff(self, request, *args, **kwargs):
        version = self.get_object()
        query = DiffQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        other = self.get_queryset().filter(pk=query.validated_data["against"]).first()
        if other is None:
            raise exceptions.NotFound("No prompt version with the id given in `against`.")
        lines = prompting.line_diff(other.messages, version.messages, str(other), str(version))
        body = {"from": _ref(other), "to": _ref(version), "lines": lines}
        return Response(DiffSerializer(body).data)


def _ref(version: PromptTemplateVersion) -> dict:
    return {
        "id": version.pk,
        "version": version.version,
        "label": str(version),
        "content_hash": version.content_hash,
    }


@extend_schema_view(deprecate=_deprecate_schema(ModelVersionSerializer))
@_crud_schema("model version", ModelVersionSerializer, destroy=True)
class ModelVersionViewSet(VersionViewSet):
    model = ModelVersion
    selector = staticmethod(selectors.model_version_list_for)
    create_service = staticmethod(services.model_version_create)
    serializer_class = ModelVersionSerializer
    filterset_class = ModelVersionFilter
    search_fields = ["changelog", "model__slug", "provider_model"]


@extend_schema_view(deprecate=_deprecate_schema(DatasetVersionSerializer))
@_crud_schema("dataset version", DatasetVersionSerializer, destroy=True)
class DatasetVersionViewSet(VersionViewSet):
    """Dataset versions: upload a JSONL or CSV file (multipart) to have it profiled, or give a
    ``uri`` (JSON or multipart)."""

    model = DatasetVersion
    selector = staticmethod(selectors.dataset_version_list_for)
    create_service = staticmethod(services.dataset_version_create)
    serializer_class = DatasetVersionSerializer
    filterset_class = DatasetVersionFilter
    search_fields = ["changelog", "dataset__slug", "source"]
    parser_classes = [MultiPartParser, JSONParser]
