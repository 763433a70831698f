"""Prediction panel: a bar per class, the predicted class, the threshold, the target class."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGridLayout,
    QLabel,
    QProgressBar,
    QWidget,
)

from cxr_viewer.gui.state import ViewerState

from .base import StatePanel, add_label

FOLLOW = "Predicted class (auto)"


class PredictionPanel(StatePanel):
    """Shows ``state.prediction``; its class selector sets ``state.target_class``."""

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(state, "PredictionPanel", parent)
        layout = self.box
        self.headline = add_label(layout, "No prediction", "PredictionHeadline")
        self._bars_box = QWidget()
        self._grid = QGridLayout(self._bars_box)
        self._grid.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._bars_box)
        self.bars: dict[str, QProgressBar] = {}
        self.threshold_label = add_label(layout, "", "Dim")
        form = QFormLayout()
        self.class_combo = QComboBox()
        self.class_combo.setToolTip("The class every explanation is computed for")
        self.class_combo.activated.connect(self._class_chosen)
        form.addRow("Explain class", self.class_combo)
        layout.addLayout(form)
        layout.addStretch(1)
        state.events.model.connect(self._rebuild)
        state.events.prediction.connect(self._update_prediction)
        state.events.target_class.connect(self._update_target)
        self._rebuild()

    def _rebuild(self) -> None:
        while self._grid.count():
            w = self._grid.takeAt(0).widget()
            if w is not None:
                w.deleteLater()
        self.bars.clear()
        self.class_combo.clear()
        model = self.state.model
        if model is None:
            self.class_combo.setEnabled(False)
            self._update_prediction()
            return
        self.class_combo.setEnabled(True)
        self.class_combo.addItem(FOLLOW, None)
        for i, name in enumerate(model.class_names):
            label = QLabel(name)
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setTextVisible(True)
            bar.setFormat("–")
            bar.setObjectName("ProbBar")
            self._grid.addWidget(label, i, 0)
            self._grid.addWidget(bar, i, 1)
            self.bars[name] = bar
            self.class_combo.addItem(name, i)
        if model.threshold is not None and model.positive_class:
            self.threshold_label.setText(
                f"Threshold: {model.positive_class} if p ≥ {float(model.threshold):.2f}"
            )
        else:
            self.threshold_label.setText("Decision: the class with the highest probability")
        self._update_prediction()
        self._update_target()

    def _update_prediction(self) -> None:
        pred = self.state.prediction
        model = self.state.model
        if model is None:
            self.headline.setText(
                "No model loaded — predictions and explanations are unavailable. "
                "File ▸ Open model… loads a bundle."
            )
            return
        if pred is None:
            self.headline.setText(
                "Predicting…" if self.state.study is not None else "No study open"
            )
            for bar in self.bars.values():
                bar.setValue(0)
                bar.setFormat("–")
            return
        top = pred.predicted_index
        self.headline.setText(f"Predicted: <b>{pred.predicted_class}</b>")
        self.headline.setTextFormat(Qt.TextFormat.RichText)
        for i, (name, p) in enumerate(zip(pred.class_names, pred.probabilities, strict=True)):
            bar = self.bars.get(name)
            if bar is None:
                continue
            bar.setValue(int(round(float(p) * 1000)))
            bar.setFormat(f"{float(p) * 100:.1f} %")
            bar.setProperty("top", i == top)
            bar.style().unpolish(bar)
            bar.style().polish(bar)

    def _update_target(self) -> None:
        idx = (
            0
            if not self.state.target_pinned
            else self.class_combo.findData(self.state.target_class)
        )
        if idx >= 0:
            self.class_combo.setCurrentIndex(idx)

    def _class_chosen(self, row: int) -> None:
        self.state.set_target_class(self.class_combo.itemData(row))

    def probabilities_text(self) -> dict[str, str]:
        """{class: shown text} (for tests and the report)."""
        return {name: bar.format() for name, bar in self.bars.items()}
