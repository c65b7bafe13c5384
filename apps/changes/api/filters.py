"""Query filters of the change-control API. A value that does not parse is a 400."""

from django_filters import rest_framework as filters

from apps.catalog.models import Stage

from ..models import ApprovalPolicy, ChangeRequest, CRKind, CRState, Risk


class ChangeRequestFilter(filters.FilterSet):
    product = filters.UUIDFilter(field_name="product_id", help_text="Product id.")
    state = filters.ChoiceFilter(choices=CRState.choices)
    kind = filters.ChoiceFilter(choices=CRKind.choices)
    risk = filters.ChoiceFilter(choices=Risk.choices)
    proposed = filters.UUIDFilter(field_name="proposed_id", help_text="Proposed release id.")
    requested_by = filters.CharFilter(
        field_name="requested_by__username", help_text="Username of the requester."
    )

    class Meta:
        model = ChangeRequest
        fields = ["product", "state", "kind", "risk", "proposed", "requested_by"]


class ApprovalPolicyFilter(filters.FilterSet):
    product = filters.UUIDFilter(field_name="product_id", help_text="Product id.")
    stage = filters.ChoiceFilter(choices=Stage.choices)

    class Meta:
        model = ApprovalPolicy
        fields = ["product", "stage"]
