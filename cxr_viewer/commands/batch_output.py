"""Where `cxr-viewer batch` puts its results: the output folder, unique names, atomic writes.

:class:`OutputWriter` owns the output folder of one run:

- ``predictions.csv`` is only ever replaced whole (temporary file + rename). While the run
  goes, each finished row is appended to ``predictions.csv.partial`` (flushed and synced),
  so a killed run loses at most the row it was writing; ``--resume`` reads both.
- every other output (overlay PNG, heat map ``.npy``, ...) is written to a temporary file
  in the same folder and renamed into place (:meth:`OutputWriter.save`), and its name is
  recorded in the row (``overlay_<method>``, ``map_<method>``), so names can be made unique
  (:meth:`OutputWriter.unique_stem`) without anyone having to guess them.
- :func:`prepare_out_dir` refuses an output folder that holds files unless the user asked to
  ``--resume`` or ``--overwrite``; overwriting deletes only the files the previous
  ``predictions.csv`` lists, never anything else in the folder.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

from cxr_viewer.core.errors import CxrError
from cxr_viewer.core.io.atomic import OUTPUT_FILE_MODE, TMP_PREFIX, atomic_write

CSV_NAME = "predictions.csv"
JOURNAL_NAME = CSV_NAME + ".partial"
#: The lock file of a running batch (:class:`OutDirLock`); never an output.
LOCK_NAME = ".cxr-batch.lock"
#: Row statuses. A row whose status is ``ok`` is done: ``--resume`` skips its file when the
#: path and the content hash are unchanged; every other row is tried again.
DONE_STATUS = "ok"
#: Longest stem (UTF-8 bytes) of an output name; with the method and suffix it stays far
#: below the 255-byte limit of common file systems.
MAX_STEM_BYTES = 120
_TMP_PREFIX = TMP_PREFIX


def printable(text: object) -> str:
    """``text`` as valid UTF-8 on one line: undecodable bytes of a file name (surrogate
    escapes) become ``\\xNN``, line breaks become spaces (one CSV record per line)."""
    value = str(text)
    try:  # a name read from disk: its undecodable bytes are U+DC80..U+DCFF
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # any other lone surrogate
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return " ".join(value.splitlines()) if ("\n" in value or "\r" in value) else value


def content_hash(path: Path) -> str:
    """SHA-256 of a file's bytes (raises OSError when it cannot be read)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_rows(out_dir: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Columns and rows of an earlier run in ``out_dir``: ``predictions.csv`` then the rows a
    killed run left in the journal (a torn last line is dropped); later rows win per file."""
    columns: list[str] = []
    rows: dict[str, dict[str, str]] = {}
    for name in (CSV_NAME, JOURNAL_NAME):
        path = out_dir / name
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise CxrError(
                f"Cannot read {path}", f"{exc.strerror or exc}", "Check the permissions."
            ) from exc
        if not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]  # the last row was being written when killed
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames and not columns:
            columns = list(reader.fieldnames)
        for row in reader:
            if row.get("file") and None not in row and None not in row.values():
                rows[row["file"]] = row
    return columns, list(rows.values())


def prepare_out_dir(out_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Check (before the model loads) that ``out_dir`` may be used; create it if needed.

    Raises
    ------
    CxrError
        ``--resume`` with ``--overwrite``; ``out_dir`` is a file, holds files although neither
        was given, cannot be created, or is not writable.
    """
    if resume and overwrite:
        raise CxrError(
            "Choose --resume or --overwrite, not both",
            "--resume keeps the earlier results, --overwrite deletes them.",
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise CxrError(
            f"Cannot write to {out_dir}", "it is a file, not a folder.", "Choose a folder."
        )
    try:
        busy = out_dir.is_dir() and any(p.name != LOCK_NAME for p in out_dir.iterdir())
    except OSError as exc:
        raise CxrError(
            f"Cannot use the output folder {out_dir}",
            f"it cannot be listed ({exc.strerror or exc}).",
            "Check its permissions or choose another --out.",
        ) from exc
    if busy and not (resume or overwrite):
        has_csv = (out_dir / CSV_NAME).exists() or (out_dir / JOURNAL_NAME).exists()
        raise CxrError(
            f"The output folder {out_dir} is not empty",
            "it holds the results of an earlier run"
            if has_csv
            else "it holds other files, which a run could overwrite",
            "Pass --resume to continue that run, --overwrite to replace its results, or "
            "choose a new --out.",
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=_TMP_PREFIX):
            pass
    except OSError as exc:
        raise CxrError(
            f"Cannot write to the output folder {out_dir}",
            f"{exc.strerror or exc}.",
            "Choose a folder you can write to (--out), or fix its permissions.",
        ) from exc


class OutDirLock:
    """An exclusive OS lock on ``--out``, held for a whole run (both engines).

    The lock is ``flock`` (POSIX; ``msvcrt.locking`` on Windows) on the file
    :data:`LOCK_NAME` in the folder, which records the holder's pid and start time for the
    message a second run gets. The OS drops the lock when the process ends, however it ends,
    so a killed run never leaves the folder locked. :meth:`release` deletes the file while
    still holding the lock; :meth:`acquire` checks that the file it locked is still the one
    in the folder, so a run that raced a release cannot share the folder with a third one.
    """

    def __init__(self, path: Path, fd: int, created: bool = False) -> None:
        self.path = path
        self._fd: int | None = fd
        #: the folder did not exist before: removed again at release if the run left it empty
        self.created = created

    @classmethod
    def acquire(cls, out_dir: Path) -> OutDirLock:
        """Lock ``out_dir`` (created if needed) or raise :class:`CxrError` saying who holds it."""
        if out_dir.exists() and not out_dir.is_dir():
            raise CxrError(
                f"Cannot write to {out_dir}", "it is a file, not a folder.", "Choose a folder."
            )
        path = out_dir / LOCK_NAME
        created = not out_dir.exists()
        try:
            for _ in range(100):
                out_dir.mkdir(parents=True, exist_ok=True)
                try:
                    fd = os.open(path, os.O_RDWR | os.O_CREAT, OUTPUT_FILE_MODE)
                except FileNotFoundError:  # another run removed the folder it had created
                    continue
                if not _try_lock(fd):
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise CxrError(
                        f"Another batch is writing to {out_dir} ({holder})",
                        "two runs into one output folder would overwrite each other's files "
                        "and rows.",
                        "Wait for it to finish or choose another --out.",
                    )
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(path))
                except FileNotFoundError:
                    same = False
                if same:
                    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()} {started}\n".encode())
                    return cls(path, fd, created)
                os.close(fd)  # the holder released (deleted) it meanwhile: lock the new one
        except OSError as exc:
            raise CxrError(
                f"Cannot write to the output folder {out_dir}",
                f"{exc.strerror or exc}.",
                "Choose a folder you can write to (--out), or fix its permissions.",
            ) from exc
        raise CxrError(f"Cannot lock the output folder {out_dir}", "it kept changing.")

    def release(self) -> None:
        """Delete the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        if os.name == "posix":
            self.path.unlink(missing_ok=True)  # while still locked: see the class docstring
            os.close(fd)
        else:  # Windows cannot delete an open file
            os.close(fd)
            try:
                self.path.unlink(missing_ok=True)
            except OSError:
                pass
        if self.created:  # a run refused before it wrote anything leaves no folder behind
            try:
                self.path.parent.rmdir()
            except OSError:  # not empty (results, or another run's lock): kept
                pass

    def __enter__(self) -> OutDirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _try_lock(fd: int) -> bool:
    """Take an exclusive lock on ``fd`` without waiting; False when another process holds it."""
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _read_holder(fd: int) -> str:
    """ "pid N, started T" from a lock file (what the holder wrote), or what is known."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except (OSError, AttributeError):  # no pread on Windows
        text = ""
    pid, _, started = text.partition(" ")
    if not pid.isdigit():
        return "pid unknown"
    return f"pid {pid}, started {started}" if started else f"pid {pid}"


