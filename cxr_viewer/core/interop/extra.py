"""The optional packages of the interop layer (the ``pacs`` extra), imported where used."""

from __future__ import annotations

import importlib
from types import ModuleType

from cxr_viewer.core.errors import CxrError


def import_extra(
    module: str, error: type[CxrError], what: str, *, package: str = "", extra: str = "DICOM"
) -> ModuleType:
    """``module``, imported; ``error`` (``what``, that ``package`` — default the module's name —
    is not installed, how to install the ``pacs`` extra, called ``extra`` to the user) when it
    cannot be."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise error(
            what,
            f"the {package or module} package is not installed",
            f'Install the {extra} extra: python -m pip install -e ".[pacs]"',
        ) from exc
