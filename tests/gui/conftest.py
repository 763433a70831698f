"""Fixtures for the viewer tests: a tiny model bundle, phantom studies, a ready main window.

Everything runs offscreen (QT_QPA_PLATFORM=offscreen, set in tests/conftest.py). The bundle
is a 64×64 two-class CNN with random weights: its predictions mean nothing, which is fine —
the tests check that the viewer shows what the model says, not what the model says.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

MODEL_READY_TIMEOUT_MS = 120_000


def phantom(n: int = 384, seed: int = 0) -> np.ndarray:
    """A chest-like phantom in [0, 1]: two lung fields, a spine, noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:n, 0:n] / n
    img = 0.15 + 0.04 * rng.standard_normal((n, n))
    for cx in (0.32, 0.68):
        img += 0.6 * np.exp(-(((x - cx) / 0.14) ** 2 + ((y - 0.5) / 0.28) ** 2))
    img += 0.3 * np.exp(-(((x - 0.5) / 0.06) ** 2))
    return np.clip(img, 0, 1)


@pytest.fixture(scope="session")
def studies_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("studies")
    for i in range(3):
        cv2.imwrite(str(d / f"phantom{i}.png"), (phantom(seed=i) * 255).astype(np.uint8))
    return d


@pytest.fixture(scope="session")
def broken_file(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("bad") / "broken.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
    return p


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """The shared tiny bundle at 64×64 RGB, written from a lower-priority thread, as the app's model worker would load it.

    If this is the process's first TensorFlow use, TensorFlow's compute threads are created
    from that thread and inherit its lower priority (see gui/worker.py), as in the app.
    """
    import threading

    from cxr_viewer.gui.worker import lower_thread_priority

    root = tmp_path_factory.mktemp("bundle") / "tiny"
    errors: list[BaseException] = []

    def run() -> None:
        lower_thread_priority(5)
        try:
            _write_tiny_bundle(root)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if errors:
        raise errors[0]
    return root


def _write_tiny_bundle(root: Path) -> None:
    from bundle_support import write_tiny_bundle

    write_tiny_bundle(
        root,
        size=64,
        channels=3,
        extra={
            "version": "0.0-test",
            "data_summary": {"train": {"normal": 10, "pneumonia": 10}},
            "threshold": 0.5,
            "positive_class": "pneumonia",
        },
    )


def make_window(qtbot, tmp_path):
    from cxr_viewer.gui.app import ensure_app  # also sets the interpreter's switch interval
    from cxr_viewer.gui.main_window import MainWindow
    from cxr_viewer.gui.settings import Settings

    ensure_app()
    win = MainWindow(Settings(tmp_path / "settings.ini"))
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    qtbot.waitExposed(win)
    return win


@pytest.fixture
def window(qtbot, tmp_path):
    """A shown main window without a model; closed (workers stopped) afterwards."""
    win = make_window(qtbot, tmp_path)
    yield win
    win.close()


@pytest.fixture
def viewer(qtbot, tmp_path, tiny_bundle):
    """A shown main window with the tiny bundle loaded and warmed up."""
    win = make_window(qtbot, tmp_path)
    win.load_model(tiny_bundle)
    qtbot.waitUntil(lambda: win.state.model is not None, timeout=MODEL_READY_TIMEOUT_MS)
    yield win
    win.close()


@pytest.fixture
def network(qtbot):
    """The PACS operations on a network worker of their own (the app's is the controller's);
    the worker is stopped afterwards."""
    from cxr_viewer.gui.network import Network
    from cxr_viewer.gui.worker import WorkerThread

    worker = WorkerThread("cxr-net-test")
    yield Network(worker)
    assert worker.shutdown(timeout_ms=30_000)


def open_study(qtbot, win, path: Path, with_prediction: bool = True) -> None:
    win.open_paths([str(path)])
    qtbot.waitUntil(
        lambda: win.state.study is not None and win.state.study.path == Path(path), timeout=20_000
    )
    if with_prediction:
        qtbot.waitUntil(lambda: win.state.prediction is not None, timeout=30_000)


def wait_done(qtbot, win, method: str, timeout: int = 60_000) -> None:
    def done() -> bool:
        ov = win.state.overlays[method]
        assert ov.status != "failed", ov.message
        return ov.status == "done" and ov.heatmap is not None and not ov.heatmap.partial

    qtbot.waitUntil(done, timeout=timeout)


def start_long_lime(qtbot, win, path: Path) -> None:
    """Open ``path`` and start a LIME run long enough (20 000 samples) to interrupt."""
    open_study(qtbot, win, path)
    win.state.set_setting("lime", "early_stop", False)
    win.state.set_setting("lime", "num_samples", 20000)
    win.state.set_visible("lime", True)


class Helpers:
    MODEL_READY_TIMEOUT_MS = MODEL_READY_TIMEOUT_MS
    make_window = staticmethod(make_window)
    open_study = staticmethod(open_study)
    wait_done = staticmethod(wait_done)
    start_long_lime = staticmethod(start_long_lime)


@pytest.fixture
def gui() -> Helpers:
    """open_study / wait_done / start_long_lime helpers (tests/ is not a package, so no relative imports)."""
    return Helpers()
