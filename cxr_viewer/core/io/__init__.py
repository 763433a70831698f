"""The I/O layer: image formats, studies, display transforms and file utilities.

Reading: :func:`load_study` reads one file, :func:`load_folder` a folder (:mod:`.loader`); the
format is told from the file's first bytes (:mod:`.sniff`; the PNG, JPEG and DICOM readers
:mod:`.raster` and :mod:`.dicom`, size limits in :mod:`.limits`), so a PNG named
``.dcm`` still loads and a text file named ``.png`` is refused; folder scanning is
:mod:`.folder`. The result is a :class:`~.study.Study`; :mod:`.display` turns
it into the [0, 1] display image (VOI window or LUT, inversion) and :mod:`.resize` scales maps.
File utilities every layer uses: atomic writes (:mod:`.atomic`), JSON (:mod:`.jsonio`) and
capped zip reading (:mod:`.archive`). This is the lowest layer of the core: it imports only
:mod:`cxr_viewer.core.errors` and :mod:`cxr_viewer.core.progress` from the rest of it.
"""

from __future__ import annotations

from .folder import FolderResult, Listing, list_study_files, scan_study_files
from .limits import DEFAULT_MAX_PIXELS
from .loader import load_folder, load_study
from .sniff import DICOM_SUFFIXES, IMAGE_SUFFIXES

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FolderResult",
    "Listing",
    "list_study_files",
    "load_folder",
    "load_study",
    "scan_study_files",
]

# Re-exported for callers that list extensions (e.g. a file dialog filter).
SUPPORTED_SUFFIXES = IMAGE_SUFFIXES
DICOM_FILE_SUFFIXES = DICOM_SUFFIXES
