"""Overlay panel: per method a visibility toggle, opacity, colormap, layer/settings and a legend.

Every control only calls a :class:`~cxr_viewer.gui.state.ViewerState` setter; the panel redraws
itself from the state's ``overlay`` events (so keyboard shortcuts and tests that change the
state directly keep it in step).
"""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from cxr_viewer.gui.state import METHODS, SAMPLE_SETTINGS, ViewerState, colormaps_for

from .legend import ColorBar

SHORTCUT_KEYS = {"gradcam": "G", "lime": "L", "shap": "S"}


class OverlayControls(QFrame):
    """The controls of one method."""

    def __init__(self, state: ViewerState, method: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("OverlayControls")
        self.state, self.method = state, method
        ov = state.overlays[method]
        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 4, 6, 4)
        top = QHBoxLayout()
        self.toggle = QCheckBox(f"{ov.label}")
        self.toggle.setObjectName("OverlayToggle")
        self.toggle.setToolTip(f"Show or hide the {ov.label} overlay ({SHORTCUT_KEYS[method]})")
        self.toggle.toggled.connect(lambda on: self.state.set_visible(self.method, on))
        top.addWidget(self.toggle)
        top.addStretch(1)
        self.status = QLabel("")
        self.status.setObjectName("Dim")
        top.addWidget(self.status)
        outer.addLayout(top)

        form = QFormLayout()
        form.setContentsMargins(18, 0, 0, 0)
        row = QHBoxLayout()
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setToolTip("Opacity (applied at once; the map is not recomputed)")
        self.opacity.valueChanged.connect(lambda v: self.state.set_opacity(self.method, v / 100.0))
        self.opacity_label = QLabel("")
        self.opacity_label.setMinimumWidth(40)
        row.addWidget(self.opacity)
        row.addWidget(self.opacity_label)
        form.addRow("Opacity", row)

        self.colormap = QComboBox()
        self.colormap.addItems(colormaps_for(ov.signed))
        self.colormap.setToolTip(
            "Diverging: red toward the class, blue against it"
            if ov.signed
            else "Sequential: stronger evidence is warmer"
        )
        self.colormap.activated.connect(
            lambda _i: self.state.set_colormap(self.method, self.colormap.currentText())
        )
        form.addRow("Colormap", self.colormap)

        self.layer = QComboBox()
        self.layer.setToolTip("The layer the map is computed at")
        self.layer.activated.connect(
            lambda _i: self.state.set_layer(self.method, self.layer.currentData())
        )
        form.addRow("Layer", self.layer)
        self._layer_row = self.layer

        self.samples = None
        self._sample_key = None
        if method in SAMPLE_SETTINGS:
            self._sample_key, choices = SAMPLE_SETTINGS[method]
            self.samples = QComboBox()
            for n in choices:
                self.samples.addItem(f"{n}", n)
            self.samples.setToolTip(
                "Perturbed images LIME evaluates at most (it stops early once the map is stable)"
                if method == "lime"
                else "Gradient samples per map (more: closer to exact, slower)"
            )
            self.samples.activated.connect(
                lambda _i: self.state.set_setting(
                    self.method, self._sample_key, int(self.samples.currentData())
                )
            )
            form.addRow("Samples", self.samples)
        outer.addLayout(form)
        self.form = form
        self.colorbar = ColorBar()
        outer.addWidget(self.colorbar)
        state.events.overlay.connect(self._on_overlay)
        state.events.target_class.connect(self._refresh_legend)
        self.refresh()

    def _on_overlay(self, method: str, what: str) -> None:
        if method != self.method:
            return
        if what == "status":  # frequent while a map computes: touch only the status text
            self.status.setText(self._status_text())
        elif what == "heatmap":
            self.status.setText(self._status_text())
            self._refresh_legend()
        else:
            self.refresh()

    def refresh(self) -> None:
        ov = self.state.overlays[self.method]
        with QSignalBlocker(self.toggle):
            self.toggle.setChecked(ov.visible)
        self.toggle.setEnabled(ov.available and self.state.model is not None)
        with QSignalBlocker(self.opacity):
            self.opacity.setValue(int(round(ov.opacity * 100)))
        self.opacity_label.setText(f"{int(round(ov.opacity * 100))} %")
        with QSignalBlocker(self.colormap):
            self.colormap.setCurrentText(ov.colormap)
        with QSignalBlocker(self.layer):
            if [self.layer.itemData(i) for i in range(self.layer.count())] != ov.layers:
                self.layer.clear()
                sizes = self.state.model.layer_sizes if self.state.model is not None else {}
                for name in ov.layers:  # input side first, with the map's resolution
                    size = sizes.get(name)
                    self.layer.addItem(f"{name} ({size[0]}×{size[1]})" if size else name, name)
            idx = self.layer.findData(ov.layer)
            if idx >= 0:
                self.layer.setCurrentIndex(idx)
        self.form.setRowVisible(self._layer_row, bool(ov.layers))
        if self.samples is not None:
            with QSignalBlocker(self.samples):
                n = ov.settings.get(self._sample_key)
                if self.samples.findData(n) < 0 and n is not None:
                    self.samples.addItem(str(n), n)
                self.samples.setCurrentIndex(self.samples.findData(n))
        self.status.setText(self._status_text())
        self._refresh_legend()

    def _status_text(self) -> str:
        ov = self.state.overlays[self.method]
        if self.state.model is None:
            return "no model"
        if not ov.available:
            return "not offered by this model"
        return {
            "idle": "",
            "waiting": "waits for the prediction",
            "queued": "queued",
            "running": f"computing {ov.progress * 100:.0f} %",
            "done": _done_text(ov.heatmap.heatmap) if ov.heatmap else "",
            "failed": "failed",
            "cancelled": "cancelled",
        }.get(ov.status, ov.status)

    def _refresh_legend(self) -> None:
        ov = self.state.overlays[self.method]
        self.colorbar.setVisible(ov.heatmap is not None)
        if ov.heatmap is None:
            return
        names = self.state.model.class_names if self.state.model else []
        t = self.state.target_class
        cls = names[t] if t is not None and 0 <= t < len(names) else ""
        self.colorbar.set_scale(ov.colormap, ov.signed, ov.heatmap.vmax, cls)


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


class OverlayPanel(QWidget):
    """The three methods' controls, stacked."""

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("OverlayPanel")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.controls = {m: OverlayControls(state, m) for m in METHODS}
        for c in self.controls.values():
            layout.addWidget(c)
        layout.addStretch(1)


def _done_text(heatmap) -> str:
    """Runtime and trust figures of a finished map (deletion/insertion AUC, SHAP completeness)."""
    parts = [_duration(getattr(heatmap, "runtime_s", 0.0))]
    trust = getattr(heatmap, "trust", {}) or {}
    if "deletion_auc" in trust:
        parts.append(f"del {trust['deletion_auc']:.2f} / ins {trust['insertion_auc']:.2f}")
    if "completeness_gap" in trust:
        parts.append(f"gap {trust['completeness_gap'] * 100:.1f} %")
    return " · ".join(parts)
