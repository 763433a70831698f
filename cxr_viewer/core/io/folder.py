"""Folders of studies: find the image files (by name or by their first bytes) and read them all.

Unreadable files do not stop the folder: they are reported next to the studies that loaded.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cxr_viewer.core.errors import StudyLoadError
from cxr_viewer.core.progress import CancelToken, ProgressFn, no_progress
from cxr_viewer.core.study import Study

from .limits import DEFAULT_MAX_PIXELS
from .sniff import IMAGE_SUFFIXES, read_head, sniff

#: Files skipped by name: DICOM media directories index a folder, they are not images.
_SKIPPED_NAMES = frozenset({"dicomdir"})


@dataclass
class FolderResult:
    """What :func:`load_folder` read: the studies in listing order and the files that failed."""

    studies: list[Study] = field(default_factory=list)
    errors: list[tuple[Path, StudyLoadError]] = field(default_factory=list)


def natural_key(path: Path, root: Path | None = None) -> tuple:
    """Sort key that orders ``img2`` before ``img10`` (case-insensitive, per path component)."""
    rel = path.relative_to(root) if root is not None else path
    return tuple(
        tuple(int(t) if t.isdigit() else t.casefold() for t in re.split(r"(\d+)", part))
        for part in rel.parts
    )


def is_candidate(path: Path) -> bool:
    """An image file by its extension, or — whatever its name — by its first bytes."""
    if path.name.casefold() in _SKIPPED_NAMES:
        return False
    if path.suffix.casefold() in IMAGE_SUFFIXES:
        return True
    try:
        return sniff(read_head(path)) is not None
    except OSError:
        return False


def list_study_files(path: str | Path) -> list[Path]:
    """The image files of ``path``: ``[path]`` for a file; for a folder, every candidate below it.

    Folders are walked recursively without following symbolic links; hidden files and folders
    (names starting with ``.``) are skipped; the result is in natural order of the relative
    paths.

    Raises
    ------
    StudyLoadError
        When ``path`` does not exist or cannot be listed.
    """
    root = Path(path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise StudyLoadError(
            f"Cannot open {root}", "no such file or folder", "Check the path and try again."
        )
    found: list[Path] = []
    errors: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=errors.append):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            candidate = Path(dirpath) / name
            if not name.startswith(".") and candidate.is_file() and is_candidate(candidate):
                found.append(candidate)
    if errors and not found and errors[0].filename == str(root):
        raise StudyLoadError(
            f"Cannot open the folder {root}",
            f"it cannot be listed ({errors[0].strerror})",
            "Check that you have permission to read it.",
        )
    return sorted(found, key=lambda p: natural_key(p, root))


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
    from . import load_study

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
