"""The evaluation-run API: ``/api/v1/eval-runs/`` (serializers, filters and the view set).

Views are thin: runs come from ``runs.run_list_for`` (a run outside the user's teams is a 404)
and every write is one call to ``evaluations.runs``, which checks who may start or cancel (403),
validates (400) and records the audit event. A run is queued for the worker when the request's
transaction commits; poll it until ``state`` is ``succeeded``, ``failed`` or ``cancelled``.

Results are written by the worker only: ``results/`` is read-only and no endpoint accepts a
result, a counter or a state (every field of a run but those of the create is read-only).
"""

from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from apps.core.api import (
    FILTER_BACKENDS,
    ScopedPrimaryKeyRelatedField,
    SearchFilter,
    error_responses,
)
from apps.core.exceptions import ApplicationError
from apps.core.schema import NamedChoiceField
from apps.releases.api.serializers import RunTargetSerializer

from .. import runs, selectors
from ..models import (
    MAX_CONCURRENCY,
    MIN_CONCURRENCY,
    CrRole,
    EvalResult,
    EvalRun,
    EvalSuite,
    EvalSuiteVersion,
    ResultOutcome,
    RunState,
)

LIST_ERRORS = error_responses(400, 401, 404)  # 404: a page past the last
READ_ERRORS = error_responses(401, 404)
CREATE_ERRORS = error_responses(400, 401, 403, 404)
EXAMPLE_ID = "0d6b8f5e-8a43-4f1c-9c0e-2a6e1b3d4c5f"


def _username() -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)


# --- serializers ---------------------------------------------------------------------------------


class EvalRunCreateSerializer(RunTargetSerializer):
    """What to run against what: a suite (its latest current version) or a suite version; a
    release, or a prompt version and a model version."""

    suite = ScopedPrimaryKeyRelatedField(
        model=EvalSuite,
        selector=selectors.suite_list_for,
        required=False,
        allow_null=True,
        help_text="Evaluation suite id: its latest version that is not deprecated. Or give "
        "`suite_version`.",
    )
    suite_version = ScopedPrimaryKeyRelatedField(
        model=EvalSuiteVersion,
        selector=selectors.suite_version_list_for,
        required=False,
        allow_null=True,
        help_text="Evaluation suite version id (instead of `suite`).",
    )
    concurrency = serializers.IntegerField(
        min_value=MIN_CONCURRENCY,
        max_value=MAX_CONCURRENCY,
        required=False,
        allow_null=True,
        help_text="The run's calls in flight at once (default 4); the provider's own limit, "
        "shared by every run, may hold it lower.",
    )

    def validate(self, attrs):
        suite, version = attrs.pop("suite", None), attrs.get("suite_version")
        if (suite is None) == (version is None):
            raise serializers.ValidationError(
                {"suite": ["Give either a suite (its latest version) or a suite_version."]}
            )
        if suite is not None:
            latest = runs.latest_suite_version(suite)
            if latest is None:
                raise serializers.ValidationError(
                    {"suite": [f"Suite {suite.slug} has no current (not deprecated) version."]}
                )
            attrs["suite_version"] = latest
        return attrs


class AggregateGroupSerializer(serializers.Serializer):
    vary = serializers.CharField(help_text="The variable the group's cases vary.")
    values = serializers.DictField(
        child=serializers.FloatField(), help_text="Pass rate of the cases of each value, 0..1."
    )
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="Cases per value.")
    gap = serializers.FloatField(help_text="Highest value pass rate minus the lowest.")


class LatencySerializer(serializers.Serializer):
    p50 = serializers.IntegerField(allow_null=True)
    p95 = serializers.IntegerField(allow_null=True)


class AssertionCountSerializer(serializers.Serializer):
    passed = serializers.IntegerField()
    total = serializers.IntegerField()


class EvalRunAggregatesSerializer(serializers.Serializer):
    """The run's figures, from its results (empty until the run has started). See
    docs/evaluations.md."""

    pass_rate = serializers.FloatField(
        required=False, allow_null=True, help_text="Passed over all the run's cases, 0..1."
    )
    total = serializers.IntegerField(required=False)
    completed = serializers.IntegerField(required=False)
    passed = serializers.IntegerField(required=False)
    failed = serializers.IntegerField(required=False)
    errored = serializers.IntegerField(required=False)
    per_assertion = serializers.DictField(
        child=serializers.FloatField(),
        required=False,
        help_text="Pass rate of the checks of each assertion type, 0..1.",
    )
    assertion_counts = serializers.DictField(child=AssertionCountSerializer(), required=False)
    latency_ms = LatencySerializer(
        required=False, help_text="Nearest-rank percentiles of the calls that answered."
    )
    tokens = serializers.DictField(
        child=serializers.IntegerField(), required=False, help_text="`in` and `out`."
    )
    cost = serializers.CharField(required=False, help_text="A decimal string.")
    groups = serializers.DictField(
        child=AggregateGroupSerializer(),
        required=False,
        help_text="Case groups varying one variable: pass rate per value and the gap.",
    )
    duration_seconds = serializers.FloatField(required=False, allow_null=True)


