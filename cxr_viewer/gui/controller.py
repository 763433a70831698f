"""The controller: turns state changes into background work and results back into state.

Lives in the GUI thread. Four long-lived worker threads run the work:

* ``model`` — the only thread that touches TensorFlow: loads the bundle, warms it up, predicts,
  explains (one thread owns the model, docs/ARCHITECTURE.md "Threads and workers");
* ``io`` — reads studies and renders full-size display images;
* ``thumbs`` — makes study-list thumbnails;
* ``net`` — PACS work (DIMSE or DICOMweb: test, query, retrieve, DICOM export and send),
  through :class:`~.network.Network`, so a slow PACS never holds up a study or a map.

The work is split in two parts the controller owns: :class:`~.study_loader.StudyLoader`
(files to studies on screen) and :class:`~.explanations.ExplanationScheduler` (the prediction
and the maps of the current study). The controller itself loads the model, following the
phases :meth:`~.session.ModelSession.load` reports, and is the one object the window talks to.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from cxr_viewer.core.io.study import Study, Window
from cxr_viewer.core.progress import CancelToken, ProgressFn

from .error_dialog import ErrorReporter
from .explanations import ExplanationScheduler
from .network import Network
from .part import ViewerPart
from .session import ModelPhase, ModelSession
from .state import ModelInfo, ViewerState
from .study_loader import StudyLoader
from .worker import Failure, Task, WorkerThread

log = logging.getLogger(__name__)

WORKER_NICE = 5


class Controller(ViewerPart):
    """Connects the state, the worker threads, the study loader and the explanation scheduler."""

    #: (kind, fraction, message): kind is "model", "predict" or a method name; fraction < 0 ends it
    busy = Signal(str, float, str)

    def __init__(
        self, state: ViewerState, reporter: ErrorReporter, parent: QObject | None = None
    ) -> None:
        super().__init__(state, reporter, parent)
        self.session = ModelSession()
        # background threads run at a lower OS priority than the GUI thread (see worker.py)
        self.model_worker = WorkerThread("cxr-model", self, nice=WORKER_NICE)
        self.io_worker = WorkerThread("cxr-io", self, nice=WORKER_NICE)
        self.thumb_worker = WorkerThread("cxr-thumbs", self, nice=WORKER_NICE + 5)
        self.net_worker = WorkerThread("cxr-net", self, nice=WORKER_NICE)
        #: the PACS operations on the network worker (the PACS dialogs submit through it)
        self.network = Network(self.net_worker)
        # two workers of one type: named, so that they cannot be swapped
        self.studies = StudyLoader(self, io_worker=self.io_worker, thumb_worker=self.thumb_worker)
        self.explanations = ExplanationScheduler(self, self.session, self.model_worker)
        for part in (self.studies, self.explanations):
            part.message.connect(self.message)
        self.explanations.busy.connect(self.busy)
        #: a thumbnail for the study list (path, QImage)
        self.thumbnailReady = self.studies.thumbnailReady
        #: a full-size display image is ready (key, QImage, (columns, rows))
        self.fullImageReady = self.studies.fullImageReady
        #: a study could not be read (path)
        self.loadFailed = self.studies.loadFailed
        self._closing = False

    # ================================================================ studies
    def open_paths(self, paths: list[str | Path], current: str | Path | None = None) -> None:
        """Open files and folders, showing ``current`` (:meth:`StudyLoader.open_paths`)."""
        self.studies.open_paths(paths, current)

    def open_index(self, index: int, skip_unreadable: bool = False) -> None:
        """Load and show study ``index`` of the list (:meth:`StudyLoader.open_index`)."""
        self.studies.open_index(index, skip_unreadable)

    def step(self, delta: int) -> None:
        """Open the study ``delta`` places along the list."""
        self.studies.step(delta)

    def default_image_of(self, study: Study) -> QImage | None:
        """The preview drawn with the study's own window and inversion, if the loader made it."""
        return self.studies.default_image_of(study)

    def preview_of(self, study: Study) -> Study:
        """The screen-size copy of ``study``."""
        return self.studies.preview_of(study)

    def render_full(
        self, key: tuple[Any, ...], study: Study, window: Window | None, invert: bool
    ) -> None:
        """Render the full-size display image on the I/O worker (newest request wins)."""
        self.studies.render_full(key, study, window, invert)

    # ================================================================ model
    def load_model(self, path: str | Path) -> None:
        """Load a bundle on the model worker; the window stays usable meanwhile.

        The model's status follows the phases the session reports ("loading", then "warming
        up"); they travel from the worker to this thread on the task's partial-result channel
        (unthrottled), in order with the progress messages.
        """
        self.model_worker.cancel()
        self.explanations.reset()
        self.state.set_model(None)
        self.state.set_model_status("loading", f"Loading {Path(path).name}…")
        phase: list[ModelPhase] = ["loading"]

        def loading() -> bool:
            return self.state.model is None and self.state.model_status in (
                "loading",
                "warming up",
            )

        def on_phase(new: ModelPhase) -> None:
            phase[0] = new
            if loading():
                self.state.set_model_status(
                    new, self.state.model_message, self.state.model_progress
                )

        def on_progress(fraction: float, msg: str) -> None:
            if loading():
                self.state.set_model_status(phase[0], msg, fraction)
            self.busy.emit("model", fraction, msg)

        def work(progress: ProgressFn, cancel: CancelToken, partial: Any) -> ModelInfo:
            return self.session.load(path, progress, cancel, phase=partial)

        def done(info: ModelInfo) -> None:
            self.busy.emit("model", -1.0, "")
            self.state.set_model(info)
            self.message.emit(f"Model {info.name} ready on {info.device}")
            self.explanations.request_prediction()

        def failed(f: Failure) -> None:
            self.busy.emit("model", -1.0, "")
            self.state.set_model_status("failed", f"{getattr(f.exc, 'what', f.exc)}")
            self.reporter.report(f.exc, f.traceback)

        self.model_worker.submit(
            Task(
                work,
                "model",
                on_done=done,
                on_error=failed,
                on_progress=on_progress,
                on_partial=on_phase,
                on_cancelled=lambda: self.busy.emit("model", -1.0, ""),
                partial_interval_s=0.0,  # every phase change gets through
            )
        )

    # ================================================================ explanations
    def cancel_explanations(self) -> list[str]:
        """Cancel every running or queued explanation; their overlays are switched off."""
        return self.explanations.cancel_all()

    # ================================================================ shutdown
    def shutdown(self) -> None:
        """Cancel all work and stop the worker threads (called when the window closes)."""
        if self._closing:
            return
        self._closing = True
        for w in (self.net_worker, self.thumb_worker, self.io_worker, self.model_worker):
            w.shutdown(timeout_ms=10000)
