"""Where CXR Lens finds its resources (demo bundle, sample studies, icons, stylesheet), and
where it keeps its caches.

Resources are looked up, in order: ``$CXR_RESOURCES``; next to a frozen (PyInstaller)
executable; the ``resources/`` folder of the source tree. Caches: :func:`cache_dir`.
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


def cache_dir(env: str, name: str) -> Path | None:
    """A cache folder: ``$env`` when set (``0``/``off``/``no``/``false``: no cache, None), else
    ``cxr-lens/<name>`` in the user's cache folder (``$XDG_CACHE_HOME`` or ``~/.cache``,
    ``%LOCALAPPDATA%`` on Windows)."""
    value = os.environ.get(env, "").strip()
    if value.lower() in ("0", "off", "no", "false"):
        return None
    if value:
        return Path(value)
    base = os.environ.get("LOCALAPPDATA") if os.name == "nt" else os.environ.get("XDG_CACHE_HOME")
    return Path(base or Path.home() / ".cache") / "cxr-lens" / name


def demo_bundle_dir() -> Path:
    """The demo model bundle shipped with the app."""
    return resources_dir() / "demo_bundle"


def samples_dir() -> Path:
    """Sample studies: real films (``real-*``, see its ATTRIBUTION.md) and generated phantoms."""
    return resources_dir() / "samples"


#: the film a first launch opens: a viral pneumonia the demo model calls PNEUMONIA (p 0.87)
#: with its Grad-CAM map over the lung fields (of the four pneumonia samples, two maps sit on
#: the heart or the clavicles, and two films are predicted at p > 0.9999, saturated)
FIRST_LAUNCH_SAMPLE = "real-06_pneumonia_virus__person106_virus_194.jpeg"


def sample_files(folder: Path | None = None) -> list[Path]:
    """The sample studies in viewing order: the real films first, then the phantoms.

    Each group keeps the folder's natural order (``core.io.list_study_files``); an empty or
    missing folder gives an empty list.
    """
    from cxr_viewer.core.io.folder import list_study_files

    folder = samples_dir() if folder is None else folder
    if not folder.is_dir():
        return []
    files = [Path(f) for f in list_study_files(folder)]
    return sorted(files, key=lambda f: not f.name.startswith("real-"))  # stable: keeps order


def first_launch_sample(files: list[Path]) -> Path | None:
    """The study a first launch shows: :data:`FIRST_LAUNCH_SAMPLE`, else the first real
    pneumonia film, else the first real film, else the first file (None: no files)."""
    real = [f for f in files if f.name.startswith("real-")]
    for group in (
        [f for f in files if f.name == FIRST_LAUNCH_SAMPLE],
        [f for f in real if "pneumonia" in f.name],
        real,
        files,
    ):
        if group:
            return group[0]
    return None


def shared_data_dir() -> Path | None:
    """The team's real test data (``../shared/data`` or ``$CXR_SHARED_DATA``), if present."""
    env = os.environ.get("CXR_SHARED_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"
    return path if path.is_dir() else None
