"""The first five minutes: a window that fits 1280 × 720, a first launch that shows a real film
with its Grad-CAM map, an export that follows the layout on screen, one name in the title."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QPoint, QRect, Qt
from PySide6.QtWidgets import QDockWidget, QToolBar, QToolButton

from cxr_viewer.core.paths import FIRST_LAUNCH_SAMPLE, demo_bundle_dir, samples_dir
from cxr_viewer.gui.state import METHODS, ModelInfo

ROOT = Path(__file__).resolve().parents[2]
SMALL_SCREEN = (1280, 720)  # 1366 × 768 less a panel, or 1920 × 1080 at 150 %


def _demo_model_info() -> ModelInfo:
    """What the status bar and model panel show for the demo bundle (its longest texts)."""
    meta = json.loads((demo_bundle_dir() / "metadata.json").read_text(encoding="utf-8"))
    return ModelInfo(
        name=meta["name"],
        version=str(meta["version"]),
        class_names=list(meta["class_names"]),
        intended_use=meta["intended_use"],
        device="CPU",
        forward_path="onnxruntime (CPU), batch 16",
        settings={m: {} for m in METHODS},
    )


def _inside(win, widget) -> bool:
    """``widget`` is shown and lies wholly inside the window."""
    top_left = widget.mapTo(win, QPoint(0, 0))
    return widget.isVisible() and win.rect().contains(QRect(top_left, widget.size()))


def _crowd(win) -> None:
    """Everything the window can show at once: the demo model's name, every map, busy work."""
    win.state.set_model(_demo_model_info())
    for m in METHODS:
        win.state.set_visible(m, True)  # the grid's most panes: the original + one per method
    win.status.on_busy("lime", 0.4, "LIME: 400 of 1000 samples, stops early when stable")
    win.state.set_hide_patient(True)  # the privacy badge too


def test_minimum_size_fits_a_1280x720_screen_with_every_control_reachable(qtbot, window):
    win = window
    _crowd(win)
    qtbot.wait(50)
    for size in (win.minimumSizeHint(), win.minimumSize()):
        assert size.width() <= SMALL_SCREEN[0] and size.height() <= SMALL_SCREEN[1], size
    win.resize(*SMALL_SCREEN)
    qtbot.waitUntil(lambda: (win.width(), win.height()) == SMALL_SCREEN)
    qtbot.wait(50)
    assert (win.width(), win.height()) == SMALL_SCREEN  # nothing pushed it wider
    status = win.status
    for w in (status.device_button, status.cancel_button, status.privacy_badge):
        assert _inside(win, w), w
    # long texts are cut with "…", the whole text in the tooltip
    assert status.model_label.text().endswith("MobileNet 0.25) v1")
    assert status.model_label.toolTip() == status.model_label.text()
    # the right panel scrolls: its last control and the intended-use warning can be reached
    dock = win.findChild(QDockWidget, "ExplainDock")
    assert _inside(win, dock)
    scroll = dock.widget()
    last = win.overlay_panel.controls[METHODS[-1]]
    for target in (win.model_panel.warning, last):
        scroll.ensureWidgetVisible(target)
        qtbot.wait(20)
        assert not target.visibleRegion().isEmpty(), target
    assert "research and demonstration only" in win.model_panel.warning.text().lower()
    # every method is one click away on the toolbar, whatever the side panel shows
    toolbar = win.findChild(QToolBar, "MainToolbar")
    for m in METHODS:
        button = toolbar.widgetForAction(win.actions_[f"toggle_{m}"])
        assert _inside(win, button) and button.text() == win.state.overlays[m].label
        before = win.state.overlays[m].visible
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        assert win.state.overlays[m].visible is not before and button.isChecked() is not before

    # at its narrowest every toolbar action is reachable: shown, or behind the » button
    qtbot.wait(100)  # the layout the clicks changed
    narrowest = win.minimumSizeHint().width()
    win.resize(narrowest, SMALL_SCREEN[1])
    qtbot.waitUntil(lambda: win.width() == narrowest)
    qtbot.wait(50)
    buttons = [toolbar.widgetForAction(a) for a in toolbar.actions() if not a.isSeparator()]
    hidden = [b for b in buttons if b is not None and not b.isVisible()]
    extension = toolbar.findChild(QToolButton, "qt_toolbar_ext_button")
    assert buttons and (not hidden or (extension is not None and extension.isVisible()))
    assert all(_inside(win, b) for b in buttons if b is not None and b.isVisible())
    assert _inside(win, status.device_button) and _inside(win, dock)


