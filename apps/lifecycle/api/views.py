"""The lifecycle REST API: briefs, assessments, stage requests and their signatures, gate
definitions, a product's stage checklist and its target metrics measured.

Views are thin: querysets come from ``lifecycle.selectors`` (an object outside the user's teams
is a 404, and so is a product named in a body or a query that the user cannot see), and every
write is one call to ``lifecycle.services``, which checks who may act (403: the role, separation
of duties, a wrong signature password), refuses what the state does not allow (409: an unmet
gate, a pending request) and records the audit events. Views open no transaction.

The signature password is read from the request body and handed to the service only: it is
write-only in the schema, never part of a response, and kept out of error reports.
"""

from __future__ import annotations

import contextlib
import uuid

from django.db.models import Q
from django.views.decorators.debug import sensitive_variables
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.roles import AUDITOR
from apps.catalog.api.serializers import CreateOnlyMixin
from apps.catalog.models import Product, RiskClass, Stage
from apps.catalog.selectors import product_list_for
from apps.core.api import OrderingFilter, error_responses
from apps.core.exceptions import ApplicationError, NotFound
from apps.gateway.filters import SlugFilter
from apps.portal.models import PublishedAPI
from apps.portal.selectors import api_list_for

from .. import gates, metrics, selectors, services
from ..models import (
    Assessment,
    BriefStatus,
    GateDefinition,
    LifecycleRequest,
    ProductBrief,
    RequestKind,
    RequestState,
)
from .serializers import (
    AssessmentDetailSerializer,
    AssessmentSerializer,
    AssessmentWriteSerializer,
    ChecklistQuerySerializer,
    GateCheckSerializer,
    GateDefinitionSerializer,
    GateDefinitionUpdateSerializer,
    LifecycleRejectSerializer,
    LifecycleRequestSerializer,
    LifecycleSignatureSerializer,
    MeasurementSerializer,
    ProductBriefCreateSerializer,
    ProductBriefSerializer,
    ProductQuerySerializer,
    StageRequestCreateSerializer,
)

LIST_ERRORS = error_responses(400, 401, 404)
READ_ERRORS = error_responses(401, 404)
QUERY_ERRORS = error_responses(400, 401, 404)
WRITE_ERRORS = error_responses(400, 401, 403, 404, 409)


# --- lookups -----------------------------------------------------------------------------------


def _id_or_slug(value: str, prefix: str = "") -> Q:
    q = Q(**{f"{prefix}slug": value})
    with contextlib.suppress(ValueError):
        q |= Q(**{f"{prefix}pk": uuid.UUID(value)})
    return q


def product_for(user, ref: str) -> Product:
    """The product ``ref`` (id or slug) among those ``user`` may see; otherwise a 404."""
    product = product_list_for(user=user).filter(_id_or_slug(ref)).first()
    if product is None:
        raise NotFound(
            "not_found",
            f"No product {ref}, or it is outside your teams.",
            {"product": ["No such product, or it is outside your teams."]},
        )
    return product


def _successor(user, ref: str | None) -> PublishedAPI | None:
    if not ref:
        return None
    api = api_list_for(user=user).filter(_id_or_slug(ref)).first()
    if api is None:
        raise ApplicationError(
            "invalid",
            f"successor: no API {ref} that you can see.",
            {"successor": ["No such API (give a published API's id or slug)."]},
        )
    return api


def _filter_product(queryset, name, value):
    """``product``: a product id or slug."""
    return queryset.filter(_id_or_slug(value, prefix="product__"))


class ProductFilterMixin(filters.FilterSet):
    product = SlugFilter(method=_filter_product, help_text="Product id or slug.")


class BriefFilter(ProductFilterMixin):
    status = filters.ChoiceFilter(choices=BriefStatus.choices)

    class Meta:
        model = ProductBrief
        fields = ["product", "status"]


class AssessmentFilter(ProductFilterMixin):
    class Meta:
        model = Assessment
        fields = ["product"]


class LifecycleRequestFilter(ProductFilterMixin):
    state = filters.ChoiceFilter(choices=RequestState.choices)
    kind = filters.ChoiceFilter(choices=RequestKind.choices)

    class Meta:
        model = LifecycleRequest
        fields = ["product", "state", "kind"]


