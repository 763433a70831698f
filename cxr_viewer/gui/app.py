"""Start the desktop viewer: ``cxr-viewer [PATH ...] [--model BUNDLE | --no-model]``.

Order matters for start-up time: the window is built and shown first (no TensorFlow import,
which takes ~4 s), then the studies open on the I/O worker and the model loads on the model
worker behind a "loading / warming up" status. With no paths the sample studies open (real
films first; a first launch also shows Grad-CAM, :func:`open_samples`); with no bundle the app
still opens and says there is no model — it never invents predictions.

``--quit-after SECONDS`` and ``--quit-when-ready`` close the window by themselves (the same
clean shutdown as the user closing it: settings saved, work cancelled, worker threads stopped)
so an installed or frozen app can be smoke-tested without a person at the screen.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, QtMsgType, qInstallMessageHandler
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication

from cxr_viewer.core.paths import demo_bundle_dir, first_launch_sample, sample_files

from .main_window import MainWindow
from .settings import Settings
from .theme import apply_theme

log = logging.getLogger("cxr_viewer")
qt_log = logging.getLogger("cxr_viewer.qt")

SWITCH_INTERVAL_S = 0.001
MODEL_LOAD_DELAY_MS = 3000


def _qt_message(kind, context, text: str) -> None:
    """Qt's own messages go to the log: shown with --verbose, errors always, else kept quiet.

    Qt warns on stderr about things a user cannot act on ("This plugin does not support
    propagateSizeHints()", xcb/Wayland details); a radiologist's terminal stays quiet.
    """
    from cxr_viewer.core.model.model_io import runtime_config

    if kind in (QtMsgType.QtCriticalMsg, QtMsgType.QtFatalMsg):
        level = logging.ERROR
    else:
        level = logging.WARNING if runtime_config().verbose else logging.DEBUG
    category = getattr(context, "category", None) or "default"
    qt_log.log(level, "[%s] %s", category, text)


def ensure_app(argv: list[str] | None = None) -> QApplication:
    """The QApplication (created once, high-DPI aware, themed)."""
    # The GUI thread shares the interpreter lock with the model worker. A shorter switch
    # interval (default 5 ms) hands it back to the GUI thread sooner while the worker runs
    # Python code (LIME's sampling loop); throughput cost measured below 2 %.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    app = QApplication.instance()
    if app is None:
        qInstallMessageHandler(_qt_message)
        # fractional scale factors (125 %, 150 %) are drawn as such, not rounded
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
            Qt.HighDpiScaleFactorRoundingPolicy.PassThrough
        )
        app = QApplication(argv if argv is not None else [sys.argv[0]])
        app.setApplicationName("CXR Lens")
        app.setOrganizationName("CXR Lens")
        # no applicationDisplayName: X11 and Windows append it to every window title, and the
        # main window's title already starts with the name (MainWindow.window_title)
        apply_theme(app)
    return app  # type: ignore[return-value]


def start(window: MainWindow, paths: list[str], model: str | None, no_model: bool) -> None:
    """What happens right after the window is shown: open studies, then load the model.

    The model starts loading once the first image is drawn (or after
    :data:`MODEL_LOAD_DELAY_MS` at the latest): importing TensorFlow holds the interpreter lock
    in long stretches, and the radiologist should see the image first.
    """
    opened = False
    if paths:
        window.open_paths([str(p) for p in paths])
        opened = True
    else:
        opened = open_samples(window, first_launch=window.settings.fresh)
    if no_model:
        window.state.set_model_status("none", "Started with --no-model: no predictions.")
        return
    bundle = Path(model) if model else demo_bundle_dir()
    if not model and not bundle.exists():
        window.state.set_model_status(
            "none",
            f"No demo model bundle at {bundle}. Open one with File ▸ Model ▸ Open model… "
            "(predictions and explanations need a model).",
        )
        return
    window.state.set_model_status("loading", f"Loading {bundle.name} after the first image…")
    fired = [False]

    def load_once(*_args) -> None:
        if not fired[0]:
            fired[0] = True
            window.load_model(bundle)

    if opened:
        window.display.firstImageDrawn.connect(load_once)
        window.controller.loadFailed.connect(load_once)
        QTimer.singleShot(MODEL_LOAD_DELAY_MS, load_once)
    else:
        load_once()


def open_samples(window: MainWindow, first_launch: bool = False) -> bool:
    """Open the sample studies, real films first, on a pneumonia film the demo model explains.

    On a first launch (nothing saved yet) the image area is also set to the grid with Grad-CAM
    shown, so the map is computed and painted as soon as the model is ready; the other methods
    are one key (L, S, O) or checkbox away. Returns False when there are no samples.
    """
    files = sample_files()
    if not files:
        return False
    if first_launch:
        window.state.set_layout("grid")
        window.state.set_visible("gradcam", True)
    window.controller.open_paths([str(f) for f in files], current=first_launch_sample(files))
    return True


def build(
    args: argparse.Namespace, settings: Settings | None = None
) -> tuple[QApplication, MainWindow]:
    """Create the app and the window, show it and schedule :func:`start` (used by tests too)."""
    os.environ.setdefault("TQDM_DISABLE", "1")  # lime's tqdm: no stderr in a windowed app
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    settings = settings or Settings()
    if getattr(args, "device", None) is None:
        # the saved device choice (``--device`` on the command line was applied before)
        from cxr_viewer.core.model.model_io import configure

        configure(
            settings.device,
            getattr(args, "gpu_memory", None) or settings.gpu_memory_mb,
            bool(getattr(args, "verbose", False)),
            bool(getattr(args, "mixed_precision", False)) or settings.mixed_precision,
        )
    app = ensure_app()
    window = MainWindow(settings)
    window.reporter.install()
    window.show()
    # Everything imported so far lives as long as the app: move it out of the garbage
    # collector's way, so its full collections (which hold the GIL) stay short while the
    # workers import TensorFlow, shap and lime (see core.model.model_io.gc_paused).
    gc.freeze()
    paths = list(getattr(args, "paths", None) or [])
    QTimer.singleShot(
        0,
        lambda: start(
            window, paths, getattr(args, "model", None), bool(getattr(args, "no_model", False))
        ),
    )
    return app, window


def schedule_quit(
    window: MainWindow, after_s: float | None = None, when_ready: bool = False
) -> list[int]:
    """Close ``window`` by itself: after ``after_s`` seconds and/or once the model is settled.

    With ``when_ready`` the window closes as soon as the model is ready (exit code 0) or failed
    to load or there is none to load (exit code 1); if ``after_s`` passes first, that also
    counts as not ready (1). With ``after_s`` alone the window closes after that time with exit
    code 0. The close is the window's own (``MainWindow.closeEvent`` stops the workers), always
    run from the event loop, never from inside a state callback.

    Returns
    -------
    list[int]
        A one-element holder of the exit code decided so far (0 until a failure is seen).
    """
    code = [0]
    closing = [False]

    def close(exit_code: int, why: str) -> None:
        if closing[0]:
            return
        closing[0] = True
        code[0] = exit_code
        log.info("closing by itself: %s", why)
        QTimer.singleShot(0, close_and_quit)

    def close_and_quit() -> None:
        window.close()
        app = QApplication.instance()
        if app is not None:  # an open error dialog would otherwise keep the app running
            app.quit()

    if when_ready:

        def on_model(*_args) -> None:
            status = window.state.model_status
            if status == "ready":
                close(0, "the model is ready")
            elif status in ("failed", "none"):
                close(1, f"no model is ready ({status}: {window.state.model_message})")

        window.state.events.model.connect(on_model)
    if after_s is not None:
        message = "the model was not ready in time" if when_ready else f"{after_s:g} s passed"
        timer = QTimer(window)
        timer.setSingleShot(True)
        timer.timeout.connect(lambda: close(1 if when_ready else 0, message))
        timer.start(max(1, round(after_s * 1000)))
    return code


def run_app(args: argparse.Namespace) -> int:
    """Entry point from :mod:`cxr_viewer.cli`: run the viewer until its window closes.

    Before any window exists, :func:`~.platform_check.check_display` makes sure Qt can open
    one; if not, the message names the missing packages and the headless alternatives and the
    exit code is 3 (never Qt's abort).
    """
    from .platform_check import DisplayUnavailable, check_display, message

    try:
        check_display()
    except DisplayUnavailable as exc:
        sys.stderr.write(message(exc))
        return 3
    from .binding_check import BrokenQtBinding, check_qt_binding

    try:
        check_qt_binding()
    except BrokenQtBinding as exc:
        sys.stderr.write(f"cxr-viewer: {exc}\n")
        return 3
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app, window = build(args)
    after_s = getattr(args, "quit_after", None)
    when_ready = bool(getattr(args, "quit_when_ready", False))
    quit_code = schedule_quit(window, after_s, when_ready) if after_s or when_ready else [0]
    code = int(app.exec()) or quit_code[0]
    from .worker import unfinished_threads

    if unfinished_threads():
        # a worker is stuck in uninterruptible work (importing TensorFlow): end the process
        # now instead of hanging or aborting in interpreter shutdown
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
