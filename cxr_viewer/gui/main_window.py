"""The main window: linked image views in the middle, studies left, model/prediction/maps right.

The image area has three layouts (View menu, V cycles them): a grid with the original and one
pane per shown method, each with its own legend (the default); the original next to one view
with every map composited; and one method's map filling the area. All views share zoom, pan
and window/level.

The window assembles parts and forwards user intent; it owns no viewer state (that is
:class:`~cxr_viewer.gui.state.ViewerState`) and does no work (that is the controller's workers).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NoReturn

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QGridLayout,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from cxr_viewer.core.io.formats import file_dialog_filter
from cxr_viewer.core.paths import demo_bundle_dir

from . import model_menu
from .actions import OVERLAY_KEYS, Actions
from .annotations import install as install_annotations
from .controller import Controller
from .error_dialog import ErrorReporter
from .events import RELAYOUTS, OverlayChange
from .pacs_dialogs import PacsActions
from .panels.info import MetadataPanel, ModelPanel
from .panels.overlays import OverlayPanel
from .panels.prediction import PredictionPanel
from .panels.studies import StudyList
from .presenter import DisplayPresenter, OverlayPresenter
from .report import LayerSnapshot, Snapshot, save_pdf, save_png
from .settings import Settings
from .state import METHODS, ViewerState
from .status import StatusArea
from .stored_overlays import StoredOverlayPanel
from .views import ImageView, ViewLink

log = logging.getLogger(__name__)

LEFT_DOCK_WIDTH, RIGHT_DOCK_WIDTH = 260, 350
#: the window's size on a first launch when the screen has room for it
DEFAULT_SIZE = (1500, 900)


class MainWindow(QMainWindow):
    """CXR Lens' window."""

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__()
        self.setObjectName("MainWindow")
        self.setWindowTitle(window_title(""))
        self.setAcceptDrops(True)
        self.settings = settings or Settings()
        self.state = ViewerState()
        self.reporter = ErrorReporter(self)
        self.controller = Controller(self.state, self.reporter, self)

        # --- views: the original, all maps composited, and one pane per method
        self.original_view = ImageView("Original")
        self.overlay_view = ImageView("Explanations")
        self.panes = {m: ImageView("") for m in METHODS}
        for m, pane in self.panes.items():
            pane.setObjectName(f"Pane_{m}")
        self.views = [self.original_view, self.overlay_view, *self.panes.values()]
        for v in self.views:  # the layout decides their size, never their contents
            v.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
            v.setMinimumSize(120, 120)
        self.link = ViewLink(*self.views)
        self.image_area = QWidget()
        self.image_area.setObjectName("ImageArea")
        self.grid = QGridLayout(self.image_area)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(3)
        self.setCentralWidget(self.image_area)
        self.display = DisplayPresenter(self.state, self.controller, self.views)
        self.overlays = OverlayPresenter(self.state, self.overlay_view, self.panes)

        # --- panels
        self.study_list = StudyList(self.state)
        self.model_panel = ModelPanel(self.state)
        self.prediction_panel = PredictionPanel(self.state)
        self.overlay_panel = OverlayPanel(self.state)
        self.stored_panel = StoredOverlayPanel(
            self.state, self.overlay_view, self.overlays, submit=self.controller.io_worker.submit
        )
        self.metadata_panel = MetadataPanel(self.state)
        self.status = StatusArea(self.state, settings=self.settings)
        self.setStatusBar(self.status)
        # File ▸ Query/retrieve from PACS, PACS nodes, Stored DICOM results, Export ▸ DICOM:
        # the window builds the menu from the entries; the dialogs get what they need, not it
        self.pacs = PacsActions(
            self.settings,
            self.state,
            self.controller.network,
            self,
            open_files=lambda files: self.controller.open_paths(list(files)),
            show_message=self.status.show_message,
        )
        self.actions_ = Actions(self, self.pacs.entries())
        self._docks()
        self.annotations = install_annotations(self)  # File ▸ Open annotations…, boxes on panes
        self.model_menu = model_menu.install(self)  # File ▸ Model: demos, recent, open, import

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
        self.state.events.privacy.connect(self._study_changed)
        self.state.events.overlay.connect(self._overlay_shown)
        self.state.events.model.connect(self._apply_layout)

        self.settings.restore_state(self.state)
        self.actions_.rebuild_recent(self.settings.recent_files())
        self.actions_.rebuild_presets()
        geometry, window_state = self.settings.geometry()
        if geometry is None or not self.restoreGeometry(geometry):
            self._default_geometry()
        if window_state is not None:
            self.restoreState(window_state)
        self._apply_layout()

    # ------------------------------------------------------------------ layout
    def _default_geometry(self) -> None:
        """:data:`DEFAULT_SIZE`, or the screen's available area when that is smaller.

        The minimum size stays below 1280 × 720 logical pixels (a 1366 × 768 laptop, or 1920 ×
        1080 at 150 %): the side panels scroll, long texts elide, the toolbar overflows.
        """
        screen = self.screen() or QGuiApplication.primaryScreen()
        width, height = DEFAULT_SIZE
        if screen is None:
            self.resize(width, height)
            return
        avail = screen.availableGeometry()
        if avail.width() >= width and avail.height() >= height:
            self.resize(width, height)
            return
        # the window manager keeps the frame on the screen; the minimum size fits in this
        self.setGeometry(
            avail.x(), avail.y(), min(width, avail.width()), min(height, avail.height())
        )

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
        lay.addWidget(self.stored_panel)
        lay.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(right_box)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # fixed dock widths: nothing the panels show can push the image area around
        scroll.setFixedWidth(RIGHT_DOCK_WIDTH)
        self.study_list.setFixedWidth(LEFT_DOCK_WIDTH)
        self.metadata_panel.setFixedWidth(LEFT_DOCK_WIDTH)
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

    def shown_views(self) -> list[ImageView]:
        """The views the current layout shows, in reading order."""
        st = self.state
        shown = [m for m in METHODS if st.overlays[m].visible and st.overlays[m].available]
        if st.layout == "side":
            return [self.original_view, self.overlay_view]
        if st.layout == "single":
            if not shown:
                return [self.overlay_view]
            focus = st.focus_method if st.focus_method in shown else shown[0]
            return [self.panes[focus]]
        return [self.original_view] + [self.panes[m] for m in shown]

    def _apply_layout(self) -> None:
        """Put the shown views in the grid; new ones take the zoom and pan of the old ones."""
        views = self.shown_views()
        old = [v for v in self.views if v.isVisible()]
        in_grid = [item.widget() for i in range(self.grid.count()) if (item := self.grid.itemAt(i))]
        if in_grid == views and all(v.isVisible() for v in views):
            return
        ref = old[0] if old else None
        for v in self.views:
            self.grid.removeWidget(v)
        n = len(views)
        cols = 1 if n == 1 else 2 if n <= 4 else 3
        for i, v in enumerate(views):
            self.grid.addWidget(v, i // cols, i % cols)
        for c in range(3):
            self.grid.setColumnStretch(c, 1 if c < cols else 0)
        rows = (n + cols - 1) // cols
        for r in range(3):
            self.grid.setRowStretch(r, 1 if r < rows else 0)
        for v in self.views:
            v.setVisible(v in views)

        def sync() -> None:
            if ref is None or ref.fit_mode:
                for v in views:
                    v.fit()
            else:
                for v in views:
                    if v is not ref:
                        v.copy_view_from(ref)

        QTimer.singleShot(0, sync)

    def _overlay_shown(self, _method: str, what: OverlayChange) -> None:
        if what in RELAYOUTS:
            self._apply_layout()

    def _study_changed(self) -> None:
        s = self.state.study
        name = s.path.name if s is not None else ""
        if s is not None and self.state.hide_patient:
            name = "study"
        self.setWindowTitle(window_title(name))

    # ------------------------------------------------------------------ opening
    def open_paths(self, paths: list[str]) -> None:
        if not paths:
            return
        for p in paths:
            recent = self.settings.add_recent(p)
        self.actions_.rebuild_recent(recent)
        self.settings.last_dir = str(Path(paths[0]).resolve().parent)
        self.controller.open_paths(list(paths))  # a list[str | Path] for the controller

    def open_file_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(
            self, "Open images", self.settings.last_dir, file_dialog_filter()
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
        for v in self.views:
            v.fit()

    def actual_size(self) -> None:
        self._active_view().actual_size()

    def zoom(self, factor: float) -> None:
        self._active_view().zoom_by(factor)

    def _active_view(self) -> ImageView:
        return self.shown_views()[0]

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
                    float(ov.cutoff),
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
            threshold=float(m.threshold) if m is not None and m.threshold is not None else None,
            positive_class=m.positive_class if m is not None else None,
            invert_flipped=st.invert_flip,
            decision=pred.rule_text() if pred is not None else None,
            headline=pred.headline() if pred is not None else None,
            thresholds=[pred.threshold_of(i) for i in range(len(names))] if pred else [],
            kind=m.kind if m else "softmax",
            near_threshold=bool(pred is not None and pred.is_near_threshold),
            findings=[names[i] for i in pred.positive_findings] if pred is not None else [],
            layout=st.layout,
            focus=st.focus_method,
        )

    def export(self, kind: str, path: str | Path) -> None:
        """Write the PNG or PDF on the I/O worker; the status bar says when it is done."""
        from .worker import Failure, Task

        snap = self.snapshot()
        writer = save_png if kind == "png" else save_pdf

        def failed(f: Failure) -> None:
            self.reporter.report(f.exc, f.traceback)

        self.controller.io_worker.submit(
            Task(
                lambda progress, cancel, partial: writer(snap, path),
                f"export:{kind}",
                on_done=lambda p: self.status.show_message(f"Saved {p}"),
                on_error=failed,
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
        box = QMessageBox(self)
        box.setWindowTitle("Keyboard shortcuts")
        box.setText(shortcuts_html(self.actions_.all.values()))
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


def window_title(study_name: str) -> str:
    """The title bar: the app's name once, the study shown, and that it is not for diagnosis."""
    return " — ".join(["CXR Lens", *([study_name] if study_name else []), "not for diagnosis"])


def shortcuts_html(actions) -> str:
    """The F1 table: keys in a no-wrap first column with room before the description."""
    cell = "style='white-space:nowrap; padding-right:18px'"
    rows = []
    for a in actions:
        keys = ", ".join(k.toString() for k in a.shortcuts())
        if keys:
            text = a.text().replace("&", "")
            rows.append(f"<tr><td {cell}><b>{keys}</b></td><td>{text}</td></tr>")
    for keys, text in (
        ("Wheel", "Zoom (all panes together)"),
        ("Left drag", "Pan"),
        ("Right drag", "Window (←→ width, ↑↓ level)"),
    ):
        rows.append(f"<tr><td {cell}><b>{keys}</b></td><td>{text}</td></tr>")
    return "<table cellspacing='0' cellpadding='3'>" + "".join(rows) + "</table>"


def raise_no_study() -> NoReturn:
    from cxr_viewer.core.errors import CxrError

    raise CxrError("Nothing to export", "no study is open.", "Open a study first.")


__all__ = ["MainWindow", "OVERLAY_KEYS"]
