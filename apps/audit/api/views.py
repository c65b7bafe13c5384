"""The audit trail's REST API: events (read-only, cursor-paginated), their streaming export,
and the field-by-field history of any object.

The trail is append-only: the events accept GET only (other methods are a 405). Who reads what
is ``audit.selectors``' rule (auditors and superusers: everything; product managers and admins:
their teams' products and their own actions; others: 403). Pages use a cursor on ``-seq``, so a
page of a million-event trail is one index range scan and nothing counts the matches.
"""

from django.http import Http404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import permissions, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import CursorPagination
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import error_responses

from .. import selectors
from ..exports import FORMATS, export_response
from ..filters import AuditEventFilter, filter_params
from ..history_browse import UnknownObjectType, object_history
from ..models import AuditEvent
from .serializers import AuditEventSerializer, HistoryQuerySerializer, ObjectHistorySerializer


class TrailReader(permissions.BasePermission):
    """Auditors, superusers, and the product managers and admins of a team."""

    message = "Only auditors, product managers and admins read the audit trail."

    def has_permission(self, request, view) -> bool:
        return selectors.trail_may_browse(request.user)


class AuditCursorPagination(CursorPagination):
    ordering = "-seq"
    page_size = 25
    page_size_query_param = "page_size"
    max_page_size = 200


class _CSVRenderer(BaseRenderer):
    """Names ``text/csv`` for negotiation; the export streams its own body."""

    media_type = "text/csv"
    format = "csv"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return b""


class _JSONFirst(DefaultContentNegotiation):
    """``?format=`` is the export's own parameter: errors always render as JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


FORMAT_PARAM = OpenApiParameter(
    "format",
    OpenApiTypes.STR,
    enum=list(FORMATS),
    default="csv",
    description="`csv` (one row per event) or `json` (an array of events).",
)


@extend_schema_view(
    list=extend_schema(
        summary="List audit events",
        description=(
            "The audit trail, newest first, paginated by a cursor (`next`/`previous` links). "
            "Auditors see every event; product managers and admins the events of their teams' "
            "products and of their own actions."
        ),
        responses={200: AuditEventSerializer(many=True), **error_responses(400, 401, 403, 404)},
    ),
    retrieve=extend_schema(
        summary="Get an audit event",
        responses={200: AuditEventSerializer, **error_responses(401, 403, 404)},
    ),
)
class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """Events of the append-only audit trail (read-only)."""

    serializer_class = AuditEventSerializer
    permission_classes = [permissions.IsAuthenticated, TrailReader]
    pagination_class = AuditCursorPagination
    filter_backends = [DjangoFilterBackend]
    filterset_class = AuditEventFilter
    lookup_field = "seq"
    lookup_value_regex = "[0-9]+"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return AuditEvent.objects.none()
        return selectors.audit_event_list_for(user=self.request.user)

    def get_object(self):
        if len(str(self.kwargs.get("seq", ""))) > 18:  # past a bigint: no such event
            raise Http404
        return super().get_object()

    @extend_schema(
        summary="Export audit events (CSV or JSON, streamed)",
        description=(
            "The events matching the filters, oldest first, streamed as a download named "
            "`audit-trail-<date>.csv` or `.json`. The export is itself recorded in the trail "
            "(`audit.exported`)."
        ),
        parameters=[FORMAT_PARAM],
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/json"): AuditEventSerializer(many=True),
            **error_responses(400, 401, 403),
        },
    )
    @action(
        detail=False,
        methods=["get"],
        pagination_class=None,
        renderer_classes=[JSONRenderer, _CSVRenderer],
        content_negotiation_class=_JSONFirst,
    )
    def export(self, request):
        fmt = request.query_params.get("format", "csv")
        if fmt not in FORMATS:
            raise serializers.ValidationError({"format": ["Use csv or json."]})
        qs = self.filter_queryset(self.get_queryset())
        return export_response(
            qs=qs,
            fmt=fmt,
            actor=request.user,
            filters=filter_params(request.query_params),
            ip_address=request.META.get("REMOTE_ADDR", ""),
        )


class ObjectHistoryView(APIView):
    """The full history of one object, field by field, and the audit events about it."""

    permission_classes = [permissions.IsAuthenticated, TrailReader]

    @extend_schema(
        summary="Get the history of an object",
        description=(
            "Every saved version of the object (`app_label.model` and id), newest first: who, "
            "when, `+` created / `~` changed / `-` deleted, and the changed fields with their "
            "old and new values. Fields a model keeps out of its history (secrets) never appear."
        ),
        parameters=[HistoryQuerySerializer],
        responses={200: ObjectHistorySerializer, **error_responses(400, 401, 403, 404)},
    )
    def get(self, request):
        query = HistoryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        object_type = query.validated_data["object_type"]
        object_id = query.validated_data["object_id"]
        user = request.user
        try:
            found = object_history(object_type=object_type, object_id=object_id)
        except UnknownObjectType:
            raise Http404("No such object type, or it keeps no history.") from None
        if not selectors.object_in_scope(user=user, object_type=object_type, object_id=object_id):
            raise Http404("No such object in your scope.")
        events = selectors.object_events(user=user, object_type=object_type, object_id=object_id)
        if found is None:
            raise Http404("This object has no history.")
        data = {
            "object_type": found.object_type,
            "object_id": found.object_id,
            "verbose_name": found.verbose_name,
            "title": found.title,
            "exists": found.exists,
            "truncated": found.truncated,
            "versions": found.versions,
            "events": events,
        }
        return Response(ObjectHistorySerializer(data).data)
