"""Reading studies: PNG, JPEG and DICOM files, and folders of them.

``load_study`` tells the format from the file's first bytes (a PNG named ``.dcm`` still
loads; a text file named ``.png`` is refused), refuses images larger than ``max_pixels``
before decoding them, and raises only :class:`~cxr_viewer.core.errors.StudyLoadError`
subclasses, with the library's exception chained as the cause.
"""

from __future__ import annotations

from pathlib import Path

from cxr_viewer.core.errors import CorruptFileError, StudyLoadError, UnsupportedFormatError
from cxr_viewer.core.study import Study

from .folder import (
    FolderResult,
    Listing,
    list_study_files,
    load_folder,
    not_a_file_reason,
    scan_study_files,
)
from .limits import DEFAULT_MAX_PIXELS
from .sniff import DICOM_SUFFIXES, IMAGE_SUFFIXES, describe, read_head, sniff

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FolderResult",
    "Listing",
    "list_study_files",
    "load_folder",
    "load_study",
    "scan_study_files",
]


def load_study(path: str | Path, frame: int = 0, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Study:
    """Read one image file into a :class:`~cxr_viewer.core.study.Study`.

    Parameters
    ----------
    path:
        A PNG, JPEG or DICOM file (DICOM with or without the Part 10 header, i.e. also old
        ACR-NEMA files). The format is taken from the content, not the name.
    frame:
        Frame of a multi-frame DICOM, 0-based (``Study.n_frames`` tells how many there are).
    max_pixels:
        Largest ``rows × columns`` accepted; checked from the header before decoding. It also
        sets the memory budget: a frame may decode to at most ``4 × max_pixels`` bytes.

    Raises
    ------
    UnsupportedFormatError
        Not PNG, JPEG or DICOM.
    CorruptFileError
        Truncated or damaged, or a decoder rejected the data.
    MissingCodecError
        A DICOM transfer syntax needs a decoder package that is not installed.
    NoPixelDataError
        A DICOM object without an image.
    ImageTooLargeError
        Larger than ``max_pixels``.
    StudyLoadError
        Missing file, unreadable file, frame out of range.
    """
    p = Path(path)
    reason = not_a_file_reason(p)
    if reason == "no such file or folder":
        raise StudyLoadError(
            f"Cannot open {p}", "the file does not exist", "Check the path and try again."
        )
    if reason is not None:
        raise StudyLoadError(f"Cannot open {p.name}", reason, "Choose an image file.")
    if p.is_dir():
        raise StudyLoadError(
            f"Cannot open {p.name}", "it is a folder, not an image file", "Open it as a folder."
        )
    try:
        head = read_head(p)
    except FileNotFoundError as exc:
        raise StudyLoadError(
            f"Cannot open {p}", "the file does not exist", "Check the path and try again."
        ) from exc
    except OSError as exc:
        raise StudyLoadError(
            f"Cannot open {p.name}",
            f"the file cannot be read ({exc.strerror or exc})",
            "Check that it exists and that you have permission to read it.",
        ) from exc
    kind = sniff(head)
    if kind is None:
        suffix = p.suffix.casefold()
        if not head:
            raise CorruptFileError(
                f"Cannot open {p.name}", "the file is empty", "Choose another file."
            )
        named = f" although it is named {suffix}" if suffix in IMAGE_SUFFIXES else ""
        raise UnsupportedFormatError(
            f"Cannot open {p.name}",
            f"it is not a PNG, JPEG or DICOM file{named}: {describe(head)}",
            "Choose a PNG, JPEG or DICOM file.",
        )
    if kind in ("png", "jpeg"):
        if frame != 0:
            raise StudyLoadError(
                f"Cannot open frame {frame} of {p.name}",
                f"a {kind.upper()} file has one frame (frame 0)",
                "Choose frame 0.",
            )
        from .raster import load_raster

        return load_raster(p, kind, head, max_pixels)
    from .dicom import load_dicom

    return load_dicom(p, kind == "bare-dicom", frame, max_pixels)


# Re-exported for callers that list extensions (e.g. a file dialog filter).
SUPPORTED_SUFFIXES = IMAGE_SUFFIXES
DICOM_FILE_SUFFIXES = DICOM_SUFFIXES
