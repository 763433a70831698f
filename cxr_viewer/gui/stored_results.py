"""File ▸ Stored DICOM results…: the Parametric Maps and Segmentations stored beside the
current image, shown as toggleable overlays with their legend and trust figures.

The DICOM files of the image's folder (a study from disk, or what a DIMSE or DICOMweb retrieve
wrote) are searched for objects that reference the image
(:func:`~cxr_viewer.core.interop.dicom_overlays.results_for_image`), whoever wrote them. Each map is a
checkbox; the picture is the displayed film with the checked maps drawn as the viewer draws its
own (:mod:`~cxr_viewer.core.explain.overlay`) and the checked regions outlined. A Parametric Map or
Segmentation opened on its own says which image it belongs to. The same maps are offered as
overlays of the main window's Explanations pane (:mod:`.stored_overlays`). From the File menu
the folder is searched on the network worker: the dialog shows at once ("Searching…") and
fills in when the search is done; closing it drops the search.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from cxr_viewer.core.errors import CxrError

from .stored_overlays import folder_files

if TYPE_CHECKING:
    from cxr_viewer.core.interop.dicom_overlays import ImageResults
    from cxr_viewer.core.io.study import Study

    from .network import Network
    from .worker import Task

PICTURE_SIDE = 512


def _scan(study: Study) -> ImageResults | str:
    """The stored results beside ``study`` in its folder, or why there are none to search for
    (not a DICOM image; a result itself; an unreadable header or folder)."""
    import pydicom

    from cxr_viewer.core.interop.dicom_overlays import describe_derived, results_for_image

    if study.format != "dicom":
        return "Stored DICOM results reference DICOM images; this is not one."
    try:
        header = pydicom.dcmread(study.path, stop_before_pixels=True, force=True)
        derived = describe_derived(header)
    except (OSError, CxrError, ValueError) as exc:
        return f"Cannot read the file's header: {exc}"
    if derived is not None:
        return (
            f"This file is a result, not an image: a {derived}. Open that image (its study) "
            "to see this result over it."
        )
    try:
        files = folder_files(Path(study.path))
    except OSError as exc:
        return f"Cannot list the film's folder: {exc}"
    return results_for_image(files, str(header.get("SOPInstanceUID", "")))


class StoredResultsDialog(QDialog):
    """The stored maps and regions of one image, as overlays one can switch on and off."""

    def __init__(
        self, study: Study, parent: QWidget | None = None, *, network: Network | None = None
    ) -> None:
        """``network``: search the folder on its worker (the window does not wait for a
        large folder or a slow share); None: search here, before the dialog shows."""
        super().__init__(parent)
        self.setWindowTitle("Stored DICOM results")
        self.study = study
        self.results: ImageResults | None = None
        self.map_boxes: list[QCheckBox] = []
        self.region_boxes: list[QCheckBox] = []
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.picture = QLabel()
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.checks = QVBoxLayout()
        side = QWidget()
        side.setLayout(self.checks)
        scroll = QScrollArea()
        scroll.setWidget(side)
        scroll.setWidgetResizable(True)
        row = QHBoxLayout()
        row.addWidget(self.picture, 2)
        row.addWidget(scroll, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addLayout(row)
        layout.addWidget(buttons)
        self.task: Task | None = None
        self.network = network
        if network is None:
            self._found(_scan(study))
            return
        self.summary.setText("Searching this film's folder for stored results…")
        self.task = network.submit(
            "stored-results",
            lambda progress, cancel, partial: _scan(study),
            on_done=self._found,
            on_error=lambda f: self._found(f"Cannot search the film's folder: {f.exc}"),
        )
        self.finished.connect(self._abandon)

    def _abandon(self) -> None:
        if self.task is not None and self.network is not None:
            self.network.abandon(self.task)  # closed: the search's callbacks are dropped

    # ------------------------------------------------------------------ finding
    def _found(self, found: ImageResults | str) -> None:
        """Show what :func:`_scan` found: the results, or why there are none."""
        if isinstance(found, str):
            self.summary.setText(found)
            return
        self.results = found
        lines = []
        if found.empty:
            lines.append("No Parametric Map or Segmentation in this folder references this image.")
        for report in found.reports:
            model = f"{report.algorithm_name} {report.algorithm_version}".strip()
            probs = ", ".join(f"p({k}) {v:.3f}" for k, v in report.probabilities.items())
            lines.append(
                f"Report by {model or 'an unnamed model'}: {probs}; "
                f"finding: {', '.join(report.findings) or 'none'}"
            )
        for name, why in found.problems:
            lines.append(f"Not read: {name} ({why})")
        self.summary.setText("\n".join(lines))
        for i, m in enumerate(found.maps):
            box = QCheckBox(found.legend(m))
            box.setChecked(i == 0)
            box.toggled.connect(self._redraw)
            self.map_boxes.append(box)
            self.checks.addWidget(box)
        for r in found.regions:
            box = QCheckBox(f"region: {r.label}")
            box.toggled.connect(self._redraw)
            self.region_boxes.append(box)
            self.checks.addWidget(box)
        self.checks.addStretch(1)
        self._redraw()

    # ------------------------------------------------------------------ drawing
    def composite(self) -> np.ndarray:
        """(rows, columns, 3) uint8: the film with the checked maps and regions."""
        from cxr_viewer.core.explain.overlay import colorize, composite, robust_vmax
        from cxr_viewer.core.io.display import display_image

        film = display_image(self.study)
        layers = []
        found = self.results
        if found is not None:
            heatmaps = found.heatmaps(self.study.rows, self.study.columns)
            for box, hm in zip(self.map_boxes, heatmaps, strict=True):
                if box.isChecked():
                    rgba = colorize(hm.values, signed=hm.signed, vmax=robust_vmax(hm.values))
                    layers.append((rgba, 0.5))
        rgb = composite(film, layers)
        if found is not None:
            import cv2

            for box, region in zip(self.region_boxes, found.regions, strict=True):
                if box.isChecked() and region.mask.shape == rgb.shape[:2]:
                    contours, _ = cv2.findContours(
                        region.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
                    )
                    rgb = np.ascontiguousarray(rgb)
                    cv2.drawContours(rgb, contours, -1, (0, 255, 0), max(1, rgb.shape[0] // 256))
        return np.ascontiguousarray(rgb)

    def _redraw(self) -> None:
        rgb = self.composite()
        h, w = rgb.shape[:2]
        image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        pixmap = QPixmap.fromImage(image).scaled(
            PICTURE_SIDE,
            PICTURE_SIDE,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
        self.picture.setPixmap(pixmap)
