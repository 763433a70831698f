"""Metadata panel (DICOM tags that matter, patient fields hideable) and model panel."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QProgressBar,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QWidget,
)

from cxr_viewer.core.io.study import Study
from cxr_viewer.gui.state import ViewerState

from .base import StatePanel, add_label

HIDDEN = "(hidden)"


def transfer_syntax_name(uid: str) -> str:
    """A transfer syntax's name ("JPEG 2000 Image Compression (Lossless Only)"), else its UID."""
    try:
        from pydicom.uid import UID

        name = UID(str(uid)).name
    except Exception:  # noqa: BLE001 - a malformed UID is shown as it is
        return str(uid)
    return name if name and name != str(uid) else str(uid)


def study_rows(study: Study, hide_patient: bool) -> list[tuple[str, str]]:
    """(name, value) rows for the metadata table, patient fields masked when ``hide_patient``."""
    rows: list[tuple[str, str]] = [
        ("File", study.path.name),
        ("Format", study.format.upper()),
        ("Size", f"{study.columns} × {study.rows} px"),
        ("Photometric", study.photometric),
        ("Bits stored", str(study.bits_stored)),
    ]
    if study.n_frames > 1:
        rows.append(("Frame", f"{study.frame + 1} of {study.n_frames}"))
    if study.pixel_spacing:
        rows.append(
            ("Pixel spacing", f"{study.pixel_spacing[0]:.3g} × {study.pixel_spacing[1]:.3g} mm")
        )
    if study.transfer_syntax:
        rows.append(("Transfer syntax", transfer_syntax_name(study.transfer_syntax)))
    for w in study.windows:
        rows.append((f"Window {w.name or ''}".strip(), f"C {w.center:g} / W {w.width:g}"))
    for key, value in study.metadata.items():
        if key in Study.PATIENT_KEYS and hide_patient:
            value = HIDDEN
        rows.append((key, str(value)))
    return rows


class MetadataPanel(StatePanel):
    """A two-column table of the current study's metadata."""

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(state, "MetadataPanel", parent, margin=0)
        self.privacy = QLabel("Patient data hidden (H shows it)")
        self.privacy.setObjectName("PrivacyBadge")
        self.privacy.setToolTip(
            "Patient name, ID, birth date and sex are masked here, in the window title and in "
            "exports. View ▸ Hide patient fields (H) switches this off."
        )
        self.box.addWidget(self.privacy)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Tag", "Value"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(
            0, QHeaderView.ResizeMode.ResizeToContents
        )
        self.table.horizontalHeader().setStretchLastSection(True)
        self.box.addWidget(self.table)
        state.events.study.connect(self.refresh)
        state.events.privacy.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        study = self.state.study
        rows = study_rows(study, self.state.hide_patient) if study is not None else []
        self.privacy.setVisible(self.state.hide_patient)
        self.table.setRowCount(len(rows))
        for i, (k, v) in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(k))
            item = QTableWidgetItem(v)
            tip = study.transfer_syntax if study is not None and k == "Transfer syntax" else v
            item.setToolTip(tip or "")
            self.table.setItem(i, 1, item)

    def values(self) -> dict[str, str]:
        def text(row: int, column: int) -> str:
            item = self.table.item(row, column)
            return item.text() if item is not None else ""

        return {text(i, 0): text(i, 1) for i in range(self.table.rowCount())}


class ModelPanel(StatePanel):
    """What model is loaded, what it was trained on, and that it is not for diagnosis."""

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(state, "ModelPanel", parent)
        self.warning = add_label(
            self.box, "Research and demonstration software — not for diagnosis.", "NotForDiagnosis"
        )
        self.headline = add_label(self.box, "", "ModelHeadline")
        self.progress = QProgressBar()
        self.progress.setObjectName("ModelProgress")
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(8)
        self.box.addWidget(self.progress)
        self.text = add_label(self.box, "", "ModelText")
        # the rest of the model card folds away, so the dock does not need scrolling
        self.more = QToolButton()
        self.more.setObjectName("SectionToggle")
        self.more.setCheckable(True)
        self.more.setAutoRaise(True)
        self.more.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.more.setText("Model card")
        self.more.setToolTip("Show or fold away the model card: data, limits, figures")
        self.more.toggled.connect(self._show_details)
        self.box.addWidget(self.more)
        self.details = add_label(self.box, "", "ModelDetails")
        self._show_details(False)
        self.box.addStretch(1)
        state.events.model.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        m = self.state.model
        status = self.state.model_status
        loading = m is None and status in ("loading", "warming up")
        self.progress.setVisible(loading)
        self.headline.setVisible(m is None)
        self.more.setVisible(m is not None)
        self.details.setVisible(m is not None and self.more.isChecked())
        if m is None:
            if loading:
                self.headline.setText(
                    "Loading model…" if status == "loading" else "Warming up the model…"
                )
                self.progress.setValue(int(round(self.state.model_progress * 1000)))
                self.text.setText(
                    (self.state.model_message or "")
                    + "<br>Predictions and explanations follow as soon as it is ready."
                )
            elif status == "failed":
                self.headline.setText("The model could not be loaded")
                self.text.setText(
                    f"{self.state.model_message}<br>File ▸ Model ▸ Open model… loads another bundle."
                )
            else:
                self.headline.setText("No model loaded")
                self.text.setText(
                    self.state.model_message
                    if self.state.model_message not in ("", "No model loaded")
                    else "File ▸ Model ▸ Open model… loads a bundle."
                )
            return
        self.headline.setText("")
        use = m.intended_use
        self.warning.setText(
            f"Intended use: {use}." if "diagnos" in use.lower() else f"{use} — not for diagnosis."
        )
        title = f"<b>{html.escape(m.name)}</b>" + (
            f" — version {html.escape(m.version)}" if m.version else ""
        )
        card = [html.escape(line) for line in m.card]
        if card:  # the headline figure first, in bold
            card[0] = f"<b>{card[0]}</b>"
        lines = [title, *card, f"Runs on: {html.escape(m.device)}"]
        self.text.setText("<br>".join(lines))
        details = [
            *m.card_details,
            f"Classes: {', '.join(m.class_names)}",
            f"Training data: {m.data_summary}",
        ]
        self.text.setToolTip("<br>".join(html.escape(d) for d in details))
        # the rest of the card: in the tooltip, and unfolded under "Model card"
        self.details.setText("<br>".join(html.escape(d) for d in details))

    def _show_details(self, on: bool) -> None:
        self.more.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.details.setVisible(on and self.state.model is not None)

    def shown_text(self) -> str:
        """Headline and text as shown (for tests)."""
        return f"{self.headline.text()}\n{self.text.text()}\n{self.details.text()}"
