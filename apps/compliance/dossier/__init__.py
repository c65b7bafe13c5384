"""A release's compliance dossier: gathered (``collect``), written as files (``render``),
signed and zipped (``build``); ``apps.compliance.verify_dossier`` checks one without Django."""

from .build import FORMAT, Dossier, dossier_build, dossier_filename
from .collect import DossierContent, dossier_collect
from .render import dossier_files

__all__ = [
    "FORMAT",
    "Dossier",
    "DossierContent",
    "dossier_build",
    "dossier_collect",
    "dossier_filename",
    "dossier_files",
]
