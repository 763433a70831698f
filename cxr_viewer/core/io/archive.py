"""Zip archives (bundle ``.zip``, Keras ``.keras``) opened with size caps: no zip bomb.

A zip's central directory declares each entry's compressed and uncompressed size. Before
anything is extracted or handed to Keras, :func:`check_zip` refuses an archive whose entries
are too many, too large one by one or together, or compressed more than a real model or
bundle ever is (a ratio cap: gigabytes of zeros deflate ~1000:1, weights and JSON ~1–10:1).
:func:`extract_zip` (and :func:`read_member`, for one entry read into memory) then streams every entry with its own byte counter, so an entry that
inflates past what it declared is stopped too, and refuses names that leave the destination
and symbolic-link entries.
"""

from __future__ import annotations

import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cxr_viewer.core.errors import BundleError

MiB = 2**20
GiB = 2**30


@dataclass(frozen=True)
class ZipLimits:
    """Caps for one kind of archive."""

    max_total: int  # bytes, all entries uncompressed
    max_entry: int  # bytes, one entry uncompressed
    max_ratio: float = 100.0  # uncompressed / compressed, for entries above ratio_floor
    ratio_floor: int = 1 * MiB  # small entries (JSON) may compress better than this
    max_entries: int = 10_000
    #: per-name caps (e.g. a Keras config.json), by the entry's file name
    named: tuple[tuple[str, int], ...] = ()


#: A bundle folder zipped: model (up to ~1 GB for big backbones), metadata, background, report.
BUNDLE_LIMITS = ZipLimits(max_total=3 * GiB, max_entry=2 * GiB, max_entries=2_000)
#: A Keras 3 ``.keras`` file: config.json and metadata.json are read into memory whole.
KERAS_LIMITS = ZipLimits(
    max_total=3 * GiB,
    max_entry=2 * GiB,
    max_entries=100,
    named=(("config.json", 64 * MiB), ("metadata.json", 1 * MiB)),
)


class ArchiveError(BundleError):
    """A zip archive exceeds a cap or is malformed (subclass so callers catch BundleError)."""


def _refuse(archive: Path, why: str) -> ArchiveError:
    return ArchiveError(
        f"Refusing to open {archive.name}",
        why,
        "The archive is damaged or was crafted to exhaust memory or disk (a zip bomb); "
        "ask for the file again from its source.",
    )


def check_zip(zf: zipfile.ZipFile, archive: Path, limits: ZipLimits) -> None:
    """Raise :class:`ArchiveError` when the declared sizes of ``zf`` exceed ``limits``."""
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise _refuse(archive, f"it has {len(infos):,} entries (at most {limits.max_entries:,})")
    named = dict(limits.named)
    total = 0
    for info in infos:
        size = info.file_size
        total += size
        cap = named.get(Path(info.filename).name, limits.max_entry)
        if size > cap:
            raise _refuse(
                archive,
                f"its entry '{info.filename}' inflates to {size / MiB:,.0f} MiB "
                f"(at most {cap / MiB:,.0f} MiB)",
            )
        ratio = size / max(info.compress_size, 1)
        if size > limits.ratio_floor and ratio > limits.max_ratio:
            raise _refuse(
                archive,
                f"its entry '{info.filename}' is compressed {ratio:,.0f}:1 "
                f"({info.compress_size:,} bytes inflate to {size:,}); at most "
                f"{limits.max_ratio:,.0f}:1 is accepted",
            )
    if total > limits.max_total:
        raise _refuse(
            archive,
            f"its entries inflate to {total / MiB:,.0f} MiB in total "
            f"(at most {limits.max_total / MiB:,.0f} MiB)",
        )


def check_zip_file(path: Path, limits: ZipLimits) -> None:
    """:func:`check_zip` for a file on disk; a file that is not a zip is left alone."""
    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as zf:
            check_zip(zf, path, limits)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise _refuse(path, f"it is not a readable zip archive ({exc})") from exc


def read_member(zf: zipfile.ZipFile, archive: Path, name: str, limits: ZipLimits) -> bytes:
    """One entry of ``zf`` in memory, never more than ``limits`` allow.

    The whole archive's declared sizes are checked first (:func:`check_zip`), then the entry
    is inflated chunk by chunk and refused as soon as it passes its declared size or its cap
    (per-name cap, else ``max_entry``): nothing larger than the cap is ever held. Raises
    :class:`ArchiveError`, or ``KeyError`` when the entry is missing.
    """
    check_zip(zf, archive, limits)
    info = zf.getinfo(name)
    cap = min(info.file_size, dict(limits.named).get(Path(name).name, limits.max_entry))
    parts: list[bytes] = []
    read = 0
    with zf.open(info) as src:
        while chunk := src.read(min(MiB, cap - read + 1)):
            read += len(chunk)
            if read > cap:
                raise _refuse(archive, f"its entry '{name}' inflates past its size")
            parts.append(chunk)
    return b"".join(parts)


def extract_zip(archive: Path, dest: Path, limits: ZipLimits) -> None:
    """Extract ``archive`` into ``dest`` within ``limits`` (see the module docstring)."""
    dest = dest.resolve()
    with zipfile.ZipFile(archive) as zf:
        check_zip(zf, archive, limits)
        written = 0
        for info in zf.infolist():
            name = info.filename
            target = (dest / name).resolve()
            if not target.is_relative_to(dest) or Path(name).is_absolute():
                raise _refuse(archive, f"its entry '{name}' points outside the bundle")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise _refuse(archive, f"its entry '{name}' is a symbolic link")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            entry_written = 0
            with zf.open(info) as src, open(target, "wb") as out:
                while chunk := src.read(MiB):
                    entry_written += len(chunk)
                    written += len(chunk)
                    if entry_written > max(info.file_size, 0) or written > limits.max_total:
                        raise _refuse(archive, f"its entry '{name}' inflates past its size")
                    out.write(chunk)


__all__ = [
    "BUNDLE_LIMITS",
    "KERAS_LIMITS",
    "ArchiveError",
    "ZipLimits",
    "check_zip",
    "check_zip_file",
    "extract_zip",
    "read_member",
]
