"""Time travel over the API: ``products/{id}/live-state/?at=`` and ``apis/{id}/live/?at=``.

(``products/{id}/live/?at=``, the contract's "release live at that instant", is served by the
releases app; ``live-state`` is the full picture with that release under ``release``.)
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, generics
from rest_framework.response import Response

from apps.catalog.models import Product
from apps.catalog.selectors import product_list_for
from apps.core.api import ErrorSerializer, error_responses
from apps.portal.models import PublishedAPI
from apps.portal.selectors import api_list_for

from ..timetravel import AT_HELP, api_live_at, live_at, parse_instant
from .serializers import APILiveStateSerializer, LiveStateSerializer

AT_PARAMETER = OpenApiParameter(
    "at", OpenApiTypes.DATETIME, OpenApiParameter.QUERY, required=False, description=AT_HELP
)
NOT_FOUND = OpenApiResponse(
    ErrorSerializer,
    description="No such object in your scope; or code `did_not_exist`: it did not exist yet "
    "at that instant.",
)


class ProductLiveStateView(generics.GenericAPIView):
    """Everything in force for a product at an instant."""

    serializer_class = LiveStateSerializer
    queryset = Product.objects.none()

    @extend_schema(
        summary="What was live for a product at an instant",
        parameters=[AT_PARAMETER],
        responses={200: LiveStateSerializer, **error_responses(400, 401), 404: NOT_FOUND},
    )
    def get(self, request, pk, *args, **kwargs):
        product = product_list_for(user=request.user).filter(pk=pk).first()
        if product is None:
            raise exceptions.NotFound("No such product.")
        at = parse_instant(request.query_params.get("at"))
        return Response(LiveStateSerializer(live_at(product=product, at=at)).data)


class APILiveView(generics.GenericAPIView):
    """What a published API served at an instant."""

    serializer_class = APILiveStateSerializer
    queryset = PublishedAPI.objects.none()

    @extend_schema(
        summary="What a published API served at an instant",
        parameters=[AT_PARAMETER],
        responses={200: APILiveStateSerializer, **error_responses(400, 401), 404: NOT_FOUND},
    )
    def get(self, request, pk, *args, **kwargs):
        api = api_list_for(user=request.user).filter(pk=pk).first()
        visible = product_list_for(user=request.user)
        if api is None or not visible.filter(pk=api.product_id).exists():
            raise exceptions.NotFound("No such API.")
        at = parse_instant(request.query_params.get("at"))
        return Response(APILiveStateSerializer(api_live_at(api=api, at=at)).data)
