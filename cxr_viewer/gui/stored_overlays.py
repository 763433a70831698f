"""Stored explanation maps as overlays of the viewer's Explanations pane.

When a DICOM study is opened (from disk, or what a DIMSE or DICOMweb retrieve wrote), the
Parametric Maps in its folder that reference the image
(:func:`~cxr_viewer.core.interop.dicom_overlays.results_for_image`, whoever wrote them) are listed
in the side panel's "Stored maps" box: each a checkbox labelled as stored (method, model and
date read from the object: nothing is recomputed) with the report's legend as its tooltip, and
its own opacity slider. A checked map is drawn on the Explanations pane (``View ▸ side by side``:
the film next to it), coloured as the viewer colours its own maps
(:mod:`~cxr_viewer.core.explain.overlay`, with the colour map the object names, else the
default) and above them, with the same colour bar as a computed map's legend: its ends the
real-world values of the scale, its caption the meaning and unit the object states
(:func:`stored_legend`); the layout switches to side by side when the pane is not shown. The
same maps are what File ▸ Stored DICOM results… lists. The folder is searched, and the maps
decoded, on the viewer's I/O worker: a slow disk or share never freezes the window, and a
search that ends after another film was opened is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QSlider,
    QStyle,
    QVBoxLayout,
)

from cxr_viewer.core.errors import CxrError

from .imaging import rgba_qimage
from .views import Legend

if TYPE_CHECKING:
    from cxr_viewer.core.explain.base import Heatmap
    from cxr_viewer.core.interop.dicom_overlays import ImageResults
    from cxr_viewer.core.interop.dicom_pm import ExplanationMap

    from .presenter import OverlayPresenter
    from .state import ViewerState
    from .views import ImageView
    from .worker import Task

#: a folder with more files than this is not searched when a study opens (File ▸ Stored DICOM
#: results… still searches it)
MAX_FOLDER_FILES = 400
#: above the computed maps (z 1 + method index) and below the agreement layer (z 50)
STORED_Z = 20.0
DEFAULT_OPACITY = 0.6
#: widest a row of the box may be (the right dock is 350 px wide, less margins and scroll bar)
LABEL_WIDTH = 300


@dataclass
class StoredOverlay:
    """One stored map as drawn: its overlay name in the view, label, legend and switches."""

    name: str
    label: str
    legend: str
    heatmap: Heatmap
    colormap: str  # the viewer's colour map it is drawn with
    scale: float  # |value| drawn at full colour (the viewer's robust_vmax of the values)
    meaning: str  # what a value means, and its unit, as the object states them
    unit: str
    visible: bool = False
    opacity: float = DEFAULT_OPACITY


def stored_colormap(m: ExplanationMap) -> str:
    """The colour map the object names when the viewer has it, else the viewer's default."""
    from cxr_viewer.core.explain.overlay import colormap_lut, default_colormap

    if m.colormap:
        try:
            colormap_lut(m.colormap)
        except ValueError:
            pass
        else:
            return m.colormap
    return default_colormap(m.signed)


def stored_legend(ov: StoredOverlay, presenter: OverlayPresenter) -> Legend:
    """A stored map's legend, as a computed map's: the colour bar of its colour map, the
    real-world values at its ends (with the unit when it has one) and the meaning and unit
    the object states."""
    unit = "" if ov.unit in ("", "no units", "1") else f" {ov.unit}"
    low = f"{-ov.scale:.3g}{unit}" if ov.heatmap.signed else f"0{unit}"
    high = f"{ov.scale:.3g}{unit}"
    caption = f"{ov.meaning} · unit: {ov.unit or 'not stated'}"
    return Legend(ov.label, presenter.strip(ov.heatmap.signed, ov.colormap), low, high, caption)


def folder_files(study_path: Path) -> list[Path]:
    """The DICOM files beside a study (``.dcm`` or no suffix, as retrieves write them)."""
    folder = Path(study_path).parent
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".dcm", ""))