class EvalRunSerializer(serializers.ModelSerializer):
    """A run: what it runs with, its progress and (once finished) its figures."""

    state = NamedChoiceField(enum_name="EvalRunStateEnum", choices=RunState.choices, read_only=True)
    cr_role = NamedChoiceField(
        enum_name="EvalRunCrRoleEnum",
        choices=[("", "None"), *CrRole.choices],
        read_only=True,
        help_text="What the run is to its change request: baseline, proposed, or empty.",
    )
    suite = serializers.UUIDField(source="suite_version.suite_id", read_only=True)
    suite_version_number = serializers.IntegerField(source="suite_version.version", read_only=True)
    team = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    failed = serializers.IntegerField(
        source="failed_count", read_only=True, help_text="Cases that ran and failed a check."
    )
    progress = serializers.SerializerMethodField(help_text="Completed over total, from 0 to 1.")
    aggregates = serializers.SerializerMethodField(
        help_text="The run's figures (empty until it has started); see the schema's "
        "`EvalRunAggregates`."
    )
    created_by = _username()
    cancelled_by = _username()

    class Meta:
        model = EvalRun
        fields = [
            "id",
            "state",
            "suite",
            "suite_version",
            "suite_version_number",
            "release",
            "prompt_version",
            "model_version",
            "change_request",
            "cr_role",
            "team",
            "concurrency",
            "total",
            "completed",
            "passed",
            "failed",
            "errored",
            "progress",
            "pass_rate",
            "cost",
            "aggregates",
            "release_fingerprint",
            "dataset_version_hash",
            "harness_version",
            "error",
            "created_by",
            "cancelled_by",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_progress(self, run: EvalRun) -> float:
        return run.completed / run.total if run.total else 0.0

    @extend_schema_field(EvalRunAggregatesSerializer)
    def get_aggregates(self, run: EvalRun) -> dict:
        return run.aggregates or {}


class CheckSerializer(serializers.Serializer):
    type = serializers.CharField()
    passed = serializers.BooleanField()
    detail = serializers.CharField(allow_blank=True)
    score = serializers.FloatField(allow_null=True, required=False)


class EvalResultSerializer(serializers.ModelSerializer):
    """One case's result (written by the worker)."""

    outcome = NamedChoiceField(
        enum_name="EvalResultOutcomeEnum", choices=ResultOutcome.choices, read_only=True
    )
    key = serializers.CharField(source="case.key", read_only=True)
    position = serializers.IntegerField(source="case.position", read_only=True)
    variables = serializers.DictField(source="case.variables", read_only=True)
    expected = serializers.CharField(source="case.expected", read_only=True)
    checks = CheckSerializer(many=True, read_only=True)

    class Meta:
        model = EvalResult
        fields = [
            "id",
            "case",
            "key",
            "position",
            "variables",
            "expected",
            "outcome",
            "output",
            "checks",
            "error",
            "latency_ms",
            "tokens_in",
            "tokens_out",
            "cost",
            "call",
            "created_at",
        ]
        read_only_fields = fields


# --- filters -------------------------------------------------------------------------------------


class EvalRunFilter(filters.FilterSet):
    state = filters.ChoiceFilter(choices=RunState.choices)
    release = filters.UUIDFilter(field_name="release_id", help_text="Release id.")
    suite = filters.UUIDFilter(field_name="suite_version__suite_id", help_text="Suite id.")
    suite_version = filters.UUIDFilter(field_name="suite_version_id", help_text="Suite version id.")
    prompt_version = filters.UUIDFilter(
        field_name="prompt_version_id", help_text="Prompt version id."
    )
    model_version = filters.UUIDFilter(field_name="model_version_id", help_text="Model version id.")
    change_request = filters.UUIDFilter(
        field_name="change_request_id", help_text="Change request id."
    )
    cr_role = filters.ChoiceFilter(choices=CrRole.choices)
    created_by = filters.CharFilter(
        field_name="created_by__username", help_text="Username of who started it."
    )

    class Meta:
        model = EvalRun
        fields = [
            "state",
            "release",
            "suite",
            "suite_version",
            "prompt_version",
            "model_version",
            "change_request",
            "cr_role",
            "created_by",
        ]


class ResultQuerySerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=ResultOutcome.choices, required=False)


