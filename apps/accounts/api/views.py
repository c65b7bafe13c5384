"""The accounts REST API: who am I, my teams, my personal access tokens.

Token writes go through ``accounts.services`` (which audit them); views open no transaction.
"""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from apps.core.api import FILTER_BACKENDS, error_responses

from .. import services
from ..models import PersonalAccessToken, Team
from ..selectors import team_list_for, token_list_for
from .serializers import (
    MeSerializer,
    NewTokenSerializer,
    TeamSerializer,
    TokenCreateSerializer,
    TokenSerializer,
)


class MeView(generics.GenericAPIView):
    """The requesting user, their roles and teams."""

    serializer_class = MeSerializer

    @extend_schema(
        summary="The current user", responses={200: MeSerializer, **error_responses(401)}
    )
    def get(self, request, *args, **kwargs):
        user = request.user
        teams: dict = {}
        for membership in user.memberships.select_related("team").order_by("team__slug"):
            team = teams.setdefault(
                membership.team_id,
                {
                    "id": membership.team_id,
                    "slug": membership.team.slug,
                    "name": membership.team.name,
                    "roles": [],
                },
            )
            team["roles"].append(membership.role)
        body = {
            "id": user.pk,
            "username": user.username,
            "display_name": user.display_name,
            "email": user.email,
            "is_superuser": user.is_superuser,
            "roles": sorted(user.roles()),
            "teams": [{**t, "roles": sorted(t["roles"])} for t in teams.values()],
        }
        return Response(MeSerializer(body).data)


@extend_schema_view(
    list=extend_schema(
        summary="List teams (your own; every team for superusers and auditors)",
        responses={200: TeamSerializer(many=True), **error_responses(400, 401, 404)},
    ),
    retrieve=extend_schema(
        summary="Get a team", responses={200: TeamSerializer, **error_responses(401, 404)}
    ),
)
class TeamViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = TeamSerializer
    filter_backends = FILTER_BACKENDS
    search_fields = ["slug", "name"]
    ordering_fields = ["slug", "name", "created_at"]
    ordering = ["slug"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Team.objects.none()
        return team_list_for(user=self.request.user)


@extend_schema_view(
    list=extend_schema(
        summary="List your personal access tokens (prefix only)",
        responses={200: TokenSerializer(many=True), **error_responses(400, 401, 404)},
    ),
    retrieve=extend_schema(
        summary="Get one of your tokens",
        responses={200: TokenSerializer, **error_responses(401, 404)},
    ),
    create=extend_schema(
        summary="Create a personal access token; the response shows its key once",
        request=TokenCreateSerializer,
        responses={201: NewTokenSerializer, **error_responses(400, 401, 403)},
    ),
    revoke=extend_schema(
        summary="Revoke one of your tokens",
        request=None,
        responses={200: TokenSerializer, **error_responses(401, 403, 404, 409)},
    ),
)
class TokenViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The requesting user's personal access tokens (``Authorization: Bearer <key>``)."""

    serializer_class = TokenSerializer
    parser_classes = [JSONParser]
    filter_backends = FILTER_BACKENDS
    search_fields = ["name", "prefix"]
    ordering_fields = ["created_at", "expires_at", "last_used_at", "name"]
    ordering = ["-created_at"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return PersonalAccessToken.objects.none()
        return token_list_for(user=self.request.user)

    def create(self, request, *args, **kwargs):
        serializer = TokenCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        new = services.token_create(
            actor=request.user,
            user=request.user,
            name=serializer.validated_data["name"],
            expires_at=serializer.validated_data.get("expires_at"),
        )
        body = NewTokenSerializer(new.token, context={"key": new.key}).data
        return Response(body, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"])
    def revoke(self, request, *args, **kwargs):
        token = services.token_revoke(actor=request.user, token=self.get_object())
        return Response(TokenSerializer(token).data)