class StoredOverlayPanel(QGroupBox):
    """The "Stored maps" box: the current film's stored Parametric Maps, each switchable."""

    def __init__(
        self,
        state: ViewerState,
        view: ImageView,
        presenter: OverlayPresenter | None = None,
        parent=None,
        *,
        submit: Callable[[Task], Task] | None = None,
    ) -> None:
        super().__init__("Stored maps (from DICOM)", parent)
        self.setObjectName("StoredOverlayPanel")
        self.state, self.view, self.presenter = state, view, presenter
        #: queues the folder scan on a worker thread (the viewer's I/O worker); None: run here
        self.submit = submit
        self.overlays: list[StoredOverlay] = []
        self.boxes: list[QCheckBox] = []
        self.sliders: list[QSlider] = []
        self._layout = QVBoxLayout(self)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setMaximumWidth(LABEL_WIDTH)
        self._layout.addWidget(self.note)
        state.events.study.connect(self.load_for_study)
        self.load_for_study()

    # ------------------------------------------------------------------ finding
    def load_for_study(self) -> None:
        """Find the stored maps of the current film (a DICOM image) in its folder: up to
        :data:`MAX_FOLDER_FILES` headers read and the maps' pixels decoded, on the worker
        thread when there is one (the window does not wait for a slow disk or share)."""
        study = self.state.study
        if study is None or study.format != "dicom":
            self.show_results(None)
            return
        path, rows, cols = Path(study.path), int(study.rows), int(study.columns)

        def scan(progress=None, cancel=None, partial=None) -> tuple[Any, Any]:
            results = self._find(path)
            if results is None or not results.maps:
                return results, []
            return results, results.heatmaps(rows, cols)

        def done(found: tuple[Any, Any]) -> None:
            current = self.state.study
            if current is not None and Path(current.path) == path:  # not a film opened since
                self.show_results(*found)

        def failed(exc: BaseException) -> None:
            current = self.state.study
            if current is None or Path(current.path) != path:
                return
            self._clear()
            self.note.setText(f"Stored maps not read: {exc}")
            self.setVisible(True)

        self._clear()
        self.setVisible(False)
        if self.submit is None:
            try:
                found = scan()
            except (OSError, CxrError, ValueError) as exc:
                failed(exc)
                return
            done(found)
            return
        from .worker import Task

        self.submit(Task(scan, slot="stored-maps", on_done=done, on_error=lambda f: failed(f.exc)))

    def _find(self, path: Path) -> ImageResults | None:
        """The stored results of the film at ``path`` in its folder (None: a derived object
        itself, or a folder too large to search when a study opens)."""
        import pydicom

        from cxr_viewer.core.interop.dicom_overlays import describe_derived, results_for_image

        files = folder_files(path)
        if len(files) > MAX_FOLDER_FILES:
            return None
        header = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        if describe_derived(header) is not None:
            return None
        return results_for_image(files, str(header.get("SOPInstanceUID", "")))

    def show_results(
        self, results: ImageResults | None, heatmaps: list[Heatmap] | None = None
    ) -> None:
        """List ``results``' maps (none: the box hides), drawn from ``heatmaps`` (decoded at
        the film's size; None: decoded here); all start switched off."""
        self._clear()
        study = self.state.study
        if results is None or not results.maps or study is None:
            self.setVisible(False)
            return
        from cxr_viewer.core.explain.overlay import robust_vmax

        if heatmaps is None:
            heatmaps = results.heatmaps(study.rows, study.columns)
        for i, (m, hm) in enumerate(zip(results.maps, heatmaps, strict=True)):
            ov = StoredOverlay(
                f"stored:{m.sop_instance_uid}",
                results.label(m),
                results.legend(m),
                hm,
                colormap=stored_colormap(m),
                scale=robust_vmax(hm.values),
                meaning=m.meaning or m.label,
                unit=m.unit,
            )
            self._add_row(i, ov)
        self.note.setText(
            f"{len(self.overlays)} map(s) stored with this film, read back, not recomputed; "
            "drawn on the Explanations pane"
        )
        self.setVisible(True)

    def _clear(self) -> None:
        for ov in self.overlays:
            self.view.set_overlay(ov.name, None)
        for w in [*self.boxes, *self.sliders]:
            w.setParent(None)
            w.deleteLater()
        self.overlays, self.boxes, self.sliders = [], [], []
        self.note.setText("")
        self._caption()

    def _caption(self) -> None:
        """The composite view's caption names the stored maps drawn (the presenter writes it)."""
        if self.presenter is None:
            return
        shown = [ov for ov in self.overlays if ov.visible]
        self.presenter.stored_captions = [
            f"{ov.label} (opacity {round(ov.opacity * 100)} %)" for ov in shown
        ]
        self.presenter.stored_legends = [stored_legend(ov, self.presenter) for ov in shown]
        self.presenter.annotate()

    def _add_row(self, index: int, ov: StoredOverlay) -> None:
        from cxr_viewer.core.explain.overlay import colorize

        hm = ov.heatmap
        rgba = colorize(hm.values, signed=hm.signed, colormap=ov.colormap, vmax=ov.scale)
        self.view.set_overlay(ov.name, QPixmap.fromImage(rgba_qimage(rgba)), z=STORED_Z + index)
        self.view.set_overlay_opacity(ov.name, ov.opacity)
        self.view.set_overlay_visible(ov.name, False)
        box = QCheckBox()
        # the right dock has a fixed width and a check box does not wrap: a long label (model
        # name, date) is shortened at its end, whole in the tooltip and the pane's caption
        style = box.style()
        room = LABEL_WIDTH - 12 - style.pixelMetric(QStyle.PixelMetric.PM_IndicatorWidth)
        room -= style.pixelMetric(QStyle.PixelMetric.PM_CheckBoxLabelSpacing)
        box.setText(box.fontMetrics().elidedText(ov.label, Qt.TextElideMode.ElideRight, room))
        box.setToolTip(f"{ov.label}\n{ov.legend}")
        box.toggled.connect(lambda on, i=index: self.set_visible(i, on))
        slider = QSlider(Qt.Orientation.Horizontal)
        slider.setRange(0, 100)
        slider.setValue(round(ov.opacity * 100))
        slider.setToolTip("Opacity of this stored map")
        slider.valueChanged.connect(lambda v, i=index: self.set_opacity(i, v / 100.0))
        row = QHBoxLayout()
        row.addWidget(QLabel("opacity"))
        row.addWidget(slider, 1)
        self._layout.addWidget(box)
        self._layout.addLayout(row)
        self.overlays.append(ov)
        self.boxes.append(box)
        self.sliders.append(slider)

    # ------------------------------------------------------------------ switching
    def set_visible(self, index: int, visible: bool) -> None:
        ov = self.overlays[index]
        ov.visible = bool(visible)
        self.view.set_overlay_visible(ov.name, ov.visible)
        if ov.visible and self.state.layout == "grid":
            self.state.set_layout("side")  # the Explanations pane, next to the film
        if self.boxes[index].isChecked() != ov.visible:
            self.boxes[index].setChecked(ov.visible)
        self._caption()

    def set_opacity(self, index: int, opacity: float) -> None:
        ov = self.overlays[index]
        ov.opacity = min(1.0, max(0.0, float(opacity)))
        self.view.set_overlay_opacity(ov.name, ov.opacity)
        self._caption()