class GateDefinitionFilter(filters.FilterSet):
    risk_class = filters.ChoiceFilter(choices=RiskClass.choices)
    stage = filters.ChoiceFilter(choices=Stage.choices)

    class Meta:
        model = GateDefinition
        fields = ["risk_class", "stage"]


class NoAuditorWrites(permissions.BasePermission):
    """Reads: anyone signed in (scope comes from the selectors). Writes: refused early to users
    who are only auditors; the services check the rest (the role in the product's team)."""

    message = "Auditors read the lifecycle; they write nothing."

    def has_permission(self, request, view):
        if request.method in permissions.SAFE_METHODS:
            return True
        roles = request.user.roles()
        return request.user.is_superuser or not (roles and roles <= {AUDITOR})


class LifecycleViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    permission_classes = [permissions.IsAuthenticated, NoAuditorWrites]
    parser_classes = [JSONParser]
    filter_backends = [filters.DjangoFilterBackend, OrderingFilter]
    http_method_names = ["get", "post", "head", "options"]

    def _respond(self, obj, status_code: int = status.HTTP_200_OK, serializer_class=None):
        fresh = self.get_queryset().get(pk=obj.pk)
        serializer_class = serializer_class or self.get_serializer_class()
        data = serializer_class(fresh, context=self.get_serializer_context()).data
        return Response(data, status=status_code)


