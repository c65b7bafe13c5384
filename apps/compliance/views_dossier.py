"""The release dossier in the browser (every section, printable to PDF) and its ZIP download.

Both look the release up through ``releases.selectors.release_list_for`` (out of scope is a
404). The page shows the same sections as the ZIP, with the sha256 each file will have; only
the download is an export, recorded in the audit trail (``release.dossier_exported``).
"""

import hashlib

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from apps.releases.selectors import release_list_for

from .dossier import FORMAT, dossier_build, dossier_collect, dossier_filename, dossier_files


def _release_or_404(request, pk):
    return get_object_or_404(release_list_for(user=request.user), pk=pk)


@login_required
@require_GET
def release_dossier(request, pk):
    release = _release_or_404(request, pk)
    content = dossier_collect(release=release)
    files = dossier_files(content, zip_name=dossier_filename(content.release))
    runs = [{**run, "results": content.results.get(run["id"], [])} for run in content.runs]
    return render(
        request,
        "compliance/dossier.html",
        {
            "release": content.release,
            "product": content.product,
            "d": content,
            "runs": runs,
            "format": FORMAT,
            "zip_name": dossier_filename(content.release),
            "files": [
                {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                for name, data in sorted(files.items())
            ],
        },
    )


@login_required
@require_GET
def release_dossier_zip(request, pk):
    release = _release_or_404(request, pk)
    return dossier_build(actor=request.user, release=release).as_response()
