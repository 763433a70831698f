"""Prediction panel: the decision rule in words, a bar per class or finding with its threshold
drawn on it, a "near threshold" flag, the model card's test AUC and training population, and
the class (or finding) every explanation is computed for.

Softmax and binary heads show one bar per class in the bundle's order; the headline states the
rule ("PNEUMONIA — p 0.91 ≥ threshold 0.62"). A multi-label head shows its findings sorted by
probability, those at or above their own threshold marked; clicking a finding explains it.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGridLayout,
    QLabel,
    QProgressBar,
    QWidget,
)

from cxr_viewer.core.model.heads import head_kind
from cxr_viewer.core.model.inference import Prediction
from cxr_viewer.gui.state import ViewerState

from .base import StatePanel, add_label

FOLLOW = "Predicted class (auto)"
FOLLOW_FINDING = "Top finding (auto)"
ABOVE, BELOW = "●", "○"
THRESHOLD_COLOR = QColor(240, 195, 109)


class ThresholdBar(QProgressBar):
    """A probability bar (0–1000) with its decision threshold drawn as a vertical line."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setRange(0, 1000)
        self.setTextVisible(True)
        self.setFormat("–")
        self.setObjectName("ProbBar")
        self.threshold: float | None = None

    def set_threshold(self, threshold: float | None) -> None:
        self.threshold = None if threshold is None else float(threshold)
        self.setToolTip(
            "" if threshold is None else f"The line marks the decision threshold {threshold:.2f}"
        )
        self.update()

    def threshold_x(self) -> float | None:
        """The threshold line's x in widget pixels (None without a threshold)."""
        if self.threshold is None:
            return None
        r = self.rect().adjusted(1, 1, -1, -1)
        return r.left() + self.threshold * r.width()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().paintEvent(event)
        x = self.threshold_x()
        if x is None:
            return
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(QColor(0, 0, 0, 160), 4))
        painter.drawLine(QPointF(x, 1), QPointF(x, self.height() - 1))
        painter.setPen(QPen(THRESHOLD_COLOR, 2))
        painter.drawLine(QPointF(x, 1), QPointF(x, self.height() - 1))
        painter.end()


