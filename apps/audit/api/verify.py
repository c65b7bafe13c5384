"""The REST API of tamper evidence: verification runs, signed checkpoints, the public key.

- ``POST /api/v1/audit/verifications/`` starts a verification run (202; a Celery task runs it
  when the request commits); poll ``GET /api/v1/audit/verifications/{id}/`` until ``state`` is
  ``intact`` or ``broken``. Auditors, admins and superusers only (others 403).
- ``GET /api/v1/audit/checkpoints/``: the signed checkpoints, newest first (paginated), each
  with the exact ``signed_payload`` its ``signature`` covers. Auditors, admins, superusers.
- ``GET /api/v1/audit/public-key/``: the Ed25519 public key(s) checkpoints verify with. Any
  signed-in user.
"""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import error_responses

from .. import signing
from ..ed25519 import PAYLOAD_VERSION, key_id_for
from ..models import AuditCheckpoint, VerificationRun
from ..services import PROBLEM_KINDS, may_verify, verification_start

READ_ERRORS = error_responses(401, 403, 404)
LIST_ERRORS = error_responses(401, 403, 404)  # 404: a page past the last
CREATE_ERRORS = error_responses(401, 403)


class IsVerifier(permissions.BasePermission):
    message = "Only auditors, admins and superusers verify the audit chain."

    def has_permission(self, request, view) -> bool:
        return may_verify(request.user)


class AuditVerificationRunSerializer(serializers.ModelSerializer):
    state = serializers.CharField(read_only=True, help_text="`running`, then `intact` or `broken`.")
    kind = serializers.CharField(
        read_only=True,
        help_text="The first problem's kind: "
        + ", ".join(f"`{k}`" for k in PROBLEM_KINDS)
        + "; empty when intact or running.",
    )
    first_bad_seq = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="The seq the first problem is at."
    )
    problem = serializers.CharField(read_only=True, help_text="The first problem, in words.")
    progress = serializers.SerializerMethodField(help_text="checked / total, 0..1.")
    notes = serializers.SerializerMethodField(
        help_text="Information that is not a failure (events not yet anchored by a checkpoint)."
    )
    requested_by = serializers.SerializerMethodField(help_text="Username, or null.")

    class Meta:
        model = VerificationRun
        fields = [
            "id",
            "state",
            "checked",
            "total",
            "progress",
            "kind",
            "first_bad_seq",
            "problem",
            "checkpoints_checked",
            "anchored_seq",
            "notes",
            "requested_by",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_progress(self, run: VerificationRun) -> float:
        if run.state != "running":
            return 1.0
        return round(run.checked / run.total, 4) if run.total else 0.0

    def get_notes(self, run: VerificationRun) -> list[str]:
        return [line for line in run.notes.splitlines() if line]

    def get_requested_by(self, run: VerificationRun) -> str | None:
        return run.requested_by.get_username() if run.requested_by else None


class AuditCheckpointSerializer(serializers.ModelSerializer):
    signed_payload = serializers.SerializerMethodField(
        help_text=f"The exact text the signature covers (UTF-8): `{PAYLOAD_VERSION}`, seq, "
        "head_hash, at, key_id, joined by newlines."
    )
    at = serializers.SerializerMethodField(help_text="ISO 8601, exactly as signed.")

    class Meta:
        model = AuditCheckpoint
        fields = ["seq", "head_hash", "at", "key_id", "signature", "events", "signed_payload"]
        read_only_fields = fields

    def get_signed_payload(self, checkpoint: AuditCheckpoint) -> str:
        return checkpoint.payload().decode()

    def get_at(self, checkpoint: AuditCheckpoint) -> str:
        return checkpoint.at_iso


class AuditPublicKeyEntrySerializer(serializers.Serializer):
    key_id = serializers.CharField()
    public_key = serializers.CharField(help_text="PEM (SubjectPublicKeyInfo).")


class AuditPublicKeySerializer(serializers.Serializer):
    algorithm = serializers.CharField(help_text="Always `Ed25519`.")
    key_id = serializers.CharField(help_text="sha256 of the raw public key, 16 hex digits.")
    public_key = serializers.CharField(help_text="PEM (SubjectPublicKeyInfo).")
    previous_keys = AuditPublicKeyEntrySerializer(
        many=True, help_text="Rotated-out keys whose checkpoints still verify."
    )


@extend_schema_view(
    list=extend_schema(
        summary="List verification runs of the audit chain",
        responses={200: AuditVerificationRunSerializer(many=True), **LIST_ERRORS},
    ),
    retrieve=extend_schema(
        summary="Get a verification run (poll until it is intact or broken)",
        responses={200: AuditVerificationRunSerializer, **READ_ERRORS},
    ),
    create=extend_schema(
        summary="Start a verification run of the audit chain and its signed checkpoints",
        request=None,
        responses={202: AuditVerificationRunSerializer, **CREATE_ERRORS},
    ),
)
class VerificationRunViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Runs of the chain verifier. A run recomputes every event's hash in order, checks the
    links and every signed checkpoint, and names the first problem (``kind``,
    ``first_bad_seq``, ``problem``)."""

    serializer_class = AuditVerificationRunSerializer
    permission_classes = [permissions.IsAuthenticated, IsVerifier]
    filter_backends: list = []
    queryset = VerificationRun.objects.select_related("requested_by").order_by("-started_at", "-pk")

    def create(self, request, *args, **kwargs):
        run = verification_start(actor=request.user)
        return Response(AuditVerificationRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(
    list=extend_schema(
        summary="List the signed checkpoints of the audit chain, newest first",
        responses={200: AuditCheckpointSerializer(many=True), **LIST_ERRORS},
    ),
)
class CheckpointViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Signed anchors of the chain: every checkpoint signs (seq, head hash, time, key id) with
    an Ed25519 key kept outside the database; check one with the public key."""

    serializer_class = AuditCheckpointSerializer
    permission_classes = [permissions.IsAuthenticated, IsVerifier]
    filter_backends: list = []
    queryset = AuditCheckpoint.objects.order_by("-seq")


class PublicKeyView(APIView):
    """The public key checkpoints are signed with (and the rotated-out ones)."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        summary="Get the public key that audit checkpoints verify with",
        responses={200: AuditPublicKeySerializer, **error_responses(401)},
    )
    def get(self, request):
        current = signing.key_id()
        previous = [
            {"key_id": key_id_for(pem), "public_key": pem.strip() + "\n"}
            for pem in signing.extra_public_keys()
        ]
        data = {
            "algorithm": "Ed25519",
            "key_id": current,
            "public_key": signing.public_key_pem(),
            "previous_keys": [entry for entry in previous if entry["key_id"] != current],
        }
        return Response(AuditPublicKeySerializer(data).data)
