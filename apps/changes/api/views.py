"""The change-control REST API: change requests, their review, and approval policies.

Views are thin: querysets come from ``changes.selectors`` (out of scope is a 404), and every
write is one call to ``changes.services``, which checks who may act (403, such as separation
of duties or a wrong signature password), refuses what the state does not allow (409, such as
a stale baseline) and records the audit events. Views open no transaction.

The signature password is read from the request body and handed to the service only: it is
write-only in the schema, never part of a response, and kept out of error reports.
"""

from django.db.models import Prefetch
from django.views.decorators.debug import sensitive_variables
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from apps.core.api import FILTER_BACKENDS, error_responses
from apps.releases.models import ReleaseDataset

from .. import selectors, services
from ..models import ApprovalPolicy, ChangeRequest
from .filters import ApprovalPolicyFilter, ChangeRequestFilter
from .serializers import (
    ApprovalPolicySerializer,
    ApprovalPolicyUpdateSerializer,
    ChangeRequestDetailSerializer,
    ChangeRequestSerializer,
    ChangeRequestUpdateSerializer,
    CommentSerializer,
    RejectSerializer,
    SignatureSerializer,
    WithdrawSerializer,
)

LIST_ERRORS = error_responses(400, 401, 404)
READ_ERRORS = error_responses(401, 404)
WRITE_ERRORS = error_responses(400, 401, 403, 404, 409)

# What the diff of a detail response reads, joined up front.
_DIFF_RELATED = [
    f"{side}__{part}"
    for side in ("baseline", "proposed")
    for part in ("product", "prompt_version__prompt", "model_version__model")
]


def _dataset_links(side: str) -> Prefetch:
    return Prefetch(
        f"{side}__dataset_links",
        queryset=ReleaseDataset.objects.select_related("dataset_version__dataset"),
    )


def _action_schema(summary: str, request=None, examples=None):
    return extend_schema(
        summary=summary,
        request=request,
        responses={200: ChangeRequestDetailSerializer, **WRITE_ERRORS},
        examples=examples,
    )


