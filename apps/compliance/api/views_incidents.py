"""Incidents over the API: list (filters product, release, status, severity), create, retrieve,
partial update (a changed ``status`` is a status move). Never deleted."""

import uuid

from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, permissions, viewsets
from rest_framework.response import Response

from apps.core.api import FILTER_BACKENDS, Pagination, error_responses
from apps.core.models import UNSET
from apps.gateway.filters import SlugFilter

from .. import selectors, services
from ..models import Incident, IncidentStatus, Severity
from .serializers import IncidentSerializer


class IncidentFilter(filters.FilterSet):
    product = SlugFilter(method="filter_product", help_text="Product id or slug.")
    release = filters.UUIDFilter(field_name="release_id", help_text="Release id.")
    status = filters.ChoiceFilter(choices=IncidentStatus.choices)
    severity = filters.ChoiceFilter(choices=Severity.choices)

    class Meta:
        model = Incident
        fields = ["product", "release", "status", "severity"]

    def filter_product(self, queryset, name, value):
        try:
            return queryset.filter(product_id=uuid.UUID(value))
        except ValueError:
            return queryset.filter(product__slug=value)


class IsTeamMemberForWrites(permissions.BasePermission):
    """Reads: anyone signed in (scope comes from the selector). Writes: the product's team, not
    auditors (the service checks the object; this refuses auditors-only users early)."""

    message = "Only members of the product's team (not auditors) file and update incidents."

    def has_permission(self, request, view):
        if request.method in permissions.SAFE_METHODS:
            return True
        user = request.user
        return user.is_superuser or bool(user.roles() - {"auditor"})

    def has_object_permission(self, request, view, obj):
        if request.method in permissions.SAFE_METHODS:
            return True
        return selectors.can_file_incident(request.user, obj.product)


WRITE_ERRORS = error_responses(400, 401, 403, 404, 409)


@extend_schema_view(
    list=extend_schema(summary="Incidents", responses={200: IncidentSerializer(many=True)}),
    retrieve=extend_schema(summary="An incident"),
    create=extend_schema(
        summary="File an incident", responses={201: IncidentSerializer, **WRITE_ERRORS}
    ),
    partial_update=extend_schema(
        summary="Update an incident (or move its status)",
        responses={200: IncidentSerializer, **WRITE_ERRORS},
    ),
)
class IncidentViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = IncidentSerializer
    permission_classes = [permissions.IsAuthenticated, IsTeamMemberForWrites]
    pagination_class = Pagination
    filter_backends = FILTER_BACKENDS
    filterset_class = IncidentFilter
    search_fields = ["title", "description"]
    ordering_fields = ["occurred_at", "created_at", "severity", "status"]
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Incident.objects.none()
        return selectors.incident_list_for(user=self.request.user).order_by(
            "-occurred_at", "-created_at", "pk"
        )

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        incident = services.incident_file(
            actor=request.user,
            product=data["product"],
            title=data["title"],
            severity=data.get("severity", Severity.SEV3),
            description=data.get("description", ""),
            actions_taken=data.get("actions_taken", ""),
            occurred_at=data.get("occurred_at"),
            release=data.get("release"),
        )
        incident = self.get_queryset().get(pk=incident.pk)
        return Response(self.get_serializer(incident).data, status=201)

    def partial_update(self, request, *args, **kwargs):
        incident = self.get_object()
        serializer = self.get_serializer(incident, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        if "product" in data and data.pop("product") != incident.product:
            from apps.core.exceptions import ApplicationError

            raise ApplicationError(
                "invalid", "product: cannot be changed.", {"product": ["Set on create only."]}
            )
        to_status = data.pop("status", None)
        note = data.pop("note", "")
        fields = {
            name: data.get(name, UNSET)
            for name in (
                "title",
                "description",
                "actions_taken",
                "severity",
                "occurred_at",
                "resolved_at",
                "release",
            )
        }
        if any(value is not UNSET for value in fields.values()):
            incident = services.incident_update(actor=request.user, incident=incident, **fields)
        if to_status is not None and to_status != incident.status:
            incident = services.incident_transition(
                actor=request.user, incident=incident, to_status=to_status, note=note
            )
        incident = self.get_queryset().get(pk=incident.pk)
        return Response(self.get_serializer(incident).data)

    def update(self, request, *args, **kwargs):
        return self.partial_update(request, *args, **kwargs)
