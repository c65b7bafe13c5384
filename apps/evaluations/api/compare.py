"""``GET /api/v1/eval-comparisons/?a=<run>&b=<run>``: two runs compared case by case.

A plain view (not under ``eval-runs/``, whose router owns ``eval-runs/<id>/``). Both runs must
be in the caller's scope (else 404) and of one suite (else 400 ``different_suites``). Reads
only; the figures are those of ``evaluations.comparison``.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import error_responses
from apps.core.exceptions import ApplicationError
from apps.core.schema import NamedChoiceField

from ..comparison import CHANGE_KINDS, attach_outputs, compare_runs, comparison_dict
from ..models import EvalRun, ResultOutcome, RunState


class CompareQuerySerializer(serializers.Serializer):
    a = serializers.UUIDField(help_text="The old run (usually the baseline's).")
    b = serializers.UUIDField(help_text="The new run (usually the proposed release's).")
    change = serializers.ChoiceField(
        choices=CHANGE_KINDS, required=False, help_text="Only the cases of this kind of change."
    )


class ComparedRunSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    state = NamedChoiceField(enum_name="EvalRunStateEnum", choices=RunState.choices)
    release = serializers.UUIDField(source="release_id", allow_null=True)
    release_version = serializers.SerializerMethodField()
    suite = serializers.UUIDField(source="suite_version.suite_id")
    suite_version = serializers.UUIDField(source="suite_version_id")
    suite_version_number = serializers.IntegerField(source="suite_version.version")
    change_request = serializers.UUIDField(source="change_request_id", allow_null=True)
    cr_role = serializers.CharField(help_text="baseline, proposed, or empty.")
    total = serializers.IntegerField()
    completed = serializers.IntegerField()
    passed = serializers.IntegerField()
    errored = serializers.IntegerField()
    pass_rate = serializers.FloatField(allow_null=True)
    cost = serializers.DecimalField(max_digits=16, decimal_places=8)

    def get_release_version(self, run: EvalRun) -> str | None:
        return run.release.version if run.release_id else None


class MetricSerializer(serializers.Serializer):
    key = serializers.CharField(
        help_text="pass_rate, passed, errored, latency_p50, latency_p95, tokens_in, tokens_out, "
        "cost."
    )
    label = serializers.CharField()
    a = serializers.JSONField(allow_null=True, help_text="Run a's figure (cost: decimal string).")
    b = serializers.JSONField(allow_null=True)
    delta = serializers.JSONField(allow_null=True, help_text="b - a.")
    relative = serializers.FloatField(allow_null=True, help_text="(b - a) / a.")
    better = serializers.ChoiceField(
        choices=["better", "worse", "same"], allow_null=True, help_text="Null: no direction."
    )
    unit = serializers.CharField(help_text="rate, ms, money, or empty for a count.")


class AssertionDeltaSerializer(serializers.Serializer):
    type = serializers.CharField()
    a_passed = serializers.IntegerField()
    a_total = serializers.IntegerField()
    b_passed = serializers.IntegerField()
    b_total = serializers.IntegerField()
    a_rate = serializers.FloatField(allow_null=True)
    b_rate = serializers.FloatField(allow_null=True)
    delta = serializers.FloatField(allow_null=True)


class CaseResultSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    outcome = serializers.ChoiceField(choices=ResultOutcome.choices)
    output = serializers.CharField(allow_blank=True)
    error = serializers.CharField(allow_blank=True)
    latency_ms = serializers.IntegerField()
    tokens_in = serializers.IntegerField()
    tokens_out = serializers.IntegerField()
    cost = serializers.CharField(help_text="Decimal string.")
    checks = serializers.ListField(child=serializers.DictField())


class ComparedCaseSerializer(serializers.Serializer):
    key = serializers.CharField()
    position = serializers.IntegerField()
    change = serializers.ChoiceField(choices=CHANGE_KINDS)
    a = CaseResultSerializer(allow_null=True)
    b = CaseResultSerializer(allow_null=True)


class ComparisonSerializer(serializers.Serializer):
    a = ComparedRunSerializer()
    b = ComparedRunSerializer()
    finished = serializers.BooleanField(help_text="Both runs are finished.")
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="Cases per change.")
    regressed = serializers.ListField(child=serializers.CharField(), help_text="Case keys.")
    improved = serializers.ListField(child=serializers.CharField(), help_text="Case keys.")
    metrics = MetricSerializer(many=True)
    assertions = AssertionDeltaSerializer(many=True)
    cases = ComparedCaseSerializer(many=True)


class EvalComparisonView(APIView):
    """Two evaluation runs side by side: per case (matched by key) regressed, improved,
    unchanged, new, missing or pending; metric deltas; both outputs of each case."""

    @extend_schema(
        summary="Compare two evaluation runs",
        parameters=[
            OpenApiParameter("a", OpenApiTypes.UUID, OpenApiParameter.QUERY, required=True),
            OpenApiParameter("b", OpenApiTypes.UUID, OpenApiParameter.QUERY, required=True),
            OpenApiParameter(
                "change", OpenApiTypes.STR, OpenApiParameter.QUERY, enum=list(CHANGE_KINDS)
            ),
        ],
        responses={200: ComparisonSerializer, **error_responses(400, 401, 404)},
    )
    def get(self, request, *args, **kwargs):
        from ..runs import run_list_for

        query = CompareQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        runs = {
            run.pk: run
            for run in run_list_for(user=request.user)
            .select_related("suite_version", "release", "release__product")
            .filter(pk__in=[query.validated_data["a"], query.validated_data["b"]])
        }
        a, b = runs.get(query.validated_data["a"]), runs.get(query.validated_data["b"])
        if a is None or b is None:
            raise exceptions.NotFound("No such run, or it is outside your scope.")
        if a.suite_version.suite_id != b.suite_version.suite_id:
            raise ApplicationError(
                "different_suites",
                "These runs are of different suites; only runs of one suite compare.",
            )
        comparison = compare_runs(a, b)
        change = query.validated_data.get("change")
        rows = attach_outputs(comparison.of(change) if change else comparison.rows)
        data = comparison_dict(comparison, rows=rows)
        data["a"] = ComparedRunSerializer(a).data
        data["b"] = ComparedRunSerializer(b).data
        return Response(data)
