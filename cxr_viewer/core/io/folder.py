"""Folders of studies: find the image files, by a registered format's suffix or first bytes.

:func:`~.loader.load_folder` reads what is found here; unreadable files do not stop the folder:
they are reported next to the studies that loaded (:class:`FolderResult`).
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cxr_viewer.core.errors import StudyLoadError
from cxr_viewer.core.io.study import Study

from .formats import format_of, image_suffixes
from .sniff import read_head

#: Files skipped by name: DICOM media directories index a folder, they are not images.
_SKIPPED_NAMES = frozenset({"dicomdir"})


@dataclass
class FolderResult:
    """What :func:`load_folder` read: the studies in listing order and the files that failed."""

    studies: list[Study] = field(default_factory=list)
    errors: list[tuple[Path, StudyLoadError]] = field(default_factory=list)


def natural_key(path: Path, root: Path | None = None) -> tuple[tuple[int | str, ...], ...]:
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
    if path.suffix.casefold() in image_suffixes():
        return True
    try:
        return format_of(read_head(path)) is not None
    except OSError:
        return False


@dataclass
class Listing:
    """What :func:`scan_study_files` found: image files, and entries it could not use.

    ``skipped`` holds ``(path, reason)`` for every entry that is neither a readable image
    candidate nor an ordinary non-image file: FIFOs, sockets and devices, dangling symbolic
    links, links to folders (not followed), and folders that cannot be listed.
    """

    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def not_a_file_reason(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file (a FIFO, a dangling link, ...), or ``None``.

    Uses ``lstat``/``stat`` only: never opens the entry (opening a FIFO blocks).
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            return f"it is a symbolic link to {target}, which does not exist"
        return "no such file or folder"
    except OSError as exc:
        return f"it cannot be examined ({exc.strerror or exc})"
    mode = st.st_mode
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    for test, what in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return f"it is {what}, not a file"
    return "it is not a regular file"


def scan_study_files(path: str | Path) -> Listing:
    """The image files of ``path`` and the entries skipped (see :class:`Listing`).

    A file lists itself. Folders are walked without recursion (any depth, no RecursionError)
    and without following symbolic links; hidden entries (names starting with ``.``) are
    ignored; files are in natural order of their relative paths.

    Raises
    ------
    StudyLoadError
        When ``path`` does not exist, is not a file or folder, or cannot be listed.
    """
    root = Path(path)
    reason = not_a_file_reason(root)
    if reason is not None:
        raise StudyLoadError(f"Cannot open {root}", reason, "Check the path and try again.")
    if not stat.S_ISDIR(os.stat(root).st_mode):
        return Listing(files=[root])
    out = Listing()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as exc:
            if folder == root:
                raise StudyLoadError(
                    f"Cannot open the folder {root}",
                    f"it cannot be listed ({exc.strerror or exc})",
                    "Check that you have permission to read it.",
                ) from exc
            out.skipped.append((folder, f"the folder cannot be listed ({exc.strerror or exc})"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            candidate = Path(entry.path)
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(candidate)
                    continue
                if entry.is_symlink() and entry.is_dir():
                    out.skipped.append(
                        (candidate, "it is a symbolic link to a folder (not followed)")
                    )
                    continue
                regular = entry.is_file()
            except OSError as exc:
                out.skipped.append((candidate, f"it cannot be examined ({exc.strerror or exc})"))
                continue
            if regular:
                if is_candidate(candidate):
                    out.files.append(candidate)
                continue
            why = not_a_file_reason(candidate) or "it is not a regular file"
            out.skipped.append((candidate, why))
    out.files.sort(key=lambda p: natural_key(p, root))
    out.skipped.sort(key=lambda item: natural_key(item[0], root))
    return out


def list_study_files(path: str | Path) -> list[Path]:
    """The image files of ``path``: ``[path]`` for a file; for a folder, every candidate below it.

    Folders are walked recursively without following symbolic links; hidden files and folders
    (names starting with ``.``) are skipped; the result is in natural order of the relative
    paths. :func:`scan_study_files` also reports the entries that could not be used.

    Raises
    ------
    StudyLoadError
        When ``path`` does not exist or cannot be listed.
    """
    return scan_study_files(path).files
