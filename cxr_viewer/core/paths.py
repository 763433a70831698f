"""Where CXR Lens finds its resources (demo bundle, sample studies, icons, stylesheet).

Looked up, in order: ``$CXR_RESOURCES``; next to a frozen (PyInstaller) executable; the
``resources/`` folder of the source tree.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def resources_dir() -> Path:
    env = os.environ.get("CXR_RESOURCES")
    if env:
        return Path(env)
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "resources"
    return Path(__file__).resolve().parents[2] / "resources"


def demo_bundle_dir() -> Path:
    """The demo model bundle shipped with the app."""
    return resources_dir() / "demo_bundle"


def samples_dir() -> Path:
    """Sample studies (phantoms the project generates; never copies of real data)."""
    return resources_dir() / "samples"


def shared_data_dir() -> Path | None:
    """The team's real test data (``../shared/data`` or ``$CXR_SHARED_DATA``), if present."""
    env = os.environ.get("CXR_SHARED_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"
    return path if path.is_dir() else None
