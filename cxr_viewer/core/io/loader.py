"""Reading one image file, or every image in a folder, into studies.

:func:`load_study` reads the file's first bytes, lets the format registry (:mod:`.formats`)
pick the reader by content, refuses images larger than ``max_pixels`` before decoding them
(each reader checks its headers), and raises only
:class:`~cxr_viewer.core.errors.StudyLoadError` subclasses, with the library's exception chained
as the cause. :func:`load_folder` reads what :func:`~.folder.list_study_files` finds.
"""

from __future__ import annotations

from pathlib import Path

from cxr_viewer.core.errors import (
    CorruptFileError,
    MissingCodecError,
    StudyLoadError,
    UnsupportedFormatError,
)
from cxr_viewer.core.io.study import Study
from cxr_viewer.core.progress import CancelToken, ProgressFn, no_progress

from . import builtin_formats  # noqa: F401 (registers PNG, JPEG, DICOM)
from .folder import FolderResult, list_study_files, not_a_file_reason
from .formats import format_names, format_of, image_suffixes
from .limits import DEFAULT_MAX_PIXELS
from .sniff import describe, read_head


def load_study(path: str | Path, frame: int = 0, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Study:
    """Read one image file into a :class:`~cxr_viewer.core.io.study.Study`.

    Parameters
    ----------
    path:
        An image file in a registered format (:mod:`.formats`: PNG, JPEG, DICOM with or without
        the Part 10 header, i.e. also old ACR-NEMA files). The format is taken from the content,
        not the name: the first format whose sniffing test accepts the file's first bytes.
    frame:
        Frame of a multi-frame DICOM, 0-based (``Study.n_frames`` tells how many there are).
    max_pixels:
        Largest ``rows × columns`` accepted; checked from the header before decoding. It also
        sets the memory budget: a frame may decode to at most ``4 × max_pixels`` bytes.

    Raises
    ------
    UnsupportedFormatError
        No registered format recognises the file.
    CorruptFileError
        Truncated or damaged, or a decoder rejected the data.
    MissingCodecError
        The format's reader, or a DICOM transfer syntax's decoder, needs a package that is not
        installed.
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
    fmt = format_of(head)
    if fmt is None:
        suffix = p.suffix.casefold()
        if not head:
            raise CorruptFileError(
                f"Cannot open {p.name}", "the file is empty", "Choose another file."
            )
        named = f" although it is named {suffix}" if suffix in image_suffixes() else ""
        raise UnsupportedFormatError(
            f"Cannot open {p.name}",
            f"it is not a {format_names()} file{named}: {describe(head)}",
            f"Choose a {format_names()} file.",
        )
    why_not = fmt.why_unavailable()
    if why_not is not None:
        raise MissingCodecError(
            f"Cannot open {p.name}",
            f"it is a {fmt.name} file, but {why_not}, which is not installed here",
            "Install that package, or convert the file to another format.",
        )
    return fmt.read(p, head, frame, max_pixels)


def load_folder(
    path: str | Path,
    *,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> FolderResult:
    """Read every study in ``path`` (a folder, or a single file).

    Parameters
    ----------
    path:
        Folder (searched recursively, see :func:`list_study_files`) or file.
    progress:
        Called with the fraction done and the file being read.
    cancel:
        Checked before each file; cancelling raises :class:`~cxr_viewer.core.errors.Cancelled`.
    max_pixels:
        Per-file pixel limit (see :func:`~cxr_viewer.core.io.load_study`).

    Returns
    -------
    FolderResult
        The studies in natural file order, and ``(path, error)`` for each file that failed.
    """
    files = list_study_files(path)
    result = FolderResult()
    for i, file in enumerate(files):
        if cancel is not None:
            cancel.raise_if_cancelled()
        progress(i / len(files), f"Reading {file.name}")
        try:
            result.studies.append(load_study(file, max_pixels=max_pixels))
        except StudyLoadError as exc:
            result.errors.append((file, exc))
    progress(1.0, f"Read {len(result.studies)} of {len(files)} files")
    return result