# --- briefs ------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="List product briefs (every version)",
        responses={200: ProductBriefSerializer(many=True), **LIST_ERRORS},
    ),
    retrieve=extend_schema(
        summary="Get a brief version", responses={200: ProductBriefSerializer, **READ_ERRORS}
    ),
    create=extend_schema(
        summary="Write a new brief version (product managers and admins of the product's team)",
        description="Up to the design stage the new version is in force at once; after it, it "
        "is proposed and a brief request (`lifecycle-requests/`, kind `brief`) waits for "
        "someone else's signature.",
        request=ProductBriefCreateSerializer,
        responses={201: ProductBriefSerializer, **WRITE_ERRORS},
        examples=[
            OpenApiExample(
                "A brief",
                value={
                    "product": "support-assistant",
                    "problem_statement": "Agents answer the same questions all day.",
                    "target_users": "Support agents",
                    "user_stories": [
                        {
                            "as_a": "support agent",
                            "i_want": "drafted answers",
                            "so_that": "I answer faster",
                        }
                    ],
                    "intended_uses": "Draft answers an agent reviews.",
                    "out_of_scope_uses": "Answering customers without review.",
                    "data_strategy": {
                        "sources": "help centre",
                        "consent": "public",
                        "pii_handling": "none",
                    },
                    "target_metrics": [{"metric": "p95_latency_ms", "threshold": 2000}],
                    "changelog": "First version.",
                },
                request_only=True,
            )
        ],
    ),
)
class ProductBriefViewSet(LifecycleViewSet):
    """Product briefs: immutable, hashed versions of what a product is for."""

    serializer_class = ProductBriefSerializer
    filterset_class = BriefFilter
    ordering_fields = ["created_at", "version"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ProductBrief.objects.none()
        return selectors.brief_list_for(user=self.request.user).order_by(
            "-created_at", "-version", "pk"
        )

    def create(self, request, *args, **kwargs):
        serializer = ProductBriefCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        product = product_for(request.user, data.pop("product"))
        brief = services.brief_create(actor=request.user, product=product, **data)
        return self._respond(brief, status.HTTP_201_CREATED)


# --- assessments -------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="List assessments (without the estimate: see one for it)",
        responses={200: AssessmentSerializer(many=True), **LIST_ERRORS},
    ),
    retrieve=extend_schema(
        summary="Get an assessment, with its monthly cost estimate",
        responses={200: AssessmentDetailSerializer, **READ_ERRORS},
    ),
    create=extend_schema(
        summary="Set the assessment of a product (creates it or replaces it)",
        description="Product managers and admins of the product's team. 201 when created, "
        "200 when replaced (history is kept); the fields left out are cleared.",
        request=AssessmentWriteSerializer,
        responses={
            201: AssessmentDetailSerializer,
            200: AssessmentDetailSerializer,
            **WRITE_ERRORS,
        },
    ),
)
class AssessmentViewSet(LifecycleViewSet):
    """Feasibility and impact assessments, one per product."""

    filterset_class = AssessmentFilter
    ordering_fields = ["created_at", "updated_at"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Assessment.objects.none()
        return selectors.assessment_list_for(user=self.request.user).order_by("-updated_at", "pk")

    def get_serializer_class(self):
        return AssessmentSerializer if self.action == "list" else AssessmentDetailSerializer

    def create(self, request, *args, **kwargs):
        serializer = AssessmentWriteSerializer(
            data=request.data, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        product = product_for(request.user, data.pop("product"))
        existed = Assessment.objects.filter(product=product).exists()
        assessment = services.assessment_set(actor=request.user, product=product, **data)
        return self._respond(assessment, status.HTTP_200_OK if existed else status.HTTP_201_CREATED)


# --- requests ----------------------------------------------------------------------------------


def _action_schema(summary: str, request=None, examples=None, description: str = ""):
    return extend_schema(
        summary=summary,
        description=description or None,
        request=request,
        responses={200: LifecycleRequestSerializer, **WRITE_ERRORS},
        examples=examples,
    )


@extend_schema_view(
    list=extend_schema(
        summary="List lifecycle requests",
        responses={200: LifecycleRequestSerializer(many=True), **LIST_ERRORS},
    ),
    retrieve=extend_schema(
        summary="Get a lifecycle request",
        responses={200: LifecycleRequestSerializer, **READ_ERRORS},
    ),
    create=extend_schema(
        summary="Ask to move a product to a stage",
        description="Product managers and admins of the product's team. Refused with 409 "
        "`gate_unmet` (naming each unmet criterion in `message` and `fields.criteria`) until the "
        "entry criteria of the stage are met; see `lifecycle-checklist/`.",
        request=StageRequestCreateSerializer,
        responses={201: LifecycleRequestSerializer, **WRITE_ERRORS},
        examples=[
            OpenApiExample(
                "To design",
                value={"product": "support-assistant", "to_stage": "design", "comment": "Ready."},
                request_only=True,
            )
        ],
    ),
    approve=_action_schema(
        "Approve, signed with your password",
        LifecycleSignatureSerializer,
        [
            OpenApiExample(
                "Approve",
                value={"password": "your password", "comment": "Brief and assessment read."},
                request_only=True,
            )
        ],
        description="By someone other than the requester holding a signer role of the gate in "
        "the product's team. The criteria are checked again and stored as `evidence`; a stage "
        "request moves the product, a brief request brings the brief into force.",
    ),
    reject=_action_schema(
        "Reject with a comment, signed with your password", LifecycleRejectSerializer
    ),
    withdraw=_action_schema("Withdraw a pending request (the requester or a team admin)"),
)
class LifecycleRequestViewSet(LifecycleViewSet):
    """Signed requests that move a product from one stage to the next (``kind`` stage) or bring
    a brief version into force (``kind`` brief). ``state``: pending → approved | rejected |
    withdrawn."""

    serializer_class = LifecycleRequestSerializer
    filterset_class = LifecycleRequestFilter
    ordering_fields = ["created_at", "decided_at", "state"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return LifecycleRequest.objects.none()
        return selectors.request_list_for(user=self.request.user).order_by("-created_at", "pk")

    def create(self, request, *args, **kwargs):
        serializer = StageRequestCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        product = product_for(request.user, data.pop("product"))
        req = services.stage_request_create(
            actor=request.user,
            product=product,
            to_stage=data["to_stage"],
            comment=data.get("comment", ""),
            sunset_at=data.get("sunset_at"),
            migration_note=data.get("migration_note", ""),
            successor=_successor(request.user, data.get("successor")),
        )
        return self._respond(req, status.HTTP_201_CREATED)

    @sensitive_variables("password", "serializer")
    def _sign(self, request, serializer_class, decide):
        req = self.get_object()
        serializer = serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        req = decide(
            actor=request.user,
            request=req,
            password=serializer.validated_data["password"],
            comment=serializer.validated_data.get("comment", ""),
        )
        return self._respond(req)

    @action(detail=True, methods=["post"])
    def approve(self, request, *args, **kwargs):
        return self._sign(request, LifecycleSignatureSerializer, services.request_approve)

    @action(detail=True, methods=["post"])
    def reject(self, request, *args, **kwargs):
        return self._sign(request, LifecycleRejectSerializer, services.request_reject)

    @action(detail=True, methods=["post"])
    def withdraw(self, request, *args, **kwargs):
        req = services.request_withdraw(actor=request.user, request=self.get_object())
        return self._respond(req)


# --- gate definitions --------------------------------------------------------------------------


class GateDefinitionPatchSerializer(CreateOnlyMixin, GateDefinitionUpdateSerializer):
    create_only = {
        "risk_class": lambda gate: gate.risk_class,
        "stage": lambda gate: gate.stage,
    }


@extend_schema_view(
    list=extend_schema(
        summary="List the stage gates set by admins (the others use the defaults)",
        responses={200: GateDefinitionSerializer(many=True), **LIST_ERRORS},
    ),
    retrieve=extend_schema(
        summary="Get a stage gate", responses={200: GateDefinitionSerializer, **READ_ERRORS}
    ),
    create=extend_schema(
        summary="Set the gate of a stage for a risk class (admins; replaces an existing one)",
        request=GateDefinitionSerializer,
        responses={
            201: GateDefinitionSerializer,
            200: GateDefinitionSerializer,
            **error_responses(400, 401, 403),
        },
        examples=[
            OpenApiExample(
                "High-risk products need an admin's signature for production",
                value={
                    "risk_class": "high",
                    "stage": "production",
                    "criteria": ["governed_change", "targets_met"],
                    "signer_roles": ["admin"],
                },
                request_only=True,
            )
        ],
    ),
    partial_update=extend_schema(
        summary="Change a stage gate (admins)",
        request=GateDefinitionUpdateSerializer,
        responses={200: GateDefinitionSerializer, **WRITE_ERRORS},
    ),
)
class GateDefinitionViewSet(LifecycleViewSet):
    """The entry criteria of each stage per risk class, and the roles whose signature moves a
    product there. Readable by everyone signed in; set by admins."""

    serializer_class = GateDefinitionSerializer
    filterset_class = GateDefinitionFilter
    ordering_fields = ["risk_class", "stage", "updated_at"]
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        return GateDefinition.objects.order_by("risk_class", "stage", "pk")

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        existed = GateDefinition.objects.filter(
            risk_class=data["risk_class"], stage=data["stage"]
        ).exists()
        gate = services.gate_set(actor=request.user, **data)
        return self._respond(gate, status.HTTP_200_OK if existed else status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        gate = self.get_object()
        serializer = GateDefinitionPatchSerializer(gate, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        gate = services.gate_set(
            actor=request.user,
            risk_class=gate.risk_class,
            stage=gate.stage,
            criteria=data.get("criteria", gate.criteria),
            signer_roles=data.get("signer_roles", gate.signer_roles),
        )
        return self._respond(gate)


# --- a product's checklist and target metrics ----------------------------------------------------


class LifecycleChecklistView(APIView):
    """The entry criteria of a stage for a product, each checked now."""

    @extend_schema(
        summary="The entry criteria of a stage for a product, checked now",
        description="A move back to an earlier stage has no criteria (an empty list). The "
        "deprecation criteria (sunset date, migration note) are met by what a request carries, "
        "so they read as unmet here.",
        parameters=[ChecklistQuerySerializer],
        responses={200: GateCheckSerializer(many=True), **QUERY_ERRORS},
    )
    def get(self, request):
        query = ChecklistQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        product = product_for(request.user, query.validated_data["product"])
        checks = gates.checklist(product, query.validated_data["to_stage"])
        return Response(GateCheckSerializer([c.as_dict() for c in checks], many=True).data)


class TargetMetricsView(APIView):
    """The target metrics of a product's brief in force, measured."""

    @extend_schema(
        summary="The target metrics of a product's brief in force, measured",
        description="Pass rates from the suites' runs on the released release; latency, error "
        "rate and cost from the product's calls of the last days. An empty list without a brief "
        "or targets.",
        parameters=[ProductQuerySerializer],
        responses={200: MeasurementSerializer(many=True), **QUERY_ERRORS},
    )
    def get(self, request):
        query = ProductQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        product = product_for(request.user, query.validated_data["product"])
        measured = metrics.measure(product=product)
        return Response(MeasurementSerializer(measured, many=True).data)
