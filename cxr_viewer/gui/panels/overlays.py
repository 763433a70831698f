"""Overlay panel: per method a visibility toggle, trust verdicts and collapsible settings.

Every control only calls a :class:`~cxr_viewer.gui.state.ViewerState` setter; the panel redraws
itself from the state's ``overlay`` events (so keyboard shortcuts and tests that change the
state directly keep it in step). The maps' legends are drawn inside the image panes; here each
method shows its figures (with a tooltip saying what they mean) and its verdict badges.
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
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from cxr_viewer.core.evaluate.trust import figures_text, figures_tooltip
from cxr_viewer.core.explain.registry import EXPLAINERS
from cxr_viewer.gui.events import OverlayChange
from cxr_viewer.gui.presenter import method_verdicts, status_text
from cxr_viewer.gui.state import METHOD_SHORTCUTS, METHODS, ViewerState, colormaps_for

from .base import ElidedLabel

SHORTCUT_KEYS = METHOD_SHORTCUTS


class OverlayControls(QFrame):
    """The controls of one method: a header that is always shown, settings that fold away."""

    def __init__(self, state: ViewerState, method: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("OverlayControls")
        self.state, self.method = state, method
        ov = state.overlays[method]
        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 4, 6, 4)
        outer.setSpacing(3)
        top = QHBoxLayout()
        self.expand = QToolButton()
        self.expand.setObjectName("SectionToggle")
        self.expand.setCheckable(True)
        self.expand.setAutoRaise(True)
        self.expand.setToolTip(f"Show or fold away the {ov.label} settings")
        self.expand.toggled.connect(self._set_expanded)
        top.addWidget(self.expand)
        self.toggle = QCheckBox(f"{ov.label}")
        self.toggle.setObjectName("OverlayToggle")
        self.toggle.setToolTip(f"Show or hide the {ov.label} map ({SHORTCUT_KEYS[method]})")
        self.toggle.toggled.connect(lambda on: self.state.set_visible(self.method, on))
        top.addWidget(self.toggle)
        self.status = ElidedLabel("")
        self.status.setObjectName("Dim")
        self.status.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        top.addWidget(self.status, 1)
        outer.addLayout(top)

        self.figures = ElidedLabel("")
        self.figures.setObjectName("TrustFigures")
        outer.addWidget(self.figures)
        # the model card's localization figures for this method (shown with its map)
        self.localization = QLabel("")
        self.localization.setObjectName("CardLocalization")
        self.localization.setWordWrap(True)  # the dock's width is fixed
        self.localization.setTextFormat(Qt.TextFormat.PlainText)
        self.localization.hide()
        outer.addWidget(self.localization)
        self.badge_box = QVBoxLayout()
        self.badge_box.setContentsMargins(0, 0, 0, 0)
        self.badge_box.setSpacing(2)
        outer.addLayout(self.badge_box)
        self.badges: list[QLabel] = []

        self.details = QWidget()
        self.details.setObjectName("OverlayDetails")
        form = QFormLayout(self.details)
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

        self.samples: QComboBox | None = None
        self._sample_key: str | None = None  # set together with ``samples``
        control = EXPLAINERS[method].samples
        if control is not None:
            self._sample_key = control.key
            self.samples = QComboBox()
            for n in control.choices:
                self.samples.addItem(f"{n}", n)
            self.samples.setToolTip(control.tooltip)
            self.samples.activated.connect(
                lambda _i: self.state.set_setting(
                    self.method, self._sample_key, int(self.samples.currentData())
                )
            )
            form.addRow("Samples", self.samples)
        outer.addWidget(self.details)
        self.form = form
        state.events.overlay.connect(self._on_overlay)
        state.events.target_class.connect(self._refresh_trust)
        state.events.target_class.connect(self._refresh_localization)
        state.events.model.connect(lambda: self.status.setText(self._status_text()))
        state.events.model.connect(self._refresh_localization)
        self._set_expanded(False)
        self.refresh()

    def _set_expanded(self, on: bool) -> None:
        with QSignalBlocker(self.expand):
            self.expand.setChecked(on)
        self.expand.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.details.setVisible(on)

    def _on_overlay(self, method: str, what: OverlayChange) -> None:
        if method != self.method:
            return
        if (
            what is OverlayChange.STATUS
        ):  # frequent while a map computes: touch only the status text
            self.status.setText(self._status_text())
        elif what is OverlayChange.HEATMAP:
            self.status.setText(self._status_text())
            self._refresh_trust()
        else:
            self.refresh()

    def refresh(self) -> None:
        ov = self.state.overlays[self.method]
        with QSignalBlocker(self.toggle):
            self.toggle.setChecked(ov.visible)
        self.toggle.setEnabled(ov.available and self.state.model is not None)
        self.toggle.setToolTip(
            f"Show or hide the {ov.label} map ({SHORTCUT_KEYS[self.method]})"
            if ov.available or not ov.unavailable_reason
            else f"{ov.label} does not apply to this model: {ov.unavailable_reason}"
        )
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
        if self.samples is not None and self._sample_key is not None:
            with QSignalBlocker(self.samples):
                n = ov.settings.get(self._sample_key)
                if self.samples.findData(n) < 0 and n is not None:
                    self.samples.addItem(str(n), n)
                self.samples.setCurrentIndex(self.samples.findData(n))
        self.status.setText(self._status_text())
        self._refresh_trust()
        self._refresh_localization()

    def localization_text(self) -> str:
        """The model card's sentence on how this method's maps land on radiologists' boxes
        ("" when the card has no figure for it: nothing is made up)."""
        m = self.state.model
        card = m.localization if m is not None else None
        if m is None or card is None:
            return ""
        explained = self._explained_class()
        if explained == "":
            return ""  # a class index the model does not have: say nothing rather than guess
        return card.note(self.method, self.state.overlays[self.method].label, explained)

    def _explained_class(self) -> str | None:
        """The explained class's name; None before there is one, "" for an unknown index."""
        m, t = self.state.model, self.state.target_class
        if m is None or t is None:
            return None
        return m.class_names[t] if 0 <= t < len(m.class_names) else ""

    def _refresh_localization(self) -> None:
        """Shown with the method's map (its toggle on), when the card has the figures."""
        text = self.localization_text()
        m = self.state.model
        card = m.localization if m is not None else None
        self.localization.setText(text)
        # what the figures mean, when the line quotes them
        quoted = bool(text) and card is not None and card.applies_to(self._explained_class())
        self.localization.setToolTip(card.tooltip() if quoted and card is not None else "")
        self.localization.setVisible(bool(text) and self.state.overlays[self.method].visible)

    def _status_text(self) -> str:
        ov = self.state.overlays[self.method]
        hm = getattr(ov.heatmap, "heatmap", None)
        blank = getattr(hm, "status", "ok") != "ok"  # "no signal: …" says why, not how long
        if ov.status == "done" and hm is not None and self.state.model is not None and not blank:
            return _duration(getattr(hm, "runtime_s", 0.0))
        return status_text(self.state, self.method)

    def _refresh_trust(self) -> None:
        """The figures line (tooltip: what they mean) and one badge per verdict."""
        ov = self.state.overlays[self.method]
        result = ov.heatmap
        trust = (
            dict(getattr(result.heatmap, "trust", {}) or {})
            if result is not None and not result.partial
            else {}
        )
        text = figures_text(trust)
        self.figures.set_full_text(text, figures_tooltip(trust) if text else "")
        self.figures.setVisible(bool(text))
        found = method_verdicts(self.state, self.method)
        while len(self.badges) < len(found):
            label = QLabel("")  # wrapped, not cut: the dock's width is fixed
            label.setObjectName("VerdictBadge")
            label.setWordWrap(True)
            label.setTextFormat(Qt.TextFormat.PlainText)
            self.badge_box.addWidget(label)
            self.badges.append(label)
        for i, label in enumerate(self.badges):
            if i < len(found):
                v = found[i]
                label.setText(v.text)
                label.setToolTip(f"<p><b>{v.text}.</b></p><p>{v.detail}</p>")
                label.setProperty("level", v.level)
                label.style().unpolish(label)
                label.style().polish(label)
                label.show()
            else:
                label.hide()

    def verdict_texts(self) -> list[tuple[str, str]]:
        """(level, text) of the badges shown (for tests)."""
        return [(str(b.property("level")), b.text()) for b in self.badges if not b.isHidden()]


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


class OverlayPanel(QWidget):
    """The three methods' controls, stacked (settings folded away until a method is shown)."""

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("OverlayPanel")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.controls = {m: OverlayControls(state, m) for m in METHODS}
        for c in self.controls.values():
            layout.addWidget(c)
        # the agreement layer (core.evaluate.agreement.agreement_layer), drawn on the composite view
        # short: the dock has a fixed width and a longer text clipped the whole panel
        self.agreement = QCheckBox("Agreement layer (≥ 2 maps' top 10 %)")
        self.agreement.setToolTip(
            "Where at least 2 of the shown maps put their top 10 % of pixels. "
            "Drawn over the composite view (View ▸ side by side or V): yellow where every "
            "shown map puts its top 10 % of pixels, darker where only two do."
        )
        self.agreement.setChecked(state.agreement_k > 0)
        self.agreement.toggled.connect(lambda on: state.set_agreement_layer(2 if on else 0))
        layout.addWidget(self.agreement)
        layout.addStretch(1)
