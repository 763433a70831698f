"""The main window: two linked views in the middle, studies left, model/prediction/overlays right.

The window assembles parts and forwards user intent; it owns no viewer state (that is
:class:`~cxr_viewer.gui.state.ViewerState`) and does no work (that is the controller's workers).
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from cxr_viewer.core.paths import demo_bundle_dir

from .actions import OVERLAY_KEYS, Actions
from .controller import Controller
from .error_dialog import ErrorReporter
from .panels.info import MetadataPanel, ModelPanel
from .panels.overlays import OverlayPanel
from .panels.prediction import PredictionPanel
from .panels.studies import StudyList
from .presenter import DisplayPresenter, OverlayPresenter
from .report import LayerSnapshot, Snapshot, save_pdf, save_png
from .settings import Settings
from .state import METHOD_LABELS, ViewerState
from .status import StatusArea
from .views import ImageView, ViewLink

log = logging.getLogger(__name__)

IMAGE_FILTER = "Images (*.dcm *.dicom *.DCM *.png *.jpg *.jpeg *.PNG *.JPG *.JPEG);;All files (*)"


class MainWindow(QMainWindow):
    """CXR Lens' window."""

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__()
        self.setObjectName("MainWindow")
        self.setWindowTitle("CXR Lens — not for diagnosis")
        self.setAcceptDrops(True)
        self.settings = settings or Settings()
        self.state = ViewerState()
        self.reporter = ErrorReporter(self)
        self.controller = Controller(self.state, self.reporter, self)

        # --- views
        self.original_view = ImageView("Original")
        self.overlay_view = ImageView("Explanations")
        self.views = [self.original_view, self.overlay_view]
        self.link = ViewLink(*self.views)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.original_view)
        self.splitter.addWidget(self.overlay_view)
        self.setCentralWidget(self.splitter)
        self.display = DisplayPresenter(self.state, self.controller, self.views)
        self.overlays = OverlayPresenter(self.state, self.overlay_view)

        # --- panels
        self.study_list = StudyList(self.state)
        self.model_panel = ModelPanel(self.state)
        self.prediction_panel = PredictionPanel(self.state)
        self.overlay_panel = OverlayPanel(self.state)
        self.metadata_panel = MetadataPanel(self.state)
        self.status = StatusArea(self.state, settings=self.settings)
        self.setStatusBar(self.status)
        self.actions_ = Actions(self)
        self._docks()

        # --- wiring
        self.study_list.openRequested.connect(self.controller.open_index)
        self.controller.thumbnailReady.connect(self.study_list.set_thumbnail)
        self.controller.loadFailed.connect(self.study_list.mark_unreadable)
        self.controller.message.connect(self.status.show_message)
        self.controller.busy.connect(self.status.on_busy)
        self.status.cancelRequested.connect(self.controller.cancel_explanations)
        for v in self.views:
            v.filesDropped.connect(self.open_paths)
            v.hovered.connect(self.status.show_pixel)
        self.state.events.layout.connect(self._apply_layout)
        self.state.events.study.connect(self._study_changed)
        self.state.events.overlay.connect(self._overlay_caption)

        self.settings.restore_state(self.state)
        self.actions_.rebuild_recent(self.settings.recent_files())
        self.actions_.rebuild_presets()
        geometry, window_state = self.settings.geometry()
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1500, 900)
        if window_state is not None:
            self.restoreState(window_state)
        self._apply_layout()
        self._overlay_caption()

    # ------------------------------------------------------------------ layout
    def _docks(self) -> None:
        self.setDockNestingEnabled(True)
        left = QDockWidget("Studies", self)
        left.setObjectName("StudiesDock")
        left.setWidget(self.study_list)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, left)
        right_box = QWidget()
        lay = QVBoxLayout(right_box)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.model_panel)
        lay.addWidget(self.prediction_panel)
        lay.addWidget(self.overlay_panel)
        lay.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(right_box)
        scroll.setMinimumWidth(330)
        right = QDockWidget("Model · prediction · explanations", self)
        right.setObjectName("ExplainDock")
        right.setWidget(scroll)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, right)
        meta = QDockWidget("Metadata", self)
        meta.setObjectName("MetadataDock")
        meta.setWidget(self.metadata_panel)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, meta)
        self.splitDockWidget(left, meta, Qt.Orientation.Vertical)
        self.resizeDocks([left, meta], [520, 300], Qt.Orientation.Vertical)
        self.resizeDocks([left, right], [270, 350], Qt.Orientation.Horizontal)
        for d in (left, right, meta):
            self.actions_.panels_menu.addAction(d.toggleViewAction())

    def _apply_layout(self) -> None:
        self.original_view.setVisible(not self.state.single_view)
        if not self.state.single_view:
            QTimer.singleShot(0, lambda: self.original_view.copy_view_from(self.overlay_view))

    def _overlay_caption(self, _method: str = "", what: str = "visible") -> None:
        if what not in ("visible", "opacity"):
            return
        shown = [
            f"{METHOD_LABELS[m]} {int(ov.opacity * 100)} %"
            for m, ov in self.state.overlays.items()
            if ov.visible
        ]
        caption = "Explanations: " + (", ".join(shown) if shown else "none")
        if caption != self.overlay_view.caption:
            self.overlay_view.caption = caption
            self.overlay_view.viewport().update()

    def _study_changed(self) -> None:
        s = self.state.study
        name = s.path.name if s is not None else ""
        if s is not None and self.state.hide_patient:
            name = "study"
        self.setWindowTitle(f"CXR Lens — {name} — not for diagnosis" if name else "CXR Lens")

    # ------------------------------------------------------------------ opening
    def open_paths(self, paths: list[str]) -> None:
        if not paths:
            return
        for p in paths:
            recent = self.settings.add_recent(p)
        self.actions_.rebuild_recent(recent)
        self.settings.last_dir = str(Path(paths[0]).resolve().parent)
        self.controller.open_paths(paths)

    def open_file_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(
            self, "Open images", self.settings.last_dir, IMAGE_FILTER
        )
        self.open_paths(files)

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Open a folder of images", self.settings.last_dir
        )
        if folder:
            self.open_paths([folder])

    def open_model_dialog(self) -> None:
        """Open a bundle, or a bare .keras/.h5 model (imported first, once)."""
        start = str(demo_bundle_dir().parent)
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Open a model (bundle metadata.json or .zip, or a Keras .keras/.h5 file)",
            start,
            "Models (metadata.json *.zip *.keras *.h5);;All files (*)",
        )
        if path:
            self.open_model_path(Path(path))

    def open_model_path(self, p: Path) -> None:
        """Load a bundle; a bare model goes through the import dialog unless already imported."""
        if p.suffix.lower() in (".keras", ".h5"):
            known = self.settings.imported_bundle(p)
            if known is not None:
                self.status.show_message(
                    f"Using the bundle imported earlier from {p.name}: {known}"
                )
                self.load_model(known)
            else:
                self.start_import(p)
            return
        self.load_model(p.parent if p.name == "metadata.json" else p)

    def import_model_dialog(self) -> None:
        """Choose a bare .keras/.h5 model, describe it, wrap it into a bundle, load that."""
        path, _ = QFileDialog.getOpenFileName(
            self, "Import a Keras model", self.settings.last_dir, "Keras models (*.keras *.h5)"
        )
        if path:
            self.start_import(Path(path))

    def start_import(self, path: Path):
        """Walk the user through importing ``path``; the bundle is remembered and loaded."""
        from .import_dialog import ImportDialog

        dialog = ImportDialog(path, self, worker=self.controller.model_worker)
        dialog.imported.connect(self._on_imported)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        dialog.open()
        return dialog

    def _on_imported(self, bundle_path) -> None:
        dialog = self.sender()
        source = getattr(dialog, "model_path", None)
        if source is not None:
            self.settings.remember_import(source, bundle_path)
        self.load_model(bundle_path)

    def load_model(self, path: str | Path) -> None:
        self.controller.load_model(path)

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt API
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        self.open_paths(paths)

    # ------------------------------------------------------------------ view
    def fit_views(self) -> None:
        self.overlay_view.fit()
        self.original_view.fit()

    def actual_size(self) -> None:
        self._active_view().actual_size()

    def zoom(self, factor: float) -> None:
        self._active_view().zoom_by(factor)

    def _active_view(self) -> ImageView:
        return self.overlay_view if self.state.single_view else self.original_view

    def reset_view(self) -> None:
        self.state.reset_display()
        self.fit_views()

    # ------------------------------------------------------------------ export
    def snapshot(self) -> Snapshot:
        st, m = self.state, self.state.model
        if st.study is None:
            raise_no_study()
        layers = []
        for method, ov in st.overlays.items():
            r = ov.heatmap
            if r is None or r.partial:
                continue
            hm = r.heatmap
            layers.append(
                LayerSnapshot(
                    method,
                    ov.label,
                    ov.signed,
                    ov.colormap,
                    ov.opacity,
                    ov.visible,
                    hm.values,
                    r.vmax,
                    hm.layer,
                    dict(hm.settings),
                    float(hm.runtime_s),
                    dict(hm.trust),
                )
            )
        pred = st.prediction
        names = list(m.class_names) if m else []
        return Snapshot(
            study=st.study,
            window=st.window,
            invert=st.effective_invert,
            layers=layers,
            class_names=names,
            probabilities=[float(p) for p in pred.probabilities] if pred is not None else None,
            predicted=pred.predicted_class if pred is not None else None,
            target_class=names[st.target_class] if st.target_class is not None and names else None,
            model_name=m.name if m else "no model",
            model_version=m.version if m else "",
            intended_use=m.intended_use if m else "research and demonstration",
            device=m.device if m else "",
            hide_patient=st.hide_patient,
            decision=pred.rule_text() if pred is not None else None,
            headline=pred.headline() if pred is not None else None,
            thresholds=[pred.threshold_of(i) for i in range(len(names))] if pred else [],
            kind=m.kind if m else "softmax",
            near_threshold=bool(pred is not None and pred.is_near_threshold),
            findings=[names[i] for i in pred.positive_findings] if pred is not None else [],
        )

    def export(self, kind: str, path: str | Path) -> None:
        """Write the PNG or PDF on the I/O worker; the status bar says when it is done."""
        from .worker import Task

        snap = self.snapshot()
        writer = save_png if kind == "png" else save_pdf
        self.controller.io_worker.submit(
            Task(
                lambda progress, cancel, partial: writer(snap, path),
                f"export:{kind}",
                on_done=lambda p: self.status.show_message(f"Saved {p}"),
                on_error=lambda f: self.reporter.report(f.exc, f.traceback),
            )
        )

    def _export_dialog(self, kind: str, title: str, filt: str) -> None:
        if self.state.study is None:
            self.status.show_message("Open a study first")
            return
        stem = Path(self.state.study.path).stem if not self.state.hide_patient else "study"
        start = str(Path(self.settings.last_dir) / f"{stem}-cxr-lens.{kind}")
        path, _ = QFileDialog.getSaveFileName(self, title, start, filt)
        if path:
            self.export(kind, path)

    def export_png_dialog(self) -> None:
        self._export_dialog("png", "Export the view as PNG", "PNG image (*.png)")

    def export_pdf_dialog(self) -> None:
        self._export_dialog("pdf", "Save a PDF report", "PDF (*.pdf)")

    # ------------------------------------------------------------------ help
    def show_shortcuts(self) -> None:
        rows = []
        for a in self.actions_.all.values():
            keys = ", ".join(k.toString() for k in a.shortcuts())
            if keys:
                rows.append(f"<tr><td><b>{keys}</b></td><td>{a.text().replace('&', '')}</td></tr>")
        rows.append("<tr><td><b>Wheel</b></td><td>Zoom</td></tr>")
        rows.append("<tr><td><b>Left drag</b></td><td>Pan</td></tr>")
        rows.append("<tr><td><b>Right drag</b></td><td>Window (←→ width, ↑↓ level)</td></tr>")
        box = QMessageBox(self)
        box.setWindowTitle("Keyboard shortcuts")
        box.setText("<table>" + "".join(rows) + "</table>")
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        box.open()

    def show_about(self) -> None:
        from cxr_viewer import __version__

        box = QMessageBox(self)
        box.setWindowTitle("About CXR Lens")
        box.setText(
            f"<b>CXR Lens {__version__}</b><br>Shows why a chest X-ray classifier said what it "
            "said: Grad-CAM, LIME and per-layer SHAP next to the image.<br><br>"
            "<b>Research and demonstration software, not for diagnosis.</b>"
        )
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        box.open()

    # ------------------------------------------------------------------ closing
    def closeEvent(self, event) -> None:  # noqa: N802
        self.settings.save_geometry(self.saveGeometry(), self.saveState())
        self.settings.save_state(self.state)
        self.settings.sync()
        self.controller.shutdown()
        self.reporter.uninstall()
        super().closeEvent(event)


def raise_no_study() -> None:
    from cxr_viewer.core.errors import CxrError

    raise CxrError("Nothing to export", "no study is open.", "Open a study first.")


__all__ = ["MainWindow", "OVERLAY_KEYS"]