CHILD = r"""
import json, os, sys
from cxr_viewer.gui.app import ensure_app
from cxr_viewer.gui.main_window import MainWindow
from cxr_viewer.gui.settings import Settings
from PySide6.QtCore import QPoint, QRect
sys.path.insert(0, sys.argv[1])
from test_first_launch import _crowd
app = ensure_app()
win = MainWindow(Settings(os.environ["CXR_LENS_SETTINGS"]))
win.show()
_crowd(win)
for _ in range(5):
    app.processEvents()
hint, minimum = win.minimumSizeHint(), win.minimumSize()
win.resize(1280, 720)
for _ in range(5):
    app.processEvents()
b = win.status.device_button
from PySide6.QtWidgets import QScrollArea
(dock,) = [s for s in win.findChildren(QScrollArea)
           if s.widget() is not None and s.widget().isAncestorOf(win.overlay_panel)]
print("RESULT " + json.dumps({
    "dock": [dock.widget().minimumSizeHint().width(), dock.viewport().width()],
    "dpr": win.devicePixelRatio(), "hint": [hint.width(), hint.height()],
    "min": [minimum.width(), minimum.height()], "size": [win.width(), win.height()],
    "device_inside": win.rect().contains(QRect(b.mapTo(win, QPoint(0, 0)), b.size())),
}))
win.close()
"""


@pytest.mark.parametrize("scale", ["1", "1.5", "2"])
def test_minimum_size_fits_1280x720_logical_pixels_at_high_dpi(tmp_path, scale):
    """In a process of its own, with the app's theme (the tests' shared QApplication has none):
    the window fits 1280×720 logical pixels, and the right dock's panels fit its fixed width
    (it scrolls vertically only, so anything wider is clipped: a long checkbox text once cut
    every line of the model card, the prediction and the method rows)."""
    env = dict(
        os.environ,
        QT_QPA_PLATFORM="offscreen",
        QT_SCALE_FACTOR=scale,
        CXR_LENS_SETTINGS=str(tmp_path / "settings.ini"),
    )
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    out = json.loads(lines[-1][7:])
    assert out["dpr"] == pytest.approx(float(scale))
    for key in ("hint", "min"):
        assert out[key][0] <= 1280 and out[key][1] <= 720, out
    assert out["size"] == [1280, 720] and out["device_inside"], out
    assert out["dock"][0] <= out["dock"][1], out


def test_title_names_the_app_once_and_the_status_says_the_version(qtbot, gui, window, tmp_path):
    from PySide6.QtWidgets import QApplication

    win = window
    assert win.windowTitle() == "CXR Lens — not for diagnosis"
    study = samples_dir() / FIRST_LAUNCH_SAMPLE
    gui.open_study(qtbot, win, study, with_prediction=False)
    assert win.windowTitle() == f"CXR Lens — {study.name} — not for diagnosis"
    # X11 and Windows append the application's display name to every title: none is set, so the
    # title bar says "CXR Lens" once
    assert QApplication.applicationDisplayName() == QApplication.applicationName()
    win.state.set_hide_patient(True)
    assert win.windowTitle() == "CXR Lens — study — not for diagnosis"
    win.state.set_model(_demo_model_info())
    assert win.status.model_label.text() == (
        "CXR Lens demo: NORMAL vs PNEUMONIA (paediatric chest X-rays, MobileNet 0.25) v1"
    )


