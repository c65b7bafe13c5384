"""The playground REST API: playground runs and batch runs.

Views are thin: querysets come from ``playground.selectors`` (a run outside the user's teams is a
404), and every write is one call to ``playground.services``, which checks who may run (403:
auditors read runs but never start one, since a run costs money), validates the input (400, such
as variables that do not fit the prompt's schema) and records the audit event. A run is queued
for the worker when the request's transaction commits; poll the run until its ``state`` is
``succeeded`` or ``failed``.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import JSONParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response

from apps.core.api import FILTER_BACKENDS, SearchFilter, error_responses

from .. import selectors, services
from ..models import BatchRun, PlaygroundRun
from ..results import results_response
from .filters import BatchRunFilter, PlaygroundRunFilter
from .serializers import (
    BatchRunCreateSerializer,
    BatchRunSerializer,
    PlaygroundRunCreateSerializer,
    PlaygroundRunSerializer,
)

LIST_ERRORS = error_responses(400, 401, 404)  # 404: a page past the last
READ_ERRORS = error_responses(401, 404)
CREATE_ERRORS = error_responses(400, 401, 403, 404)
JSONL = "application/jsonl"


class JSONLinesRenderer(BaseRenderer):
    """Lets a client ask for ``application/jsonl``; errors still come as one JSON object."""

    media_type = JSONL
    format = "jsonl"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return JSONRenderer().render(data) + b"\n"


# No free-text search: runs are found by their target, state and author.
RUN_FILTER_BACKENDS = [backend for backend in FILTER_BACKENDS if backend is not SearchFilter]

RELEASE_EXAMPLE = "0d6b8f5e-8a43-4f1c-9c0e-2a6e1b3d4c5f"


@extend_schema_view(
    list=extend_schema(
        summary="List playground runs",
        responses={200: PlaygroundRunSerializer(many=True), **LIST_ERRORS},
    ),
    retrieve=extend_schema(
        summary="Get a playground run (poll it until it has succeeded or failed)",
        responses={200: PlaygroundRunSerializer, **READ_ERRORS},
    ),
    create=extend_schema(
        summary="Run a release (or a prompt version + model version) once",
        request=PlaygroundRunCreateSerializer,
        responses={201: PlaygroundRunSerializer, **CREATE_ERRORS},
        examples=[
            OpenApiExample(
                "A release",
                value={
                    "release": RELEASE_EXAMPLE,
                    "variables": {"company": "Acme", "question": "Where is my invoice?"},
                },
                request_only=True,
            )
        ],
    ),
)
class PlaygroundRunViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """One call of a release, or of a prompt version with a model version, with a set of
    variables. ``state`` moves queued → running → succeeded | failed; once done the run shows
    the answer (``output``), ``tokens_in``/``tokens_out``, ``cost``, ``latency_ms`` and the
    rendered prompt (``messages``). Bad variables are refused (400) and no run is created."""

    serializer_class = PlaygroundRunSerializer
    parser_classes = [JSONParser]
    filter_backends = RUN_FILTER_BACKENDS
    filterset_class = PlaygroundRunFilter
    ordering_fields = ["created_at", "finished_at", "state", "latency_ms", "cost"]
    ordering = ["-created_at"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return PlaygroundRun.objects.none()
        return selectors.playground_run_list_for(user=self.request.user)

    def create(self, request, *args, **kwargs):
        serializer = PlaygroundRunCreateSerializer(
            data=request.data, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        run = services.playground_run_create(actor=request.user, **serializer.validated_data)
        fresh = self.get_queryset().get(pk=run.pk)
        return Response(PlaygroundRunSerializer(fresh).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(
        summary="List batch runs",
        responses={200: BatchRunSerializer(many=True), **LIST_ERRORS},
    ),
    retrieve=extend_schema(
        summary="Get a batch run and its progress",
        responses={200: BatchRunSerializer, **READ_ERRORS},
    ),
    create=extend_schema(
        summary="Run a release (or a prompt version + model version) over a dataset version",
        request=BatchRunCreateSerializer,
        responses={201: BatchRunSerializer, **CREATE_ERRORS},
        examples=[
            OpenApiExample(
                "A release over a dataset",
                value={
                    "release": RELEASE_EXAMPLE,
                    "dataset_version": "6f1c2b9e-3d4a-4a8e-9a53-0b7d1f2c3e4a",
                    "variables": {"company": "Acme"},
                    "concurrency": 4,
                },
                request_only=True,
            )
        ],
    ),
    cancel=extend_schema(
        summary="Cancel a queued or running batch (rows not yet started are not run)",
        request=None,
        responses={200: BatchRunSerializer, **error_responses(401, 403, 404, 409)},
    ),
    results=extend_schema(
        summary="Download the rows' results as JSON Lines",
        description="One JSON object per row, in dataset order: `index`, `variables`, "
        "`state`, `output`, `tokens_in`, `tokens_out`, `cost` (a decimal string), "
        "`latency_ms`, `error`, `call_id`. Streamed; rows not yet finished say so in `state`.",
        request=None,
        responses={
            (200, JSONL): OpenApiResponse(OpenApiTypes.STR, description="JSON Lines."),
            **READ_ERRORS,
        },
    ),
)
class BatchRunViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """A release (or a prompt version + model version) over every row of a dataset version:
    one row is one set of variables, over the batch's ``variables``. ``state`` moves queued →
    running → succeeded | failed | cancelled; a batch succeeds when any row succeeded (count the
    failures in ``failed_count``) and fails when every row failed. At most ``concurrency`` calls
    are in flight at once; at most 10,000 rows per batch."""

    serializer_class = BatchRunSerializer
    parser_classes = [JSONParser]
    filter_backends = RUN_FILTER_BACKENDS
    filterset_class = BatchRunFilter
    ordering_fields = ["created_at", "finished_at", "state", "total"]
    ordering = ["-created_at"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return BatchRun.objects.none()
        return selectors.batch_run_list_for(user=self.request.user)

    def _respond(self, batch: BatchRun, status_code: int = status.HTTP_200_OK) -> Response:
        fresh = selectors.batch_run_list_for(user=self.request.user).get(pk=batch.pk)
        return Response(BatchRunSerializer(fresh).data, status=status_code)

    def create(self, request, *args, **kwargs):
        serializer = BatchRunCreateSerializer(
            data=request.data, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        batch = services.batch_run_create(actor=request.user, **serializer.validated_data)
        return self._respond(batch, status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"])
    def cancel(self, request, *args, **kwargs):
        batch = services.batch_run_cancel(actor=request.user, batch=self.get_object())
        return self._respond(batch)

    @action(
        detail=True,
        methods=["get"],
        renderer_classes=[JSONRenderer, JSONLinesRenderer],
        filter_backends=[],
        pagination_class=None,
    )
    def results(self, request, *args, **kwargs):
        return results_response(self.get_object())
