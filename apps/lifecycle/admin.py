"""Operations view of the lifecycle. Briefs, assessments and requests are read-only here (they
change through the services, signed and audited); the stage gates are edited here by admins,
each save going through ``services.gate_set`` (validated and audited)."""

from django import forms
from django.contrib import admin, messages
from simple_history.admin import SimpleHistoryAdmin

from apps.core.exceptions import ApplicationError

from . import gates, services
from .models import Assessment, GateDefinition, LifecycleRequest, ProductBrief


class _ReadOnly(SimpleHistoryAdmin):
    actions = None

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ProductBrief)
class ProductBriefAdmin(_ReadOnly):
    list_display = ("product", "version", "status", "created_by", "created_at")
    list_filter = ("status",)
    search_fields = ("product__slug",)


@admin.register(Assessment)
class AssessmentAdmin(_ReadOnly):
    list_display = ("product", "calls_per_month", "updated_by", "updated_at")
    search_fields = ("product__slug",)


@admin.register(LifecycleRequest)
class LifecycleRequestAdmin(_ReadOnly):
    list_display = ("product", "kind", "from_stage", "to_stage", "state", "requested_by",
                    "decided_by", "created_at")  # fmt: skip
    list_filter = ("kind", "state", "to_stage")
    search_fields = ("product__slug",)


class GateForm(forms.ModelForm):
    criteria = forms.MultipleChoiceField(
        choices=[(code, f"{code}: {c.label}") for code, c in gates.CRITERIA.items()],
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    signer_roles = forms.MultipleChoiceField(
        choices=[(role, role) for role in gates.SIGNER_ROLES],
        widget=forms.CheckboxSelectMultiple,
    )

    class Meta:
        model = GateDefinition
        fields = ("risk_class", "stage", "criteria", "signer_roles")


@admin.register(GateDefinition)
class GateDefinitionAdmin(SimpleHistoryAdmin):
    form = GateForm
    actions = None
    list_display = ("risk_class", "stage", "criteria", "signer_roles")
    list_filter = ("risk_class", "stage")

    def get_readonly_fields(self, request, obj=None):
        return ("risk_class", "stage") if obj is not None else ()

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        try:
            services.gate_set(
                actor=request.user,
                risk_class=obj.risk_class,
                stage=obj.stage,
                criteria=list(form.cleaned_data["criteria"]),
                signer_roles=list(form.cleaned_data["signer_roles"]),
            )
        except ApplicationError as exc:
            messages.error(request, exc.message)
