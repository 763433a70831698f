"""Settings remembered between sessions (QSettings): window layout, recent files, preferences.

``$CXR_LENS_SETTINGS`` (an .ini path) overrides the platform's location; tests use it so they
never read or write a user's settings.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

from cxr_viewer.core.model.model_io import DeviceRequest

from .state import METHODS, ViewerState

MAX_RECENT = 10
#: the DICOM export's Parametric Maps: on the film's grid, at the model's input size, or none
PM_CHOICES = ("source", "model", "none")


class Settings:
    """A thin typed wrapper over QSettings."""

    def __init__(self, path: str | Path | None = None) -> None:
        path = path or os.environ.get("CXR_LENS_SETTINGS")
        if path:
            self.q = QSettings(str(path), QSettings.Format.IniFormat)
        else:
            self.q = QSettings("CXR Lens", "cxr-viewer")
        #: nothing was saved before: the viewer's first launch for this user (or settings file)
        self.fresh = not self.q.allKeys()

    def _get(self, key: str, default: Any, kind: type) -> Any:
        value = self.q.value(key, default)
        if value is None:
            return default
        try:
            if kind is bool:
                return value if isinstance(value, bool) else str(value).lower() in ("true", "1")
            return kind(value)
        except (TypeError, ValueError):
            return default

    # ------------------------------------------------------------------ recent files
    def recent_files(self) -> list[str]:
        value = self.q.value("recent", [])
        if isinstance(value, str):  # QSettings gives a one-item list back as a string
            value = [value]
        return [str(v) for v in value if v] if isinstance(value, list | tuple) else []

    def add_recent(self, path: str | Path) -> list[str]:
        p = str(Path(path).resolve())
        recent = [p] + [r for r in self.recent_files() if r != p]
        recent = recent[:MAX_RECENT]
        self.q.setValue("recent", recent)
        return recent

    # ------------------------------------------------------------------ misc
    @property
    def last_dir(self) -> str:
        return self._get("last_dir", str(Path.home()), str)

    @last_dir.setter
    def last_dir(self, value: str) -> None:
        self.q.setValue("last_dir", str(value))

    @property
    def dicom_pm_resolution(self) -> str:
        """Where the DICOM export's Parametric Maps lie: "source" (the film's pixel grid),
        "model" (the model's input size) or "none" (not written); an unknown value reads as
        "source"."""
        value = self._get("dicom_pm_resolution", "source", str)
        return value if value in PM_CHOICES else "source"

    @dicom_pm_resolution.setter
    def dicom_pm_resolution(self, value: str) -> None:
        if value not in PM_CHOICES:
            raise ValueError(
                f"Parametric Map resolution '{value}' is not one of {', '.join(PM_CHOICES)}"
            )
        self.q.setValue("dicom_pm_resolution", value)

    def geometry(self) -> tuple[QByteArray | None, QByteArray | None]:
        return self.q.value("geometry"), self.q.value("window_state")

    def save_geometry(self, geometry: QByteArray, window_state: QByteArray) -> None:
        self.q.setValue("geometry", geometry)
        self.q.setValue("window_state", window_state)

    # ------------------------------------------------------------------ compute device
    @property
    def device(self) -> str:
        """Where the model runs: "auto", "cpu" or "gpu:N" (an invalid stored value: "auto").

        Read when the viewer starts (``--device`` overrides it); TensorFlow cannot move to
        another device once it runs, so a change takes effect at the next start.
        """
        try:
            return str(DeviceRequest.parse(self._get("device/choice", "auto", str)))
        except ValueError:
            return "auto"

    @device.setter
    def device(self, value: str) -> None:
        self.q.setValue("device/choice", str(DeviceRequest.parse(value)))

    @property
    def gpu_memory_mb(self) -> int | None:
        """Cap of TensorFlow's GPU memory in MB, or None: grow as needed (the default)."""
        value = self._get("device/gpu_memory_mb", 0, int)
        return value if value > 0 else None

    @gpu_memory_mb.setter
    def gpu_memory_mb(self, value: int | None) -> None:
        self.q.setValue("device/gpu_memory_mb", int(value) if value and value > 0 else 0)

    @property
    def mixed_precision(self) -> bool:
        return self._get("device/mixed_precision", False, bool)

    @mixed_precision.setter
    def mixed_precision(self, value: bool) -> None:
        self.q.setValue("device/mixed_precision", bool(value))

    # ------------------------------------------------------------------ state
    def restore_state(self, state: ViewerState) -> None:
        """Preferences into the state (invalid stored values are ignored)."""
        # ("overlay/…" keys held the old jet / 50 % defaults: the "display/…" keys start anew)
        try:
            state.set_layout(self._get("layout", state.layout, str))
        except ValueError:
            pass
        state.set_hide_patient(self._get("hide_patient", False, bool))
        for m in METHODS:
            try:
                state.set_opacity(
                    m, self._get(f"display/{m}/opacity", state.overlays[m].opacity, float)
                )
                cmap = self._get(f"display/{m}/colormap", "", str)
                if cmap:
                    state.set_colormap(m, cmap)
                state.set_visible(m, self._get(f"display/{m}/visible", False, bool))
            except ValueError:
                continue

    def save_state(self, state: ViewerState) -> None:
        self.q.setValue("layout", state.layout)
        self.q.setValue("hide_patient", state.hide_patient)
        for m, ov in state.overlays.items():
            self.q.setValue(f"display/{m}/opacity", ov.opacity)
            self.q.setValue(f"display/{m}/colormap", ov.colormap)
            self.q.setValue(f"display/{m}/visible", ov.visible)

    # ------------------------------------------------------------------ imported models
    @staticmethod
    def _import_key(model_path: str | Path) -> str:
        p = Path(model_path).resolve()
        stat = p.stat()
        # QSettings keys cannot hold '/' freely: hash the file's identity (path, size, mtime)
        ident = f"{p}|{stat.st_size}|{stat.st_mtime_ns}"
        return "imported/" + hashlib.sha1(ident.encode("utf-8")).hexdigest()

    def imported_bundle(self, model_path: str | Path) -> Path | None:
        """The bundle an earlier import made from this very file (unchanged since), if it exists."""
        try:
            value = self.q.value(self._import_key(model_path))
        except OSError:
            return None
        if value and (Path(str(value)) / "metadata.json").is_file():
            return Path(str(value))
        return None

    def remember_import(self, model_path: str | Path, bundle_dir: str | Path) -> None:
        self.q.setValue(self._import_key(model_path), str(Path(bundle_dir).resolve()))

    def sync(self) -> None:
        self.q.sync()
