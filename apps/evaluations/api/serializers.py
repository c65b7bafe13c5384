"""Shapes of the evaluation-suite API. Shapes only: every rule is in ``evaluations.services``.

Assertions are JSON objects validated by the service (``evaluations.assertions``), so a mistake
is reported with its path, such as ``cases[2].assertions[0].pattern``.
"""

from rest_framework import serializers

from apps.accounts.models import Team
from apps.catalog import selectors as catalog_selectors
from apps.catalog.api.serializers import CreateOnlyMixin
from apps.catalog.models import DatasetVersion
from apps.core.api import JSONObjectField, ScopedPrimaryKeyRelatedField
from apps.core.schema import NamedChoiceField

from .. import services
from ..assertions import ASSERTION_TYPES
from ..models import EvalCase, EvalSuite, EvalSuiteVersion
from ..templates_builtin import TEMPLATE_CHOICES

ASSERTIONS_HELP = (
    "A list of assertions, each an object with a `type` among "
    + ", ".join(f"`{t}`" for t in ASSERTION_TYPES)
    + ' and its fields, such as `{"type": "regex", "pattern": "^Yes", "flags": "i"}` or '
    '`{"type": "similarity", "threshold": 0.8}`. See docs/evaluations.md.'
)


def _username_field() -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)


class AssertionListField(serializers.ListField):
    child = JSONObjectField()

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("max_length", 50)
        kwargs.setdefault("help_text", ASSERTIONS_HELP)
        super().__init__(**kwargs)


# --- Suites ---------------------------------------------------------------------------------


class EvalSuiteSerializer(serializers.ModelSerializer):
    slug = serializers.SlugField(max_length=64)
    name = serializers.CharField(max_length=150)
    owner_team = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=Team.objects.all(),
        help_text="Slug of the owning team (set on create only).",
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=20_000)
    version_count = serializers.IntegerField(read_only=True, default=0)
    latest_version = serializers.IntegerField(
        read_only=True, allow_null=True, default=None, help_text="Number of the newest version."
    )
    latest_version_id = serializers.UUIDField(
        source="latest_version_pk",
        read_only=True,
        allow_null=True,
        default=None,
        help_text="Id of the newest version (what a run pins unless told otherwise).",
    )
    created_by = _username_field()

    class Meta:
        model = EvalSuite
        fields = [
            "id",
            "slug",
            "name",
            "owner_team",
            "description",
            "version_count",
            "latest_version",
            "latest_version_id",
            "created_at",
            "updated_at",
            "created_by",
        ]
        read_only_fields = ["id", "created_at", "updated_at", "created_by"]
        validators = []  # uniqueness is checked by the service (409)


class EvalSuiteUpdateSerializer(CreateOnlyMixin, serializers.Serializer):
    """PATCH: ``name`` and ``description``; ``slug`` and ``owner_team`` are set on create."""

    create_only = {
        "slug": lambda suite: suite.slug,
        "owner_team": lambda suite: suite.owner_team.slug,
    }

    name = serializers.CharField(max_length=150, required=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=20_000)


# --- Cases and versions ---------------------------------------------------------------------


class EvalCaseSerializer(serializers.ModelSerializer):
    variables = serializers.DictField(help_text="The prompt's variables for this case.")
    assertions = serializers.ListField(child=serializers.DictField(), help_text=ASSERTIONS_HELP)

    class Meta:
        model = EvalCase
        fields = ["id", "key", "position", "variables", "expected", "assertions", "group", "vary"]
        read_only_fields = fields


class EvalCaseInputSerializer(serializers.Serializer):
    """One case of a new version. A case without a ``key`` gets ``case-<n>``."""

    key = serializers.CharField(
        required=False, allow_blank=True, max_length=services.MAX_KEY, help_text="Unique."
    )
    variables = JSONObjectField(required=False, help_text="The prompt's variables.")
    expected = serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=services.MAX_EXPECTED,
        help_text="The expected output (what `equals` and `similarity` compare with by default).",
    )
    assertions = AssertionListField()
    group = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=services.MAX_LABEL,
        help_text="Cases of a group vary one variable with the same expectation.",
    )
    vary = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=services.MAX_LABEL,
        help_text="The variable the group varies (required with a group).",
    )