@extend_schema_view(
    list=extend_schema(
        summary="List change requests",
        responses={200: ChangeRequestSerializer(many=True), **LIST_ERRORS},
    ),
    retrieve=extend_schema(
        summary="Get a change request, with the diff of its releases",
        responses={200: ChangeRequestDetailSerializer, **READ_ERRORS},
    ),
    create=extend_schema(
        summary="File a draft change request",
        request=ChangeRequestSerializer,
        responses={201: ChangeRequestDetailSerializer, **error_responses(400, 401, 403, 409)},
        examples=[
            OpenApiExample(
                "Swap the prompt",
                value={
                    "product": "6f1c2b9e-3d4a-4a8e-9a53-0b7d1f2c3e4a",
                    "title": "Friendlier prompt",
                    "rationale": "Customers found the answers curt.",
                    "proposed": "0d6b8f5e-8a43-4f1c-9c0e-2a6e1b3d4c5f",
                    "risk": "low",
                },
                request_only=True,
            )
        ],
    ),
    partial_update=extend_schema(
        summary="Change a draft (or withdrawn) change request",
        request=ChangeRequestUpdateSerializer,
        responses={200: ChangeRequestDetailSerializer, **WRITE_ERRORS},
    ),
    submit=_action_schema("Submit for review: copies the policy, freezes the proposed release"),
    approve=_action_schema(
        "Approve, signed with your password",
        SignatureSerializer,
        [
            OpenApiExample(
                "Approve",
                value={"comment": "Looks good.", "password": "your password"},
                request_only=True,
            )
        ],
    ),
    reject=_action_schema("Reject with a comment, signed with your password", RejectSerializer),
    withdraw=_action_schema("Withdraw (edit it afterwards to reopen it)", WithdrawSerializer),
    implement=_action_schema("Implement an approved change: release the proposed release"),
    comment=_action_schema("Comment on the review (not a signature)", CommentSerializer),
    queue=extend_schema(
        summary="Change requests waiting for your signature",
        responses={200: ChangeRequestSerializer(many=True), **error_responses(401, 404)},
    ),
)
class ChangeRequestViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Change requests: a proposal to replace a product's released release (``baseline``) by
    another (``proposed``), reviewed under the product's approval policy. ``state`` moves
    draft → submitted → in_review → approved | rejected | withdrawn → implemented; an approval
    counts only while it matches the request's current ``fingerprint``."""

    parser_classes = [JSONParser]
    filter_backends = FILTER_BACKENDS
    filterset_class = ChangeRequestFilter
    search_fields = ["title", "rationale", "product__slug"]
    ordering_fields = ["created_at", "updated_at", "submitted_at", "decided_at", "state", "title"]
    ordering = ["-created_at"]
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return ChangeRequest.objects.none()
        qs = selectors.change_request_list_for(user=self.request.user)
        if self.action == "list":
            # Drafts have no copied policy yet: their quorum reads the policy in force here.
            return qs.prefetch_related("product__policies")
        return qs.select_related(*_DIFF_RELATED).prefetch_related(
            "product__policies", _dataset_links("baseline"), _dataset_links("proposed")
        )

    def get_serializer_class(self):
        if self.action in ("list", "queue"):
            return ChangeRequestSerializer
        return ChangeRequestDetailSerializer

    def _respond(self, cr: ChangeRequest, status_code: int = status.HTTP_200_OK) -> Response:
        fresh = self.get_queryset().get(pk=cr.pk)
        return Response(ChangeRequestDetailSerializer(fresh).data, status=status_code)

    def create(self, request, *args, **kwargs):
        serializer = ChangeRequestSerializer(
            data=request.data, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        cr = services.change_request_create(actor=request.user, **serializer.validated_data)
        return self._respond(cr, status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        cr = self.get_object()
        serializer = ChangeRequestUpdateSerializer(
            cr, data=request.data, partial=True, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        changes = {k: v for k, v in serializer.validated_data.items() if k != "product"}
        cr = services.change_request_update(actor=request.user, cr=cr, **changes)
        return self._respond(cr)

    @action(detail=True, methods=["post"])
    def submit(self, request, *args, **kwargs):
        cr = services.change_request_submit(actor=request.user, cr=self.get_object())
        return self._respond(cr)

    @action(detail=True, methods=["post"])
    @sensitive_variables("password", "raw_password", "serializer")
    def approve(self, request, *args, **kwargs):
        cr = self.get_object()
        serializer = SignatureSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        cr, _ = services.change_request_approve(
            actor=request.user,
            cr=cr,
            password=serializer.validated_data["password"],
            comment=serializer.validated_data.get("comment", ""),
        )
        return self._respond(cr)

    @action(detail=True, methods=["post"])
    @sensitive_variables("password", "raw_password", "serializer")
    def reject(self, request, *args, **kwargs):
        cr = self.get_object()
        serializer = RejectSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        cr, _ = services.change_request_reject(
            actor=request.user,
            cr=cr,
            password=serializer.validated_data["password"],
            comment=serializer.validated_data.get("comment", ""),
        )
        return self._respond(cr)

    @action(detail=True, methods=["post"])
    def withdraw(self, request, *args, **kwargs):
        cr = self.get_object()
        serializer = WithdrawSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        cr = services.change_request_withdraw(
            actor=request.user, cr=cr, comment=serializer.validated_data.get("comment", "")
        )
        return self._respond(cr)

    @action(detail=True, methods=["post"])
    def implement(self, request, *args, **kwargs):
        cr = services.change_request_implement(actor=request.user, cr=self.get_object())
        return self._respond(cr)

    @action(detail=True, methods=["post"])
    def comment(self, request, *args, **kwargs):
        cr = self.get_object()
        serializer = CommentSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.change_request_comment(
            actor=request.user, cr=cr, comment=serializer.validated_data["comment"]
        )
        return self._respond(cr)

    @action(detail=False, methods=["get"], filter_backends=[])
    def queue(self, request, *args, **kwargs):
        waiting = selectors.change_request_queue_for(user=request.user)
        page = self.paginate_queryset(waiting)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


# --- Approval policies ------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="List approval policies",
        responses={200: ApprovalPolicySerializer(many=True), **LIST_ERRORS},
    ),
    retrieve=extend_schema(
        summary="Get an approval policy",
        responses={200: ApprovalPolicySerializer, **READ_ERRORS},
    ),
    create=extend_schema(
        summary="Set the policy of a product in a stage (team admins; replaces an existing one)",
        request=ApprovalPolicySerializer,
        responses={
            201: ApprovalPolicySerializer,
            200: ApprovalPolicySerializer,
            **error_responses(400, 401, 403),
        },
        examples=[
            OpenApiExample(
                "Two reviewers in production",
                value={
                    "product": "6f1c2b9e-3d4a-4a8e-9a53-0b7d1f2c3e4a",
                    "stage": "production",
                    "required_roles": [{"role": "reviewer", "quorum": 2}],
                    "veto": True,
                },
                request_only=True,
            )
        ],
    ),
    partial_update=extend_schema(
        summary="Change an approval policy (team admins)",
        request=ApprovalPolicyUpdateSerializer,
        responses={200: ApprovalPolicySerializer, **WRITE_ERRORS},
    ),
)
class ApprovalPolicyViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Approval policies: per product and lifecycle stage, the roles that must approve a change
    (and how many of each), invited and comment-only reviewers, veto, and the evaluation gate.
    The policy in force is copied onto a change request when it is submitted."""

    serializer_class = ApprovalPolicySerializer
    parser_classes = [JSONParser]
    filter_backends = FILTER_BACKENDS
    filterset_class = ApprovalPolicyFilter
    ordering_fields = ["stage", "created_at", "updated_at"]
    ordering = ["product__slug", "stage"]
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ApprovalPolicy.objects.none()
        return selectors.approval_policy_list_for(user=self.request.user)

    def _respond(self, policy: ApprovalPolicy, status_code: int = status.HTTP_200_OK):
        fresh = self.get_queryset().get(pk=policy.pk)
        return Response(self.get_serializer(fresh).data, status=status_code)

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        existed = ApprovalPolicy.objects.filter(product=data["product"], stage=data["stage"])
        existed = existed.exists()
        policy = services.approval_policy_set(actor=request.user, **data)
        return self._respond(policy, status.HTTP_200_OK if existed else status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        policy = self.get_object()
        serializer = ApprovalPolicyUpdateSerializer(policy, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        current = policy.snapshot()
        current.pop("stage")
        changes = {k: v for k, v in serializer.validated_data.items() if k in current}
        policy = services.approval_policy_set(
            actor=request.user,
            product=policy.product,
            stage=policy.stage,
            **{**current, **changes},
        )
        return self._respond(policy)
