"""The image formats CXR Lens reads, as plug-ins in one registry.

Each reader is an :class:`ImageFormat` (the idea of pydicom's pixel-data decoder plug-ins): the
name messages use for it, the file suffixes it claims, a sniffing test on the file's first
:data:`~.sniff.HEAD_SIZE` bytes (magic numbers: the format is told from the content, not the
name), the Python packages it needs (``requires``; :meth:`ImageFormat.why_unavailable` says
which are missing) and the function that reads a file into a
:class:`~cxr_viewer.core.io.study.Study`. Everything that depends on which formats exist asks
this registry: :func:`cxr_viewer.core.io.load_study` (sniffing picks the reader, first match in
registration order), folder scanning (:mod:`.folder`), the viewer's Open dialog
(:func:`file_dialog_filter`), the "not a PNG, JPEG or DICOM file" messages (:func:`format_names`)
and the trainer's accepted suffixes (``trainer/datasets.py``).

This module is the registry only and imports no reader; the built-in formats are registered by
:mod:`.builtin_formats` (imported with :mod:`cxr_viewer.core.io`, so they are there whenever this
module is). Adding a format is a reader module and one :func:`register_format` call there;
``tests/core/test_io_formats.py`` adds a toy one from outside.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cxr_viewer.core.io.study import Study

#: a sniffing test: the file's first bytes → is it this format?
Sniffer = Callable[[bytes], bool]
#: a reader: (path, first bytes, frame, max_pixels) → Study, raising StudyLoadError subclasses
Reader = Callable[[Path, bytes, int, int], Study]


@dataclass(frozen=True)
class ImageFormat:
    """One image format: how to recognise it and how to read it."""

    #: what messages call it ("PNG", "DICOM")
    name: str
    #: lower-case file suffixes with the dot, the first the usual one (".png")
    suffixes: tuple[str, ...]
    sniff: Sniffer
    read: Reader
    #: import names of the packages the reader needs (checked without importing them)
    requires: tuple[str, ...] = ()
    #: one line for the documentation and ``cxr-viewer --help``
    description: str = ""

    def why_unavailable(self) -> str | None:
        """Why this format cannot be read here (a missing package), or None when it can."""
        missing = _missing(self.requires)
        if not missing:
            return None
        return f"reading {self.name} needs the Python package(s) {', '.join(missing)}"

    @property
    def available(self) -> bool:
        return self.why_unavailable() is None


@functools.cache
def _missing(requires: tuple[str, ...]) -> tuple[str, ...]:
    """The import names in ``requires`` that cannot be found (looked up once per process: folder
    scans ask for every file)."""
    return tuple(m for m in requires if importlib.util.find_spec(m) is None)


_FORMATS: dict[str, ImageFormat] = {}
_LOCK = threading.Lock()


def register_format(fmt: ImageFormat) -> ImageFormat:
    """Add ``fmt`` to the registry (after the formats already there: sniffed after them).

    Raises ValueError when its name is taken, a suffix is not a lower-case ``.xyz`` or another
    format claims it already.
    """
    with _LOCK:
        if fmt.name in _FORMATS:
            raise ValueError(f"an image format named {fmt.name!r} is registered already")
        for suffix in fmt.suffixes:
            if not suffix.startswith(".") or suffix != suffix.lower() or len(suffix) < 2:
                raise ValueError(f"suffix {suffix!r} of {fmt.name}: write it as '.xyz'")
            for other in _FORMATS.values():
                if suffix in other.suffixes:
                    raise ValueError(f"suffix {suffix} of {fmt.name} is {other.name}'s already")
        _FORMATS[fmt.name] = fmt
    return fmt


def unregister_format(name: str) -> ImageFormat:
    """Remove the format called ``name`` (KeyError if there is none) and return it."""
    with _LOCK:
        return _FORMATS.pop(name)


def registered_formats() -> tuple[ImageFormat, ...]:
    """Every registered format, in registration (= sniffing) order."""
    with _LOCK:
        return tuple(_FORMATS.values())


def available_formats() -> tuple[ImageFormat, ...]:
    """The registered formats whose packages are installed."""
    return tuple(f for f in registered_formats() if f.available)


def format_of(head: bytes) -> ImageFormat | None:
    """The first registered format whose sniffing test accepts ``head``, or None."""
    for fmt in registered_formats():
        if fmt.sniff(head):
            return fmt
    return None


def format_for_suffix(suffix: str) -> ImageFormat | None:
    """The format that claims file suffix ``suffix`` (any case, with the dot), or None."""
    suffix = suffix.casefold()
    for fmt in registered_formats():
        if suffix in fmt.suffixes:
            return fmt
    return None


def image_suffixes() -> frozenset[str]:
    """The suffixes of the formats that can be read here (folder scans, the trainer)."""
    return frozenset(s for f in available_formats() for s in f.suffixes)


def format_names(conjunction: str = "or") -> str:
    """The readable formats as a message says them: "PNG, JPEG or DICOM"."""
    names = [f.name for f in available_formats()]
    if len(names) <= 1:
        return "".join(names) or "no image format"
    return f"{', '.join(names[:-1])} {conjunction} {names[-1]}"


def file_dialog_filter() -> str:
    """A Qt file dialog filter for every readable format, then all files."""
    patterns = []
    for fmt in available_formats():
        for s in fmt.suffixes:
            patterns += [f"*{s}", f"*{s.upper()}"]
    return f"Images ({' '.join(patterns)});;All files (*)"