class EvalSuiteVersionSerializer(serializers.ModelSerializer):
    suite = serializers.PrimaryKeyRelatedField(read_only=True)
    suite_slug = serializers.CharField(source="suite.slug", read_only=True)
    owner_team = serializers.CharField(source="suite.owner_team.slug", read_only=True)
    source_dataset_version = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    case_count = serializers.IntegerField(read_only=True, default=0)
    cases = EvalCaseSerializer(many=True, read_only=True)
    created_by = _username_field()
    deprecated_by = _username_field()

    class Meta:
        model = EvalSuiteVersion
        fields = [
            "id",
            "suite",
            "suite_slug",
            "owner_team",
            "version",
            "content_hash",
            "changelog",
            "source_dataset_version",
            "case_count",
            "cases",
            "created_by",
            "created_at",
            "deprecated_at",
            "deprecated_by",
            "deprecation_reason",
        ]
        read_only_fields = fields


class EvalSuiteVersionCreateSerializer(serializers.Serializer):
    cases = serializers.ListField(
        child=EvalCaseInputSerializer(),
        max_length=services.MAX_CASES,
        help_text="The full list of the new version's cases, in order.",
    )
    changelog = serializers.CharField(required=False, allow_blank=True, max_length=20_000)
    source_dataset_version = ScopedPrimaryKeyRelatedField(
        model=DatasetVersion,
        selector=catalog_selectors.dataset_version_list_for,
        required=False,
        allow_null=True,
        help_text="The dataset version the cases come from; left out, the latest version's is "
        "kept; null clears it.",
    )


class EvalSuiteImportSerializer(serializers.Serializer):
    dataset_version = ScopedPrimaryKeyRelatedField(
        model=DatasetVersion,
        selector=catalog_selectors.dataset_version_list_for,
        help_text="A JSONL dataset version of the suite's team, stored in the portal.",
    )
    variables_field = serializers.CharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=services.MAX_LABEL,
        help_text="A row's field holding its variables (an object); left out, the row's other "
        "fields are its variables.",
    )
    expected_field = serializers.CharField(
        required=False, allow_blank=True, max_length=services.MAX_LABEL, default="expected"
    )
    assertions_field = serializers.CharField(
        required=False, allow_blank=True, max_length=services.MAX_LABEL, default="assertions"
    )
    key_field = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=services.MAX_LABEL
    )
    default_assertions = AssertionListField(
        help_text="The assertions of a row that has none of its own."
    )
    default_variables = JSONObjectField(
        required=False, help_text="Variables every row gets unless it has its own value."
    )
    changelog = serializers.CharField(required=False, allow_blank=True, max_length=20_000)


class EvalSuiteFromTemplateSerializer(serializers.Serializer):
    template = NamedChoiceField(
        enum_name="EvalSuiteTemplateEnum",
        choices=TEMPLATE_CHOICES,
        default="prompt_injection",
        help_text="A built-in template: `prompt_injection` or `fairness_names`.",
    )
    owner_team = serializers.SlugRelatedField(
        slug_field="slug", queryset=Team.objects.all(), help_text="Slug of the owning team."
    )
    slug = serializers.SlugField(
        max_length=64, required=False, help_text="Defaults to the template's slug."
    )
    name = serializers.CharField(max_length=150, required=False)
    secret_phrases = serializers.ListField(
        child=serializers.CharField(max_length=1000),
        required=False,
        max_length=services.MAX_SECRET_PHRASES,
        help_text="Distinctive phrases of your system prompt that no answer may repeat.",
    )
    base_variables = JSONObjectField(
        required=False, help_text="Variables added to every case (your prompt's other variables)."
    )


class EvalSuiteVersionDeprecateSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=5_000)
