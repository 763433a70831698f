"""Explanation scheduling: predictions and maps for the current study, on the model worker.

A newer request supersedes an older one in the same slot (a prediction, one method's
explanation). Results are cached per (study, model, class, method, layer, settings), so
toggling an overlay or coming back to a class reads the cache instead of recomputing.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal

from cxr_viewer.core.explain.registry import EXPLAINERS
from cxr_viewer.core.model.inference import Prediction
from cxr_viewer.core.progress import CancelToken, ProgressFn

from .cache import ResultCache
from .events import REQUESTS_A_MAP, OverlayChange
from .part import ViewerPart
from .results import OverlayResult
from .session import ModelSession
from .state import METHODS, study_key
from .worker import Failure, Task, WorkerThread


class ExplanationScheduler(ViewerPart):
    """Asks the model worker for the prediction and the visible maps, and puts them in the state
    (a part of ``owner``, the controller, sharing its state and error reporter)."""

    #: (kind, fraction, message): kind is "predict" or a method name; fraction < 0 ends it
    busy = Signal(str, float, str)

    def __init__(
        self, owner: ViewerPart, session: ModelSession, model_worker: WorkerThread
    ) -> None:
        super().__init__(owner.state, owner.reporter, owner)
        self.session = session
        self.model_worker = model_worker
        self.results = ResultCache()
        self.predictions: dict[tuple[Any, ...], Prediction] = {}
        self._explain_tasks: dict[str, Task] = {}
        self._task_keys: dict[int, tuple[Any, ...]] = {}
        self.state.events.study.connect(self._on_study)
        self.state.events.target_class.connect(self.request_all)
        self.state.events.overlay.connect(self._on_overlay)

    def reset(self) -> None:
        """Forget queued explanations, cached maps and predictions (a new model is loading)."""
        for m in METHODS:
            self._explain_tasks.pop(m, None)
        self.results.clear()
        self.predictions.clear()

    # ================================================================ prediction
    def _on_study(self) -> None:
        for m in METHODS:
            task = self._explain_tasks.pop(m, None)
            if task is not None:
                task.cancel()
                self.busy.emit(m, -1.0, "")
        self.request_prediction()

    def request_prediction(self) -> None:
        """Predict the current study (cached per study and model), then request the maps."""
        study, model = self.state.study, self.state.model
        if study is None or model is None:
            return
        key = (study_key(study), model.path)
        if key in self.predictions:
            self.state.set_prediction(self.predictions[key])
            self.request_all()
            return
        for m in METHODS:
            if self.state.overlays[m].visible and self.state.target_class is None:
                self.state.set_status(m, "waiting")

        def done(pred: Prediction) -> None:
            self.busy.emit("predict", -1.0, "")
            self.predictions[key] = pred
            if self.state.study is study:
                self.state.set_prediction(pred)
                self.request_all()

        def failed(f: Failure) -> None:
            self.busy.emit("predict", -1.0, "")
            self.report_failure("Predicting failed", f)

        def work(progress: ProgressFn, cancel: CancelToken, partial: Any) -> Prediction:
            return self.session.predict(study, progress, cancel)

        self.busy.emit("predict", 0.0, "Predicting…")
        self.model_worker.submit(
            Task(
                work,
                "predict",
                on_done=done,
                on_error=failed,
                on_cancelled=lambda: self.busy.emit("predict", -1.0, ""),
            )
        )

    # ================================================================ explanations
    def _on_overlay(self, method: str, what: OverlayChange) -> None:
        if what in REQUESTS_A_MAP:
            self.request(method)

    def request_all(self) -> None:
        """:meth:`request` every method."""
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
        if running is not None and self._task_keys.get(running.id) == key:
            return  # already on its way
        self._submit(method, key)

    def _submit(self, method: str, key: tuple[Any, ...]) -> None:
        state = self.state
        ov = state.overlays[method]
        study, target, layer, settings = (
            state.study,
            state.target_class,
            ov.layer,
            dict(ov.settings),
        )
        colormap = ov.colormap
        if study is None or target is None:
            return

        def work(progress: ProgressFn, cancel: CancelToken, partial: Any) -> OverlayResult:
            return self.session.explain(
                study, method, target, layer, settings, progress, cancel, partial, colormap
            )

        def on_progress(fraction: float, msg: str) -> None:
            if self.state.result_key(method) == key:
                self.state.set_status(method, "running", fraction, msg)
                self.busy.emit(method, fraction, msg or f"{ov.label}…")

        def on_partial(result: OverlayResult) -> None:
            if self.state.result_key(method) == key:
                self.state.set_result(method, result)

        def finished() -> None:
            self._task_keys.pop(task.id, None)
            if self._explain_tasks.get(method) is task:
                self._explain_tasks.pop(method, None)
            self.busy.emit(method, -1.0, "")

        def done(result: OverlayResult) -> None:
            finished()
            self.results.put(key, result)
            if self.state.result_key(method) == key:
                self.state.set_result(method, result)
                seconds = float(getattr(result.heatmap, "runtime_s", 0.0))
                took = f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"
                self.message.emit(f"{ov.label} ready in {took}")

        def failed(f: Failure) -> None:
            finished()
            if self.state.result_key(method) == key:
                self.state.set_status(method, "failed", 0.0, str(f.exc))
            self.reporter.report(f.exc, f.traceback)

        def cancelled() -> None:
            finished()
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
            partial_interval_s=EXPLAINERS[method].partial_interval_s,
        )
        self._task_keys[task.id] = key
        self._explain_tasks[method] = task
        state.set_status(method, "queued")
        self.busy.emit(method, 0.0, f"{ov.label} queued…")
        self.model_worker.submit(task)

    def cancel_all(self) -> list[str]:
        """Cancel every running or queued explanation; their unfinished overlays are switched off."""
        cancelled = []
        for method, task in list(self._explain_tasks.items()):
            task.cancel()
            cancelled.append(method)
            self._explain_tasks.pop(method, None)
            self.busy.emit(method, -1.0, "")
            self.state.set_status(method, "cancelled")
            shown = self.state.overlays[method].heatmap
            if shown is None or shown.partial:
                self.state.set_result(method, None)
                self.state.set_visible(method, False)
        if cancelled:
            labels = [self.state.overlays[m].label for m in cancelled]
            self.message.emit(f"Cancelled: {', '.join(labels)}")
        return cancelled

    def task_of(self, method: str) -> Task | None:
        """The queued or running explanation task of ``method`` (None: none)."""
        return self._explain_tasks.get(method)