class FindingRow(QWidget):
    """One class or finding: above-threshold mark, name, probability bar. Click to explain."""

    clicked = Signal(int)

    def __init__(self, index: int, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.index, self.name = index, name
        self.setObjectName("FindingRow")
        self.marker = QLabel("")
        self.marker.setFixedWidth(14)
        self.label = QLabel(name)
        self.label.setMinimumWidth(60)
        self.bar = ThresholdBar()
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(self.marker, 0, 0)
        grid.addWidget(self.label, 0, 1)
        grid.addWidget(self.bar, 0, 2)
        grid.setColumnStretch(2, 1)
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.clicked.emit(self.index)
        super().mousePressEvent(event)


class PredictionPanel(StatePanel):
    """Shows ``state.prediction``; its selector (and a click on a finding) sets the target."""

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(state, "PredictionPanel", parent)
        layout = self.box
        self.headline = add_label(layout, "No prediction", "PredictionHeadline")
        self.headline.setTextFormat(Qt.TextFormat.PlainText)
        self.headline.setStyleSheet("font-weight: bold;")
        self.near_flag = add_label(layout, "", "NearThreshold")
        self.near_flag.setStyleSheet(
            "color: #f0c36d; border: 1px solid #5a4a25; border-radius: 3px; padding: 2px;"
        )
        self.near_flag.setVisible(False)
        self._bars_box = QWidget()
        self._rows_layout = QGridLayout(self._bars_box)
        self._rows_layout.setContentsMargins(0, 0, 0, 0)
        self._rows_layout.setVerticalSpacing(2)
        layout.addWidget(self._bars_box)
        self.rows: list[FindingRow] = []
        self.bars: dict[str, ThresholdBar] = {}
        self.threshold_label = add_label(layout, "", "Dim")
        self.card_label = add_label(layout, "", "Dim")
        form = QFormLayout()
        self.class_combo = QComboBox()
        self.class_combo.setToolTip("The class every explanation is computed for")
        self.class_combo.activated.connect(self._class_chosen)
        self.combo_label = QLabel("Explain class")
        form.addRow(self.combo_label, self.class_combo)
        layout.addLayout(form)
        layout.addStretch(1)
        state.events.model.connect(self._rebuild)
        state.events.prediction.connect(self._update_prediction)
        state.events.target_class.connect(self._update_target)
        self._rebuild()

    # -- model ---------------------------------------------------------------------------
    @property
    def multilabel(self) -> bool:
        m = self.state.model
        return m is not None and head_kind(m.kind).findings

    def _rebuild(self) -> None:
        for row in self.rows:
            self._rows_layout.removeWidget(row)
            row.deleteLater()
        self.rows.clear()
        self.bars.clear()
        self.class_combo.clear()
        model = self.state.model
        if model is None:
            self.class_combo.setEnabled(False)
            self.threshold_label.setText("")
            self.card_label.setText("")
            self._update_prediction()
            return
        self.class_combo.setEnabled(True)
        what = "finding" if self.multilabel else "class"
        self.combo_label.setText(f"Explain {what}")
        self.class_combo.setToolTip(f"The {what} every explanation is computed for")
        self.class_combo.addItem(FOLLOW_FINDING if self.multilabel else FOLLOW, None)
        for i, name in enumerate(model.class_names):
            row = FindingRow(i, name)
            row.clicked.connect(self._row_clicked)
            row.setToolTip(f"Click to explain {name}")
            self.rows.append(row)
            self.bars[name] = row.bar
            row.bar.set_threshold(self._threshold_of(i))
            self.class_combo.addItem(name, i)
        self._place_rows(list(range(len(self.rows))))
        self.threshold_label.setText(self._rule_legend())
        self.card_label.setText(self._card_text())
        self._update_prediction()
        self._update_target()

    def _rule(self) -> Prediction:
        """The model's decision rule (its head kind's, core.heads) as a Prediction of zeros."""
        m = self.state.model
        assert m is not None
        names = tuple(m.class_names)
        thresholds = None
        if head_kind(m.kind).findings:
            thresholds = tuple(float(m.thresholds.get(c, 0.5)) for c in names)
        return Prediction(
            np.zeros(len(names), np.float32),
            names,
            threshold=m.threshold,
            positive_class=m.positive_class,
            kind=m.kind,
            thresholds=thresholds,
        )

    def _threshold_of(self, index: int) -> float | None:
        return self._rule().threshold_of(index)

    def _rule_legend(self) -> str:
        m = self.state.model
        assert m is not None
        rule = self._rule()
        if rule.findings:
            return (
                "Each finding is judged on its own: ● at or above its threshold (the line on "
                "its bar), ○ below. Click a finding to explain it."
            )
        index = rule.positive_index
        t = rule.threshold_of(index) if index is not None else None
        if t is not None and index is not None:
            pos = m.class_names[index]
            return f"Decision: {pos} if p({pos}) ≥ {t:.2f} (the line on its bar)."
        return "Decision: the class with the highest probability."

    def _card_text(self) -> str:
        m = self.state.model
        assert m is not None
        card = m.card_figures or {}
        parts = []
        if isinstance(card.get("test_auc"), float):
            parts.append(f"Test AUC {card['test_auc']:.2f}")
        elif card.get("finding_auc"):
            aucs = list(card["finding_auc"].values())
            parts.append(f"Test AUC {min(aucs):.2f}–{max(aucs):.2f} across findings")
        if card.get("population"):
            parts.append(f"trained on {card['population']}")
        if not parts:
            return "No test figures or training population in this bundle."
        return " · ".join(parts)

    def _place_rows(self, order: list[int]) -> None:
        for row in self.rows:
            self._rows_layout.removeWidget(row)
        for pos, i in enumerate(order):
            self._rows_layout.addWidget(self.rows[i], pos, 0)

    # -- prediction ----------------------------------------------------------------------
    def _update_prediction(self) -> None:
        pred = self.state.prediction
        model = self.state.model
        self.near_flag.setVisible(False)
        if model is None:
            if self.state.model_status in ("loading", "warming up"):
                self.headline.setText(
                    f"Loading the model… ({round(self.state.model_progress * 100)} %) — the "
                    "prediction appears when it is ready."
                )
            elif self.state.model_status == "failed":
                self.headline.setText(
                    "The model could not be loaded — no predictions. "
                    "File ▸ Model ▸ Open model… tries another bundle."
                )
            else:
                # the model panel above says "No model loaded" and how to load one
                self.headline.setText("No prediction: predictions and explanations need a model.")
            return
        if pred is None:
            self.headline.setText(
                "Predicting…" if self.state.study is not None else "No study open"
            )
            for row in self.rows:
                row.bar.setValue(0)
                row.bar.setFormat("–")
                row.marker.setText("")
            return
        self.headline.setText(self.headline_text(pred))
        self.headline.setToolTip(pred.rule_text())
        order = pred.order() if pred.findings else list(range(len(self.rows)))
        self._place_rows(order)
        top = pred.predicted_index
        finding_auc = (model.card_figures or {}).get("finding_auc", {})
        for i, row in enumerate(self.rows):
            p = float(pred.probabilities[i])
            row.bar.setValue(int(round(p * 1000)))
            row.bar.setFormat(f"{p * 100:.1f} %")
            above = pred.above(i)
            if pred.findings:
                row.marker.setText(ABOVE if above else BELOW)
                marked = above
            else:
                row.marker.setText(ABOVE if i == top else "")
                marked = i == top
            row.bar.setProperty("top", marked)
            font = row.label.font()
            font.setBold(marked)
            row.label.setFont(font)
            tip = pred.rule_text(i)
            if row.name in finding_auc:
                tip += f" · test AUC {finding_auc[row.name]:.2f}"
            row.setToolTip(tip + f"\nClick to explain {row.name}")
            row.bar.style().unpolish(row.bar)
            row.bar.style().polish(row.bar)
        self._update_near(pred)

    def headline_text(self, pred) -> str:
        """The headline: the rule (binary / softmax) or the count above threshold."""
        return pred.headline()

    def _update_near(self, pred) -> None:
        near = [i for i in range(len(pred.class_names)) if pred.near_threshold(i)]
        if not near:
            return
        band = pred.near_band
        items = ", ".join(
            f"{pred.class_names[i]} p {pred.probabilities[i]:.2f} vs {pred.threshold_of(i):.2f}"
            for i in near
        )
        self.near_flag.setText(
            f"⚠ Near threshold (within ±{band:.2f}): {items} — a small change could flip it."
        )
        self.near_flag.setVisible(True)

    # -- target --------------------------------------------------------------------------
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

    def _row_clicked(self, index: int) -> None:
        self.state.set_target_class(index)

    # -- for tests and the report -------------------------------------------------------
    def probabilities_text(self) -> dict[str, str]:
        """{class: shown text}."""
        return {name: bar.format() for name, bar in self.bars.items()}

    def shown_order(self) -> list[str]:
        """Class / finding names from top to bottom as laid out."""
        rows = []
        for i in range(self._rows_layout.count()):
            item = self._rows_layout.itemAt(i)
            w = item.widget() if item is not None else None
            if isinstance(w, FindingRow):
                # PySide6's stub says object; it returns (row, column, row span, column span)
                pos = self._rows_layout.getItemPosition(i)[0]  # type: ignore[index]
                rows.append((pos, w.name))
        return [name for _, name in sorted(rows)]

    def marked(self) -> list[str]:
        """Names marked as above threshold (multilabel) or predicted."""
        return [row.name for row in self.rows if row.marker.text() == ABOVE]