@pytest.mark.slow
def test_a_first_launch_shows_a_real_pneumonia_film_with_its_gradcam_map(qtbot, gui, tmp_path):
    """No paths, fresh settings: the demo bundle explains a real film in the grid layout."""
    from cxr_viewer.gui.app import start

    win = gui.make_window(qtbot, tmp_path)
    try:
        assert win.settings.fresh
        start(win, [], None, False)  # what `cxr-viewer` runs once the window is shown
        names = [p.name for p in win.state.studies]
        real = [n for n in names if n.startswith("real-")]
        assert real and names[: len(real)] == real  # real films first, then the phantoms
        assert any(n.startswith("phantom") for n in names[len(real) :])
        qtbot.waitUntil(lambda: win.state.study is not None, timeout=30_000)
        assert win.state.study.path.name == FIRST_LAUNCH_SAMPLE
        assert win.state.layout == "grid"
        assert [m for m in METHODS if win.state.overlays[m].visible] == ["gradcam"]
        qtbot.waitUntil(lambda: win.state.model is not None, timeout=gui.MODEL_READY_TIMEOUT_MS)
        gui.wait_done(qtbot, win, "gradcam")
        assert win.state.prediction.predicted_class == "PNEUMONIA"
        assert re.fullmatch(r"Grad-CAM ready in (\d+ ms|\d+\.\d s)", win.status.msg.text())
        assert win.shown_views() == [win.original_view, win.panes["gradcam"]]
        item = win.panes["gradcam"].overlay_item("gradcam")
        assert item is not None and item.isVisible() and not item.pixmap().isNull()
        assert win.panes["gradcam"].isVisible()
        assert win.status.model_label.text().endswith(" v1")
        # the other methods are one key away
        qtbot.keyClick(win, win.actions_["toggle_lime"].shortcut()[0].key())
        assert win.state.overlays["lime"].visible
    finally:
        win.close()


def _two_maps(qtbot, gui, win, studies_dir) -> None:
    gui.open_study(qtbot, win, studies_dir / "phantom0.png")
    for m in ("gradcam", "occlusion"):
        win.state.set_visible(m, True)
        gui.wait_done(qtbot, win, m)


def test_export_follows_the_layout_on_screen(qtbot, gui, viewer, studies_dir, tmp_path):
    from cxr_viewer.gui.report import annotated_panels, layers_image

    win = viewer
    _two_maps(qtbot, gui, win, studies_dir)
    win.state.set_focus_method("occlusion")
    labels = {m: win.state.overlays[m].label for m in ("gradcam", "occlusion")}
    expected = {
        "grid": (["Original", "gradcam", "occlusion"], [[], ["gradcam"], ["occlusion"]]),
        "side": (["Original", "Explanations"], [[], ["gradcam", "occlusion"]]),
        "single": (["occlusion"], [["occlusion"]]),
    }
    for layout, (titles, legends) in expected.items():
        win.state.set_layout(layout)
        snap = win.snapshot()
        image, panels = annotated_panels(snap)
        assert len(panels) == len(titles), layout
        for panel, title, legend in zip(panels, titles, legends, strict=True):
            assert panel.title.startswith(labels.get(title, title)), (layout, panel.title)
            assert [ly.method for ly in panel.legends] == legend
            # the panel's own pixels (magnified by an integer factor), never resampled
            x, y, w, h = panel.box
            drawn = image[y : y + h, x : x + w]
            k = w // snap.study.columns
            wanted = layers_image(snap, list(panel.legends))
            np.testing.assert_array_equal(drawn[::k, ::k], wanted)
            assert drawn.std(axis=2).max() > 0 or not legend  # the coloured map is in it
        right = max(p.box[0] + p.box[2] for p in panels)
        left = min(p.box[0] for p in panels)
        assert left == image.shape[1] - right  # centred: no dark band on one side
        assert image[max(p.box[1] + p.box[3] for p in panels) :].std() > 0  # the text band

    # the menu's export writes the same picture (side by side: the original + the composite)
    win.state.set_layout("side")
    png = tmp_path / "side.png"
    win.export("png", png)
    qtbot.waitUntil(lambda: png.exists() and not win.controller.io_worker.busy, timeout=60_000)
    written = cv2.imread(str(png), cv2.IMREAD_COLOR)[..., ::-1]
    np.testing.assert_array_equal(written, annotated_panels(win.snapshot())[0])


def test_a_second_launch_is_not_a_first_launch_and_keeps_the_maps_shown(tmp_path):
    from cxr_viewer.gui.settings import Settings
    from cxr_viewer.gui.state import ViewerState

    path = tmp_path / "settings.ini"
    first = Settings(path)
    assert first.fresh
    state = ViewerState()
    state.set_visible("lime", True)
    state.set_layout("side")
    first.save_state(state)
    first.sync()
    again = Settings(path)
    assert not again.fresh
    restored = ViewerState()
    again.restore_state(restored)
    assert [m for m in METHODS if restored.overlays[m].visible] == ["lime"]
    assert restored.layout == "side"
