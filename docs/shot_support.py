"""What the documentation's screenshot scripts share: the viewer's main window at a given size
(settings from ``CXR_LENS_SETTINGS``, which each script points at a temporary file) and a wait
that keeps Qt's event loop turning until a condition holds."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any


def open_window(width: int, height: int) -> tuple[Any, Any]:
    """(the QApplication, a shown MainWindow of ``width`` × ``height``)."""
    from cxr_viewer.gui.app import ensure_app
    from cxr_viewer.gui.main_window import MainWindow
    from cxr_viewer.gui.settings import Settings

    app = ensure_app()
    win = MainWindow(Settings(os.environ["CXR_LENS_SETTINGS"]))
    win.resize(width, height)
    win.show()
    return app, win


def wait_until(app: Any, cond: Callable[[], object], timeout: float, what: str) -> None:
    """Process events until ``cond()`` is true; exit with a message after ``timeout`` s."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise SystemExit(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.01)