def save_output(
    out_dir: Path, row: dict[str, Any], column: str, name: str, write: Callable[[Path], None]
) -> Path:
    """Write one output file ``out_dir/name`` atomically and record ``name`` in ``row[column]``.

    ``write(path)`` writes the content to ``path`` (a temporary file in ``out_dir``); it is
    synced and renamed to ``name`` only when complete, mode ``0600``
    (:func:`~cxr_viewer.core.io.atomic.atomic_write`). OSError propagates to the caller.
    """
    atomic_write(out_dir / name, write)
    row[column] = name
    return out_dir / name


class OutputWriter:
    """The output folder of one batch run (see the module docstring).

    Parameters
    ----------
    out_dir:
        A folder :func:`prepare_out_dir` accepted.
    columns:
        The CSV columns of this run.
    resume:
        Keep the rows of an earlier run (their files are skipped when done and unchanged).
    overwrite:
        Delete the files an earlier run recorded, and its CSV, before starting.
    output_prefixes:
        Columns starting with these hold output file names (``overlay_gradcam``, ...): the
        files :meth:`save` wrote, which ``--overwrite`` and a redone file delete.
    """

    def __init__(
        self,
        out_dir: Path,
        columns: list[str],
        *,
        resume: bool = False,
        overwrite: bool = False,
        output_prefixes: tuple[str, ...] = ("overlay_", "map_"),
    ) -> None:
        self.out_dir = out_dir
        self.columns = list(columns)
        self.output_prefixes = tuple(output_prefixes)
        old_columns, old_rows = read_rows(out_dir) if (resume or overwrite) else ([], [])
        if resume and old_rows and old_columns != self.columns:
            added = sorted(set(self.columns) - set(old_columns))
            dropped = sorted(set(old_columns) - set(self.columns))
            raise CxrError(
                "Cannot resume: the earlier run wrote other columns",
                f"it was run with other methods, model or trust settings (new columns: "
                f"{', '.join(added) or 'none'}; missing: {', '.join(dropped) or 'none'}).",
                "Run with the same settings, or pass --overwrite, or choose a new --out.",
            )
        self._kept: dict[str, dict[str, str]] = {}
        self._used: set[str] = set()
        for stale in out_dir.glob(_TMP_PREFIX + "*"):
            stale.unlink(missing_ok=True)
        if overwrite:
            for row in old_rows:
                self._delete_outputs(row)
            for name in (CSV_NAME, JOURNAL_NAME):
                (out_dir / name).unlink(missing_ok=True)
        else:
            for row in old_rows:
                self._kept[row["file"]] = row
                self._used.update(v.casefold() for v in self._outputs_of(row))
        self._journal_path = out_dir / JOURNAL_NAME
        fd = os.open(self._journal_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, OUTPUT_FILE_MODE)
        os.chmod(self._journal_path, OUTPUT_FILE_MODE)  # an older journal kept its own mode
        self._journal = open(fd, "w", encoding="utf-8", newline="")
        self._csv = csv.DictWriter(self._journal, fieldnames=self.columns, restval="")
        self._csv.writeheader()
        self._new: dict[str, dict[str, Any]] = {}

    # -- what is done already ---------------------------------------------------------------
    def done(self, file: str, digest: str | None) -> bool:
        """True when an earlier run predicted ``file`` with this content hash."""
        row = self._kept.get(file)
        return bool(
            row and digest and row.get("sha256") == digest and row.get("status") == DONE_STATUS
        )

    @property
    def kept_rows(self) -> int:
        return len(self._kept)

    # -- names -----------------------------------------------------------------------------
    def unique_stem(self, rel: str, suffixes: Iterable[str] = ()) -> str:
        """A file-name stem for the input ``rel`` (its path relative to the input folder).

        Readable (letters of any script, digits, ``._-``; folders joined by ``__``), cut to
        :data:`MAX_STEM_BYTES`, and unique in this folder ignoring case: if another input
        already has it (``a.jpg`` and ``a.png``), a hash of ``rel`` is appended.
        ``suffixes`` are the endings that will be added (``_gradcam.png``): all of them must
        be free.
        """
        full = printable(rel)
        rel = re.sub(r"\.[^./\\]*$", "", full)  # drop the extension
        base = re.sub(r"[^\w.-]+", "_", rel.replace("\\", "/").replace("/", "__")).strip("._")
        base = (base or "image").encode("utf-8")[:MAX_STEM_BYTES].decode("utf-8", "ignore")
        ends = list(suffixes) or [""]
        tag = hashlib.sha1(full.encode("utf-8")).hexdigest()
        for stem in (base, *(f"{base}-{tag[:k]}" for k in (8, 16, 40))):
            names = {(stem + e).casefold() for e in ends}
            if not names & self._used:
                self._used |= names
                return stem
        raise CxrError(f"Cannot name the outputs of {full}", "every candidate name is taken.")

    def release(self, file: str) -> None:
        """Free the output names of an earlier row of ``file`` (it is about to be redone)."""
        row = self._kept.get(file)
        if row is not None:
            self._used.difference_update(v.casefold() for v in self._outputs_of(row))

    # -- writing ---------------------------------------------------------------------------
    def save(self, row: dict[str, Any], column: str, name: str, write: Callable[[Path], None]):
        """Write one output file atomically and record its name in ``row[column]``.

        ``write(path)`` writes the content to ``path`` (a temporary file in the output folder);
        it is renamed to ``name`` only when complete. OSError propagates to the caller.
        """
        return save_output(self.out_dir, row, column, name, write)

    def add_row(self, row: dict[str, Any]) -> None:
        """Append a finished row to the journal (flushed and synced: a kill keeps it)."""
        clean = {k: printable(v) if isinstance(v, str) else v for k, v in row.items()}
        old = self._kept.pop(clean["file"], None)
        if old is not None:
            self._delete_outputs(old, keep=set(self._outputs_of(clean)))
        self._new[clean["file"]] = clean
        self._csv.writerow(clean)
        self._journal.flush()
        os.fsync(self._journal.fileno())

    def close(self, order: Iterable[str] = ()) -> Path:
        """Write ``predictions.csv`` (earlier rows kept, then this run's) atomically.

        ``order``: files (as in the rows' ``file``) whose rows of this run come first, in this
        order (an engine whose rows arrive out of order gives the input order); the others
        follow as they were added.
        """
        self._journal.close()
        first = {f: self._new[f] for f in order if f in self._new}
        rows = [*self._kept.values(), *first.values()]
        rows += [r for f, r in self._new.items() if f not in first]

        def write(path: Path) -> None:
            with open(path, "w", encoding="utf-8", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=self.columns, restval="")
                writer.writeheader()
                writer.writerows(rows)
                fh.flush()
                os.fsync(fh.fileno())

        self.save({}, "csv", CSV_NAME, write)
        self._journal_path.unlink(missing_ok=True)
        return self.out_dir / CSV_NAME

    def abandon(self) -> None:
        """Close the journal without writing the CSV (its rows stay for ``--resume``)."""
        try:
            self._journal.close()
        except OSError:
            pass

    # -- helpers ---------------------------------------------------------------------------
    def _outputs_of(self, row: dict[str, Any]) -> list[str]:
        """Output file names recorded in a row (only plain names inside the folder)."""
        out = []
        for key, value in row.items():
            if key and key.startswith(self.output_prefixes) and isinstance(value, str) and value:
                if "/" not in value and "\\" not in value and value not in (".", ".."):
                    out.append(value)
        return out

    def _delete_outputs(self, row: dict[str, Any], keep: Collection[str] = frozenset()) -> None:
        for name in self._outputs_of(row):
            if name not in keep:
                try:
                    (self.out_dir / name).unlink(missing_ok=True)
                except OSError:
                    pass
