from django.conf import settings
from django.contrib.auth.models import AbstractUser, Group
from django.db import models
from django.utils import timezone

from apps.core.history import history
from apps.core.models import BaseModel

from .roles import ROLE_CHOICES


class User(AbstractUser):
    """The portal's user (custom from the first migration)."""

    display_name = models.CharField(max_length=150, blank=True)

    history = history(excluded_fields=["password", "last_login"])

    class Meta:
        ordering = ["username"]

    def roles(self, team=None) -> set[str]:
        cache = getattr(self, "_role_cache", None)
        if cache is None:
            cache = list(self.memberships.values_list("team_id", "role"))
            self._role_cache = cache
        return {role for team_id, role in cache if team is None or team_id == team.pk}

    def team_roles(self) -> dict:
        """``{team_id: {role, ...}}`` from the same cached membership read as ``roles()``."""
        self.roles()
        out: dict = {}
        for team_id, role in self._role_cache:
            out.setdefault(team_id, set()).add(role)
        return out

    def has_role(self, *roles: str, team=None) -> bool:
        return bool(self.roles(team) & set(roles))

    def team_ids(self) -> set:
        self.roles()
        return {team_id for team_id, _ in self._role_cache}


class Team(BaseModel):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=150)
    description = models.TextField(blank=True)

    history = history()

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Membership(BaseModel):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=32, choices=ROLE_CHOICES)
    group = models.ForeignKey(Group, on_delete=models.PROTECT, related_name="+")

    history = history()

    class Meta:
        ordering = ["team__slug", "user__username", "role"]
        constraints = [
            models.UniqueConstraint(fields=["user", "team", "role"], name="membership_unique_role")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} as {self.role}"


class PersonalAccessToken(BaseModel):
    """A token for scripts: only a short public prefix and the sha256 of the secret are kept."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    token_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    HOUSEKEEPING_FIELDS = frozenset({"last_used_at"})

    history = history(excluded_fields=["last_used_at"])

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    @property
    def is_active(self) -> bool:
        now = timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    @property
    def status(self) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= timezone.now():
            return "expired"
        return "active"