# --- the view set --------------------------------------------------------------------------

RUN_FILTER_BACKENDS = [backend for backend in FILTER_BACKENDS if backend is not SearchFilter]


@extend_schema_view(
    list=extend_schema(
        summary="List evaluation runs",
        responses={200: EvalRunSerializer(many=True), **LIST_ERRORS},
    ),
    retrieve=extend_schema(
        summary="Get an evaluation run: progress, figures, what it ran with",
        responses={200: EvalRunSerializer, **READ_ERRORS},
    ),
    create=extend_schema(
        summary="Run a suite against a release (or a prompt version + model version)",
        description="Queues the run; the worker moves `state` from `queued` to `running` and "
        "ends it `succeeded` (figures in `aggregates`), `failed` (why in `error`: the target "
        "cannot be called, or every call failed) or `cancelled`. Product managers, reviewers "
        "and admins of the team owning the release's product (or the prompt) may start runs.",
        request=EvalRunCreateSerializer,
        responses={201: EvalRunSerializer, **CREATE_ERRORS},
        examples=[
            OpenApiExample(
                "A suite against a release",
                value={"suite": EXAMPLE_ID, "release": EXAMPLE_ID, "concurrency": 4},
                request_only=True,
            )
        ],
    ),
    cancel=extend_schema(
        summary="Cancel a queued or running run",
        description="Cases not yet started are not run; calls in flight finish and are "
        "recorded. Whoever started the run, or a product manager or admin of its team.",
        request=None,
        responses={200: EvalRunSerializer, **error_responses(401, 403, 404, 409)},
    ),
    results=extend_schema(
        summary="List a run's results, in suite order (read-only)",
        parameters=[
            OpenApiParameter(
                "outcome",
                OpenApiTypes.STR,
                enum=ResultOutcome.values,
                description="Only the results with this outcome.",
            )
        ],
        request=None,
        responses={200: EvalResultSerializer(many=True), **LIST_ERRORS},
    ),
)
class EvalRunViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Evaluation runs: a suite version against a release (or a prompt version with a model
    version). Each case is one call through the gateway pipeline, checked by its assertions;
    ``aggregates`` holds the pass rate, the pass rate per assertion type, latency p50/p95,
    tokens, cost and the pass-rate gap of case groups that vary one variable. Results come
    from the worker only: no endpoint writes them."""

    serializer_class = EvalRunSerializer
    parser_classes = [JSONParser]
    filter_backends = RUN_FILTER_BACKENDS
    filterset_class = EvalRunFilter
    ordering_fields = ["created_at", "finished_at", "state", "pass_rate", "cost"]
    ordering = ["-created_at"]
    http_method_names = ["get", "post", "head", "options"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return EvalRun.objects.none()
        return runs.run_list_for(user=self.request.user)

    def _respond(self, run: EvalRun, code: int = status.HTTP_200_OK) -> Response:
        fresh = runs.run_list_for(user=self.request.user).get(pk=run.pk)
        return Response(EvalRunSerializer(fresh).data, status=code)

    def create(self, request, *args, **kwargs):
        serializer = EvalRunCreateSerializer(
            data=request.data, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        run = runs.eval_run_create(actor=request.user, **serializer.validated_data)
        return self._respond(run, status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"], filter_backends=[])
    def cancel(self, request, *args, **kwargs):
        run = runs.eval_run_cancel(actor=request.user, run=self.get_object())
        return self._respond(run)

    @action(detail=True, methods=["get"], filter_backends=[])
    def results(self, request, *args, **kwargs):
        run = self.get_object()
        query = ResultQuerySerializer(data=request.query_params)
        if not query.is_valid():
            raise ApplicationError(
                "invalid",
                "outcome is pass, fail or error.",
                {"outcome": [str(e) for e in query.errors.get("outcome", [])]},
            )
        results = runs.result_list(run=run, outcome=query.validated_data.get("outcome"))
        page = self.paginate_queryset(results)
        return self.get_paginated_response(EvalResultSerializer(page, many=True).data)
