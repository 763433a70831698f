"""The controller: turns state changes into background work and results back into state.

Lives in the GUI thread. Three long-lived worker threads run the work:

* ``model`` — the only thread that touches TensorFlow: loads the bundle, warms it up, predicts,
  explains (one thread owns the model, docs/ARCHITECTURE.md "Threads and workers");
* ``io`` — reads studies and renders full-size display images;
* ``thumbs`` — makes study-list thumbnails.

A newer request supersedes an older one in the same slot (a study load, a prediction, one
method's explanation). Results are cached per (study, model, class, method, layer, settings), so
toggling an overlay or coming back to a class reads the cache instead of recomputing.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from cxr_viewer.core.errors import CxrError, StudyLoadError
from cxr_viewer.core.explain.registry import EXPLAINERS

from .cache import ResultCache
from .error_dialog import ErrorReporter
from .imaging import display_qimage, preview_study, render_u8, thumbnail
from .session import ModelSession
from .state import METHODS, ViewerState, study_key
from .worker import Failure, Task, WorkerThread

log = logging.getLogger(__name__)

STUDY_CACHE_SIZE = 4
WORKER_NICE = 5


class Controller(QObject):
    """Connects the state, the worker threads, the result cache and the error reporter."""

    #: (kind, fraction, message): kind is "model", "predict" or a method name; fraction < 0 ends it
    busy = Signal(str, float, str)
    #: a short message for the status bar
    message = Signal(str)
    #: a thumbnail for the study list (path, QImage)
    thumbnailReady = Signal(object, object)
    #: a full-size display image is ready (key, QImage, (columns, rows))
    fullImageReady = Signal(object, object, object)
    #: a study finished loading (path) — for tests and the benchmark
    studyLoaded = Signal(object)
    #: a study could not be read (path)
    loadFailed = Signal(object)
    #: a prediction arrived
    predicted = Signal(object)

    def __init__(self, state: ViewerState, reporter: ErrorReporter, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.reporter = reporter
        self.session = ModelSession()
        # background threads run at a lower OS priority than the GUI thread (see worker.py)
        self.model_worker = WorkerThread("cxr-model", self, nice=WORKER_NICE)
        self.io_worker = WorkerThread("cxr-io", self, nice=WORKER_NICE)
        self.thumb_worker = WorkerThread("cxr-thumbs", self, nice=WORKER_NICE + 5)
        self.results = ResultCache()
        self.predictions: dict[tuple, object] = {}
        self._studies: OrderedDict[str, object] = OrderedDict()
        self._explain_tasks: dict[str, Task] = {}
        self._closing = False
        state.events.study.connect(self._on_study)
        state.events.target_class.connect(self._request_all)
        state.events.overlay.connect(self._on_overlay)

    # ================================================================ studies
    def open_paths(self, paths: list[str | Path]) -> None:
        """Open files and folders: folders are expanded into their study files."""
        from cxr_viewer.core.io import list_study_files

        files: list[Path] = []
        for raw in paths:
            p = Path(raw)
            try:
                if p.is_dir():
                    found = list(list_study_files(p))
                    if not found:
                        raise StudyLoadError(
                            f"No images in {p.name}",
                            "the folder holds no PNG, JPEG or DICOM files.",
                            "Choose another folder.",
                        )
                    files.extend(Path(f) for f in found)
                elif p.exists():
                    files.append(p)
                else:
                    raise StudyLoadError(f"Cannot open {p.name}", "the file does not exist.")
            except CxrError as exc:
                self.reporter.report(exc)
        if not files:
            return
        first = self.state.add_studies(files)
        self._make_thumbnails(files)
        self.open_index(first, skip_unreadable=len(files) > 1)

    def open_index(self, index: int, skip_unreadable: bool = False) -> None:
        """Load study ``index`` of the list (on the I/O worker) and show it.

        With ``skip_unreadable`` (opening a folder), an unreadable file is reported and the next
        file is tried, so one bad file does not leave the viewer empty.
        """
        if not 0 <= index < len(self.state.studies):
            return
        path = self.state.studies[index]
        cached = self._studies.get(str(path))
        if cached is not None:
            self._studies.move_to_end(str(path))
            self.state.set_study(cached[0], index)
            self.studyLoaded.emit(path)
            return
        self.message.emit(f"Opening {path.name}…")

        def load(progress, cancel, partial):
            from cxr_viewer.core.io import load_study

            cancel.raise_if_cancelled()
            study = load_study(path)
            preview = preview_study(study)
            # the first picture (the study's own window) and the thumbnail are drawn here, so
            # the GUI thread only has to put them on screen
            first = display_qimage(render_u8(preview, None, preview.invert))
            return study, preview, first, thumbnail(preview)

        def done(result) -> None:
            study, preview, first, thumb = result
            self._remember(study, preview, first)
            self.state.set_study(study, index)
            self.message.emit(f"{path.name}: {study.columns} × {study.rows}")
            self.studyLoaded.emit(path)
            self.thumbnailReady.emit(path, thumb)

        def failed(f: Failure) -> None:
            self.loadFailed.emit(path)
            self._failed(f"Opening {path.name}")(f)
            if skip_unreadable and self.state.study is None and index + 1 < len(self.state.studies):
                self.open_index(index + 1, skip_unreadable=True)

        self.io_worker.submit(Task(load, "load", on_done=done, on_error=failed))

    def step(self, delta: int) -> None:
        idx = self.state.step_index(delta)
        if idx is not None:
            self.open_index(idx)

    def _remember(self, study, preview, default_image=None) -> None:
        self._studies[str(study.path)] = (study, preview, default_image)
        self._studies.move_to_end(str(study.path))
        while len(self._studies) > STUDY_CACHE_SIZE:
            self._studies.popitem(last=False)

    def default_image_of(self, study):
        """The preview drawn with the study's own window and inversion, if the loader made it."""
        entry = self._studies.get(str(study.path))
        return entry[2] if entry is not None and entry[0] is study else None

    def preview_of(self, study):
        """The screen-size copy of ``study`` (made now if the study did not come via open_index)."""
        entry = self._studies.get(str(study.path))
        if entry is not None and entry[0] is study:
            return entry[1]
        preview = preview_study(study)
        self._remember(study, preview)
        return preview

    def _make_thumbnails(self, files: list[Path]) -> None:
        for path in files:

            def make(progress, cancel, partial, path=path):
                from cxr_viewer.core.io import load_study

                cancel.raise_if_cancelled()
                return path, thumbnail(load_study(path))

            # a file that fails here fails again (with a dialog) when opened; keep the list quiet
            self.thumb_worker.submit(
                Task(
                    make,
                    f"thumb:{path}",
                    on_done=lambda r: self.thumbnailReady.emit(*r),
                    on_error=lambda f: log.info("no thumbnail: %s", f.exc),
                )
            )

    def render_full(self, key: tuple, study, window, invert: bool) -> None:
        """Render the full-size display image on the I/O worker (newest request wins)."""

        def render(progress, cancel, partial):
            cancel.raise_if_cancelled()
            return display_qimage(render_u8(study, window, invert))

        self.io_worker.submit(
            Task(
                render,
                "render",
                on_done=lambda img: self.fullImageReady.emit(key, img, (study.columns, study.rows)),
                on_error=self._failed("Drawing the image"),
            )
        )

    # ================================================================ model
    def load_model(self, path: str | Path) -> None:
        """Load a bundle on the model worker; the window stays usable meanwhile."""
        self.model_worker.cancel()
        for m in METHODS:
            self._explain_tasks.pop(m, None)
        self.state.set_model(None)
        self.state.set_model_status("loading", f"Loading {Path(path).name}…")
        self.results.clear()
        self.predictions.clear()

        def progress(fraction: float, msg: str) -> None:
            if self.state.model is None and self.state.model_status in ("loading", "warming up"):
                status = "warming up" if "Warming" in msg or fraction >= 0.6 else "loading"
                self.state.set_model_status(status, msg, fraction)
            self.busy.emit("model", fraction, msg)

        def done(info) -> None:
            self.busy.emit("model", -1.0, "")
            self.state.set_model(info)
            self.message.emit(f"Model {info.name} ready on {info.device}")
            self._request_prediction()

        def failed(f: Failure) -> None:
            self.busy.emit("model", -1.0, "")
            self.state.set_model_status("failed", f"{getattr(f.exc, 'what', f.exc)}")
            self.reporter.report(f.exc, f.traceback)

        self.model_worker.submit(
            Task(
                lambda progress, cancel, partial: self.session.load(path, progress, cancel),
                "model",
                on_done=done,
                on_error=failed,
                on_progress=progress,
                on_cancelled=lambda: self.busy.emit("model", -1.0, ""),
            )
        )

    # ================================================================ prediction
    def _on_study(self) -> None:
        for m in METHODS:
            task = self._explain_tasks.pop(m, None)
            if task is not None:
                task.cancel()
                self.busy.emit(m, -1.0, "")
        self._request_prediction()

    def _request_prediction(self) -> None:
        study, model = self.state.study, self.state.model
        if study is None or model is None:
            return
        key = (study_key(study), model.path)
        if key in self.predictions:
            self.state.set_prediction(self.predictions[key])
            self.predicted.emit(self.predictions[key])
            self._request_all()
            return
        for m in METHODS:
            if self.state.overlays[m].visible and self.state.target_class is None:
                self.state.set_status(m, "waiting")

        def done(pred) -> None:
            self.busy.emit("predict", -1.0, "")
            self.predictions[key] = pred
            if self.state.study is study:
                self.state.set_prediction(pred)
                self.predicted.emit(pred)
                self._request_all()

        self.busy.emit("predict", 0.0, "Predicting…")
        self.model_worker.submit(
            Task(
                lambda progress, cancel, partial: self.session.predict(study, progress, cancel),
                "predict",
                on_done=done,
                on_error=self._failed("Predicting", "predict"),
                on_cancelled=lambda: self.busy.emit("predict", -1.0, ""),
            )
        )

    # ================================================================ explanations
    def _on_overlay(self, method: str, what: str) -> None:
        if what in ("visible", "layer", "settings"):
            self.request(method)

    def _request_all(self) -> None:
        for m in METHODS:
            self.request(m)

    def request(self, method: str) -> None:
        """Make sure ``method``'s map for the current study/class is shown (cache or compute)."""
        ov = self.state.overlays[method]
        if not ov.visible or not ov.available:
            return
        key = self.state.result_key(method)
        if key is None:
            if self.state.model is not None and self.state.study is not None:
                self.state.set_status(method, "waiting")
            return
        cached = self.results.get(key)
        if cached is not None:
            if ov.heatmap is not cached:
                self.state.set_result(method, cached)
            return
        running = self._explain_tasks.get(method)
        if running is not None and getattr(running, "key", None) == key:
            return  # already on its way
        self._submit_explain(method, key)

    def _submit_explain(self, method: str, key: tuple) -> None:
        state = self.state
        ov = state.overlays[method]
        study, target, layer, settings = (
            state.study,
            state.target_class,
            ov.layer,
            dict(ov.settings),
        )
        colormap = ov.colormap

        def work(progress, cancel, partial):
            return self.session.explain(
                study, method, target, layer, settings, progress, cancel, partial, colormap
            )

        def on_progress(fraction: float, msg: str) -> None:
            if self.state.result_key(method) == key:
                self.state.set_status(method, "running", fraction, msg)
                self.busy.emit(method, fraction, msg or f"{ov.label}…")

        task_partial_interval = EXPLAINERS[method].partial_interval_s

        def on_partial(result) -> None:
            if self.state.result_key(method) == key:
                self.state.set_result(method, result)

        def done(result) -> None:
            self._explain_tasks.pop(method, None)
            self.busy.emit(method, -1.0, "")
            self.results.put(key, result)
            if self.state.result_key(method) == key:
                self.state.set_result(method, result)
                self.message.emit(
                    f"{ov.label} ready in {getattr(result.heatmap, 'runtime_s', 0.0):.1f} s"
                )

        def failed(f: Failure) -> None:
            self._explain_tasks.pop(method, None)
            self.busy.emit(method, -1.0, "")
            if self.state.result_key(method) == key:
                self.state.set_status(method, "failed", 0.0, str(f.exc))
            self.reporter.report(f.exc, f.traceback)

        def cancelled() -> None:
            if self._explain_tasks.get(method) is task:
                self._explain_tasks.pop(method, None)
            self.busy.emit(method, -1.0, "")
            if self.state.result_key(method) == key and self.state.overlays[method].heatmap is None:
                self.state.set_status(method, "cancelled")

        task = Task(
            work,
            f"explain:{method}",
            on_done=done,
            on_error=failed,
            on_progress=on_progress,
            on_partial=on_partial,
            on_cancelled=cancelled,
            partial_interval_s=task_partial_interval,
        )
        task.key = key
        self._explain_tasks[method] = task
        state.set_status(method, "queued")
        self.busy.emit(method, 0.0, f"{ov.label} queued…")
        self.model_worker.submit(task)

    def cancel_explanations(self) -> list[str]:
        """Cancel every running or queued explanation; their overlays are switched off."""
        cancelled = []
        for method, task in list(self._explain_tasks.items()):
            task.cancel()
            cancelled.append(method)
            self._explain_tasks.pop(method, None)
            self.busy.emit(method, -1.0, "")
            self.state.set_status(method, "cancelled")
            if self.state.overlays[method].heatmap is None or (
                self.state.overlays[method].heatmap.partial
            ):
                self.state.set_result(method, None)
                self.state.set_visible(method, False)
        if cancelled:
            labels = [self.state.overlays[m].label for m in cancelled]
            self.message.emit(f"Cancelled: {', '.join(labels)}")
        return cancelled

    def explaining(self) -> list[str]:
        return list(self._explain_tasks)

    # ================================================================ errors & shutdown
    def _failed(self, doing: str, busy_kind: str | None = None):
        def on_error(f: Failure) -> None:
            if busy_kind:
                self.busy.emit(busy_kind, -1.0, "")
            self.message.emit(f"{doing} failed")
            self.reporter.report(f.exc, f.traceback)

        return on_error

    def shutdown(self) -> None:
        """Cancel all work and stop the worker threads (called when the window closes)."""
        if self._closing:
            return
        self._closing = True
        for w in (self.thumb_worker, self.io_worker, self.model_worker):
            w.shutdown(timeout_ms=10000)
