"""``GET /api/v1/releases/{id}/dossier/``: a release's compliance dossier as a ZIP download.

Scoped like every release read (``releases.selectors.release_list_for``): a release outside
the user's teams is a 404; auditors read every release. Each download is recorded in the audit
trail (``release.dossier_exported``).
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from apps.core.api import error_responses
from apps.releases.selectors import release_list_for

from ..dossier import dossier_build


class _JSONFirst(DefaultContentNegotiation):
    """Whatever the ``Accept`` header says (``application/zip``, say), errors render as JSON
    (the one error shape); the view returns the ZIP's bytes itself, past the renderers."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class ReleaseDossierView(APIView):
    renderer_classes = [JSONRenderer]
    content_negotiation_class = _JSONFirst

    @extend_schema(
        summary="Export a release's compliance dossier (ZIP)",
        description=(
            "The release's compliance dossier, a ZIP named `dossier-<product>-<version>.zip`: "
            "inventory entry, model cards, datasheets, prompt versions with the diff from the "
            "previous released release, evaluation runs and results, change requests with "
            "every approval and signature, effectivity history, published APIs with plans, "
            "subscription and key events, incidents, and `manifest.json` (the sha256 of every "
            "file and the latest audit checkpoint) signed in `manifest.sig` (Ed25519). Check it "
            "with `python -m apps.compliance.verify_dossier DOSSIER.zip --public-key KEY.pem`. "
            "Each export is recorded in the audit trail (`release.dossier_exported`)."
        ),
        responses={
            (200, "application/zip"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The dossier ZIP (a download)."
            ),
            **{(code, "application/json"): r for code, r in error_responses(401, 404).items()},
        },
    )
    def get(self, request, pk):
        release = release_list_for(user=request.user).filter(pk=pk).first()
        if release is None:
            raise exceptions.NotFound("No such release, or it is outside your teams.")
        return dossier_build(actor=request.user, release=release).as_response()
