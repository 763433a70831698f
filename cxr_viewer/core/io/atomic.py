"""Output files written whole or not at all, with one file mode, and a one-line disk-full error.

Every result file CXR Lens writes outside the viewer's own settings — batch overlays, heat
maps and ``predictions.csv``, DICOM Secondary Captures and structured reports — goes through
:func:`atomic_write`:

1. the content is written to a temporary file in the destination folder (``.cxr-tmp-*``),
   created with :data:`OUTPUT_FILE_MODE`;
2. the temporary file is flushed to disk (``fsync``) and renamed over the final name
   (``os.replace``, atomic on one file system), then the folder entry is synced;
3. on any failure — an exception, a full disk — the temporary file is deleted and the final
   name keeps its previous content (or stays absent). A process killed mid-write (SIGKILL,
   power loss) leaves at most a ``.cxr-tmp-*`` file, never a short file under the final name.

**File mode.** Results carry patient data, so every output file is created readable and
writable by its owner only (``0600``, whatever the umask). Share a results folder with
``chmod -R g+r`` (or a group ACL) deliberately.

A failed write is described by :func:`write_error`: one line naming the file, and for a full
disk the words "the disk is full" with the free space left on it.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from cxr_viewer.core.errors import CxrError

#: Mode of every output file (owner read/write only; see the module docstring).
OUTPUT_FILE_MODE = 0o600
#: Prefix of the temporary files; a folder's stale ones may be deleted by the run that owns it.
TMP_PREFIX = ".cxr-tmp-"

_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Write ``path`` atomically: ``write(tmp)`` fills a temporary file in the same folder.

    The temporary file exists (empty, mode :data:`OUTPUT_FILE_MODE`) when ``write`` is
    called; ``write`` may reopen it by name (PIL, numpy, pydicom do). Raises what ``write``,
    ``fsync`` or the rename raise (OSError for a full disk), after deleting the temporary
    file.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX, suffix=path.suffix)
    tmp = Path(name)
    try:
        os.close(fd)
        write(tmp)
        os.chmod(tmp, OUTPUT_FILE_MODE)  # a writer that recreated the file got the umask's mode
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno is None:
            raise
        # name the file the caller asked for, not the temporary one
        raise type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), str(path)) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """:func:`atomic_write` of ``data``."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    return atomic_write(path, write)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); best effort where folders cannot be opened."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_disk_full(exc: BaseException) -> bool:
    """True when ``exc`` (or an exception it was raised from) is "no space left" / over quota.

    Libraries that wrap the OSError (pydicom re-raises it with its traceback in the message)
    are recognised by the chained exception or, failing that, by the errno text.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _DISK_FULL:
            return True
        if "[Errno 28]" in str(current) or "No space left on device" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def free_space_text(folder: str | Path) -> str:
    """ "12.3 MB free" on the file system of ``folder`` (of its nearest existing parent)."""
    where = Path(folder)
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        return "free space unknown"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if free >= size:
            return f"{free / size:.1f} {unit} free"
    return f"{free} bytes free"


def write_error(path: str | Path, exc: BaseException, error: type[CxrError] = CxrError) -> CxrError:
    """One line for a failed write of ``path``: the file, why (no traceback), what to do."""
    path = Path(path)
    if is_disk_full(exc):
        return error(
            f"Cannot write {path}",
            f"the disk is full ({free_space_text(path.parent)} on {path.parent})",
            "Free space on that disk or choose an output folder on another disk, then run again.",
        )
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    reason = " ".join(reason.split("Traceback (most recent call last)")[0].split())
    return error(
        f"Cannot write {path}",
        f"{reason or type(exc).__name__}",
        "Choose a folder you can write to, or fix its permissions.",
    )


__all__ = [
    "OUTPUT_FILE_MODE",
    "TMP_PREFIX",
    "atomic_write",
    "atomic_write_bytes",
    "free_space_text",
    "is_disk_full",
    "write_error",
]
