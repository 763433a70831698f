"""Metadata panel (DICOM tags that matter, patient fields hideable) and model panel."""

from __future__ import annotations

import html

from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from cxr_viewer.core.study import Study
from cxr_viewer.gui.state import ViewerState

from .base import StatePanel, add_label

HIDDEN = "(hidden)"


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
        rows.append(("Transfer syntax", study.transfer_syntax))
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
        self.table.setRowCount(len(rows))
        for i, (k, v) in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(k))
            self.table.setItem(i, 1, QTableWidgetItem(v))

    def values(self) -> dict[str, str]:
        return {
            self.table.item(i, 0).text(): self.table.item(i, 1).text()
            for i in range(self.table.rowCount())
        }


class ModelPanel(StatePanel):
    """What model is loaded, what it was trained on, and that it is not for diagnosis."""

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(state, "ModelPanel", parent)
        self.warning = add_label(
            self.box, "Research and demonstration software — not for diagnosis.", "NotForDiagnosis"
        )
        self.text = add_label(self.box, "", "ModelText")
        self.box.addStretch(1)
        state.events.model.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        m = self.state.model
        if m is None:
            status = self.state.model_status
            msg = self.state.model_message or "No model loaded."
            self.text.setText(f"<i>{status}</i>: {msg}" if status != "none" else msg)
            return
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
