"""Long-lived worker threads that run core functions off the GUI thread (docs/ARCHITECTURE.md).

A :class:`Task` is a plain function plus a :class:`~cxr_viewer.core.progress.CancelToken`. A
:class:`WorkerThread` owns one ``QThread`` whose ``run`` loops over a queue of tasks and runs
them one after another in submission order (why a loop and not queued slot calls: see
:class:`_TaskThread`). Results, progress and failures come back as Qt signals
whose receivers are methods of a QObject in the GUI thread (:class:`TaskRouter`), which then
calls the task's Python callbacks there. A plain function connected to a worker's signal would
run in the worker thread, even with a queued connection; routing through a GUI-thread QObject
avoids that, so widgets are only ever touched on the GUI thread.

The model worker is the only thread that ever touches TensorFlow or the model: one thread, one
model, no TensorFlow thread-safety surprises.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from cxr_viewer.core.errors import Cancelled
from cxr_viewer.core.progress import CancelToken

log = logging.getLogger(__name__)

_ids = itertools.count(1)

#: threads that did not stop when asked (kept referenced so they are never destroyed running)
_UNFINISHED: list[QThread] = []

#: progress signals are sent at most this often (a flood of queued signals would itself stall)
PROGRESS_INTERVAL_S = 0.05


@dataclass
class Failure:
    """An exception from a task, with its traceback formatted in the worker thread."""

    exc: BaseException
    traceback: str


@dataclass(eq=False)
class Task:
    """One unit of background work.

    ``fn(progress, cancel, partial)`` runs in the worker thread and returns the result. The
    callbacks run in the GUI thread. ``slot`` names what the task is for: a newer task in the
    same slot supersedes (cancels) an older one.
    """

    fn: Callable[..., Any]
    slot: str
    on_done: Callable[[Any], None] | None = None
    on_error: Callable[[Failure], None] | None = None
    on_progress: Callable[[float, str], None] | None = None
    on_partial: Callable[[Any], None] | None = None
    on_cancelled: Callable[[], None] | None = None
    token: CancelToken = field(default_factory=CancelToken)
    id: int = field(default_factory=lambda: next(_ids))
    partial_interval_s: float = 0.25

    def cancel(self) -> None:
        self.token.cancel()


class Worker(QObject):
    """Runs tasks in its own thread; reports through signals (arguments typed ``object``)."""

    progress = Signal(object, float, str)
    partial = Signal(object, object)
    done = Signal(object, object)
    failed = Signal(object, object)
    cancelled = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.busy = threading.Event()

    def run(self, task: Task) -> None:
        """Run ``task`` unless it was cancelled while it waited in the queue."""
        if task.token.cancelled:
            self.cancelled.emit(task.id)
            return
        self.busy.set()
        last = [0.0, 0.0]  # last progress, last partial

        def progress(fraction: float, message: str = "") -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_INTERVAL_S or fraction >= 1.0:
                last[0] = now
                self.progress.emit(task.id, float(fraction), str(message))

        def partial(result: Any) -> None:
            now = time.monotonic()
            if now - last[1] >= task.partial_interval_s:
                last[1] = now
                self.partial.emit(task.id, result)

        try:
            result = task.fn(progress=progress, cancel=task.token, partial=partial)
        except Cancelled:
            self.cancelled.emit(task.id)
        except Exception as exc:  # noqa: BLE001 - every failure is reported to the GUI thread
            self.failed.emit(task.id, Failure(exc, traceback.format_exc()))
        else:
            if task.token.cancelled:
                self.cancelled.emit(task.id)
            else:
                self.done.emit(task.id, result)
        finally:
            self.busy.clear()


class TaskRouter(QObject):
    """Lives in the GUI thread; turns worker signals into calls of the tasks' callbacks."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._tasks: dict[int, Task] = {}

    def track(self, task: Task) -> None:
        self._tasks[task.id] = task

    def pending(self) -> list[Task]:
        return list(self._tasks.values())

    @Slot(object, float, str)
    def on_progress(self, task_id: int, fraction: float, message: str) -> None:
        task = self._tasks.get(task_id)
        if task is not None and task.on_progress and not task.token.cancelled:
            task.on_progress(fraction, message)

    @Slot(object, object)
    def on_partial(self, task_id: int, result: Any) -> None:
        task = self._tasks.get(task_id)
        if task is not None and task.on_partial and not task.token.cancelled:
            task.on_partial(result)

    def _finished(self, task_id: int) -> Task | None:
        """Forget a task that ended; None when it is unknown or was cancelled (its
        ``on_cancelled`` then runs: superseded while its result travelled here)."""
        task = self._tasks.pop(task_id, None)
        if task is not None and task.token.cancelled:
            if task.on_cancelled:
                task.on_cancelled()
            return None
        return task

    @Slot(object, object)
    def on_done(self, task_id: int, result: Any) -> None:
        task = self._finished(task_id)
        if task is not None and task.on_done:
            task.on_done(result)

    @Slot(object, object)
    def on_failed(self, task_id: int, failure: Failure) -> None:
        task = self._finished(task_id)
        if task is None:
            return
        if task.on_error:
            task.on_error(failure)
        else:
            log.error("background task failed:\n%s", failure.traceback)

    @Slot(object)
    def on_cancelled(self, task_id: int) -> None:
        task = self._tasks.pop(task_id, None)
        if task is not None and task.on_cancelled:
            task.on_cancelled()


