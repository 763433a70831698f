"""The I/O layer: image formats, studies, display transforms and file utilities.

Reading: :func:`load_study` reads one file, :func:`load_folder` a folder (:mod:`.loader`); the
format is told from the file's first bytes by the format registry (:mod:`.formats`; the
built-in PNG, JPEG and DICOM formats in :mod:`.builtin_formats`, their readers :mod:`.raster`
and :mod:`.dicom`, sniffing in :mod:`.sniff`, size limits in :mod:`.limits`), so a PNG named
``.dcm`` still loads and a text file named ``.png`` is refused; folder scanning is
:mod:`.folder`. The result is a :class:`~.study.Study`; :mod:`.display` turns
it into the [0, 1] display image (VOI window or LUT, inversion) and :mod:`.resize` scales maps.
File utilities every layer uses: atomic writes (:mod:`.atomic`), JSON (:mod:`.jsonio`) and
capped zip reading (:mod:`.archive`). This is the lowest layer of the core: it imports only
:mod:`cxr_viewer.core.errors` and :mod:`cxr_viewer.core.progress` from the rest of it.
"""

from __future__ import annotations

from .folder import FolderResult, Listing, list_study_files, scan_study_files
from .formats import ImageFormat, format_names, image_suffixes, register_format, unregister_format
from .limits import DEFAULT_MAX_PIXELS
from .loader import load_folder, load_study

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FolderResult",
    "ImageFormat",
    "Listing",
    "format_names",
    "image_suffixes",
    "list_study_files",
    "load_folder",
    "load_study",
    "register_format",
    "scan_study_files",
    "unregister_format",
]