def lower_thread_priority(nice: int) -> bool:
    """Raise the calling thread's nice value by ``nice`` (Linux only; True if it worked).

    On Linux the nice value is a per-thread attribute (setpriority(2) with a thread id), and
    threads inherit it from the thread that creates them. The model worker lowers its own
    priority before it imports TensorFlow, so TensorFlow's compute threads, created from it,
    inherit the lower priority too: when CPU time is short the GUI thread wins, and the
    background work still gets every idle cycle. Elsewhere this does nothing (Qt's
    QThread.Priority has no effect for normal threads on Linux either).
    """
    if nice <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except (OSError, AttributeError) as exc:
        log.info("could not lower the priority of %s: %s", threading.current_thread().name, exc)
        return False
    return True


def unfinished_threads() -> int:
    """How many worker threads were still running when their owner shut down."""
    return sum(1 for t in _UNFINISHED if t.isRunning())


class _TaskThread(QThread):
    """A QThread whose ``run`` is one long Python loop over a task queue.

    The loop keeps one Python thread state for the thread's whole life. Dispatching each task
    as a queued slot call instead lets PySide create and drop a Python thread state per call,
    which loses ``threading.local`` data between tasks; TensorFlow keeps its graph-building
    context there, and tracing a new ``tf.function`` in a later task then hung or crashed
    (measured here: SHAP's first call after a separate load task, every time).
    """

    def __init__(self, worker: Worker, name: str, nice: int = 0) -> None:
        super().__init__()
        self.setObjectName(name)
        self.worker = worker
        self.nice = nice
        self.queue: queue.SimpleQueue[Task | None] = queue.SimpleQueue()

    def run(self) -> None:  # noqa: D102 - QThread API
        lower_thread_priority(self.nice)
        while True:
            task = self.queue.get()
            if task is None:
                return
            self.worker.run(task)


class WorkerThread(QObject):
    """One long-lived ``QThread`` with one :class:`Worker`; tasks run in submission order."""

    def __init__(self, name: str, parent: QObject | None = None, nice: int = 0) -> None:
        super().__init__(parent)
        self.name = name
        self.router = TaskRouter(self)
        self.worker = Worker()
        self._thread = _TaskThread(self.worker, name, nice)
        self.worker.moveToThread(self._thread)
        self.worker.progress.connect(self.router.on_progress)
        self.worker.partial.connect(self.router.on_partial)
        self.worker.done.connect(self.router.on_done)
        self.worker.failed.connect(self.router.on_failed)
        self.worker.cancelled.connect(self.router.on_cancelled)
        self._active: dict[str, Task] = {}
        self._thread.start()

    def submit(self, task: Task) -> Task:
        """Queue ``task``; an older unfinished task in the same slot is cancelled."""
        old = self._active.get(task.slot)
        if old is not None:
            old.cancel()
        self._active[task.slot] = task
        self.router.track(task)
        self._thread.queue.put(task)
        return task

    def cancel(self, slot: str | None = None) -> None:
        """Cancel the task in ``slot`` (every task if None)."""
        for s, task in list(self._active.items()):
            if slot is None or s == slot:
                task.cancel()

    @property
    def busy(self) -> bool:
        return self.worker.busy.is_set()

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Cancel everything, stop the thread and wait for it; True if it stopped in time."""
        self.cancel()
        for task in self.router.pending():
            task.cancel()
        self._thread.queue.put(None)
        ok = self._thread.wait(timeout_ms)
        if not ok:
            # e.g. still inside `import tensorflow`, which cannot be interrupted: keep the
            # QThread object alive (destroying a running QThread aborts the process); the
            # caller ends the process without waiting for it (see app.run_app).
            log.warning("worker thread %s did not stop within %d ms", self.name, timeout_ms)
            _UNFINISHED.append(self._thread)
        return bool(ok)
