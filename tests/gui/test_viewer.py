"""The viewer end to end (offscreen): open → predict → explain, overlays, cancel, errors."""

from __future__ import annotations

import sys
import time

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt, QTimer
from PySide6.QtWidgets import QApplication

from cxr_viewer.gui.error_dialog import ErrorDialog
from cxr_viewer.gui.state import METHODS


def _dialogs() -> list[ErrorDialog]:
    return [
        w for w in QApplication.topLevelWidgets() if isinstance(w, ErrorDialog) and w.isVisible()
    ]


def test_open_sample_study_shows_prediction(qtbot, gui, viewer, studies_dir):
    win = viewer
    gui.open_study(qtbot, win, studies_dir / "phantom0.png")
    pred = win.state.prediction
    assert pred.class_names == ("normal", "pneumonia")
    np.testing.assert_allclose(pred.probabilities.sum(), 1.0, rtol=1e-5)
    shown = win.prediction_panel.probabilities_text()
    assert shown["pneumonia"] == f"{pred.probabilities[1] * 100:.1f} %"
    assert pred.predicted_class.upper() in win.prediction_panel.headline.text()
    assert pred.rule_text() in win.prediction_panel.headline.text()
    assert "0.50" in win.prediction_panel.threshold_label.text()
    assert "not for diagnosis" in win.model_panel.warning.text().lower()
    assert "0.0-test" in win.model_panel.text.text()
    device_text = win.status.device_label.text()
    assert device_text.startswith("Model runs on: CPU") or "GPU" in device_text
    assert f"forward: {win.state.model.forward_path}" in device_text and ", batch " in device_text
    assert win.original_view.has_image() and win.overlay_view.has_image()
    assert win.metadata_panel.values()["File"] == "phantom0.png"


def test_toggle_and_fade_each_overlay_without_recomputing(qtbot, gui, viewer, studies_dir):
    win = viewer
    gui.open_study(qtbot, win, studies_dir / "phantom1.png")
    session, view, presenter = win.controller.session, win.overlay_view, win.overlays
    win.state.set_setting("lime", "num_samples", 100)
    for method in METHODS:
        win.actions_[f"toggle_{method}"].trigger()  # the keyboard shortcut's action
        assert win.state.overlays[method].visible
        gui.wait_done(qtbot, win, method)
        item = view.overlay_item(method)
        assert item is not None and item.isVisible() and not item.pixmap().isNull()
        calls, colorized = session.explain_calls, presenter.colorize_calls

        slider = win.overlay_panel.controls[method].opacity
        for value in (0, 20, 85):
            slider.setValue(value)
            assert item.opacity() == pytest.approx(value / 100)
        assert win.state.overlays[method].opacity == pytest.approx(0.85)

        win.actions_[f"toggle_{method}"].trigger()  # off
        assert not item.isVisible()
        win.actions_[f"toggle_{method}"].trigger()  # on again: from the cache
        qtbot.wait(50)
        assert item.isVisible() and win.state.overlays[method].status == "done"
        assert session.explain_calls == calls, "fading/toggling recomputed the explanation"
        assert presenter.colorize_calls == colorized, "fading recolourised the overlay"

        # trust figures are computed with the map and shown next to it
        trust = win.state.overlays[method].heatmap.heatmap.trust
        assert 0.0 <= trust["deletion_auc"] <= 1.0 and 0.0 <= trust["insertion_auc"] <= 1.0
        controls = win.overlay_panel.controls[method]
        assert "del " in controls.figures.text()  # own line, with a tooltip saying what it means
        assert "Lower is better" in controls.figures.toolTip()

    # a different class is a different explanation; coming back to the first is cached
    calls = session.explain_calls
    other = 1 - win.state.target_class
    first = win.state.target_class
    win.state.set_target_class(other)
    for method in METHODS:  # every visible overlay is recomputed for the new class
        gui.wait_done(qtbot, win, method)
    assert session.explain_calls == calls + len(METHODS)
    calls = session.explain_calls
    win.state.set_target_class(first)
    for method in METHODS:
        gui.wait_done(qtbot, win, method)
    qtbot.wait(100)
    assert session.explain_calls == calls


def test_cancel_stops_a_running_lime_promptly(qtbot, gui, viewer, studies_dir):
    win = viewer
    gui.start_long_lime(qtbot, win, studies_dir / "phantom2.png")
    qtbot.waitUntil(lambda: win.state.overlays["lime"].status == "running", timeout=30_000)
    qtbot.waitUntil(lambda: win.state.overlays["lime"].progress > 0.0, timeout=30_000)
    assert win.status.cancel_button.isVisible()
    qtbot.mouseClick(win.status.cancel_button, Qt.MouseButton.LeftButton)
    # a hang guard, not a speed assertion: 20 000 samples take minutes, so stopping well
    # inside this limit (and with status "cancelled", below) means the cancel was honoured
    qtbot.waitUntil(lambda: not win.controller.model_worker.busy, timeout=60_000)
    lime = win.state.overlays["lime"]
    assert lime.status == "cancelled" and not lime.visible and lime.heatmap is None
    assert not win.status.cancel_button.isVisible()
    # the worker is free again
    win.state.set_visible("gradcam", True)
    gui.wait_done(qtbot, win, "gradcam", timeout=20_000)


@pytest.mark.perf
def test_event_loop_never_stalls_while_explaining(qtbot, gui, viewer, studies_dir):
    """Longest gap between 5 ms timer ticks while LIME runs (with progressive maps) < 50 ms.

    Model loading and warm-up happen before the measurement (the ``viewer`` fixture waits for
    them), as they do in the app behind the "warming up" status. A stall the app causes (a
    long handler in the GUI thread, a worker holding the interpreter lock) shows in every run;
    a machine that is busy with other processes can starve any process now and then. So the
    explanation runs up to three times (new seed: really recomputed) and the best run counts.
    """
    win = viewer
    gui.open_study(qtbot, win, studies_dir / "phantom0.png")
    win.state.set_setting("lime", "early_stop", False)
    win.state.set_setting("lime", "num_samples", 400)
    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.timeout.connect(tick)
    timer.start(5)
    runs = []
    for seed in range(3):
        win.state.set_visible("lime", False)
        win.state.set_setting("lime", "seed", 100 + seed)
        qtbot.wait(100)
        gaps.clear()
        last[0] = time.perf_counter()
        calls = win.controller.session.explain_calls
        win.state.set_visible("lime", True)
        gui.wait_done(qtbot, win, "lime", timeout=60_000)
        assert win.controller.session.explain_calls == calls + 1
        assert len(gaps) > 20, "the explanation finished before the loop could be measured"
        runs.append((max(gaps), float(np.percentile(gaps, 99)), len(gaps)))
        if runs[-1][0] < 0.050:
            break
    timer.stop()
    report = "; ".join(
        f"{n} ticks, longest {w * 1000:.1f} ms, p99 {p * 1000:.1f} ms" for w, p, n in runs
    )
    print(f"\nevent loop while LIME runs: {report}")
    best = min(w for w, _, _ in runs)
    assert best < 0.050, f"event loop stalled in every run: {report}"


def test_corrupt_file_shows_error_dialog_and_app_stays_up(
    qtbot, gui, viewer, broken_file, studies_dir
):
    win = viewer
    win.open_paths([str(broken_file)])
    qtbot.waitUntil(lambda: bool(_dialogs()), timeout=20_000)
    dialog = _dialogs()[0]
    assert dialog.text().startswith("Cannot open broken.png")
    assert dialog.informativeText()  # the plain explanation
    assert "Traceback" in dialog.detailedText()  # folded away behind "Show Details…"
    assert win.isVisible() and win.state.study is None
    dialog.accept()
    gui.open_study(qtbot, win, studies_dir / "phantom0.png")


def test_bad_bundle_is_reported_and_app_keeps_working(qtbot, gui, window, tmp_path, studies_dir):
    win = window
    not_a_bundle = tmp_path / "empty_bundle"
    not_a_bundle.mkdir()
    win.load_model(not_a_bundle)
    qtbot.waitUntil(lambda: bool(_dialogs()), timeout=20_000)
    assert "not a CXR Lens model bundle" in _dialogs()[0].text()
    assert win.state.model_status == "failed" and win.state.model is None
    _dialogs()[0].accept()
    gui.open_study(qtbot, win, studies_dir / "phantom0.png", with_prediction=False)
    assert win.state.prediction is None  # no model: no invented predictions
    assert "could not be loaded" in win.prediction_panel.headline.text()


@pytest.mark.qt_no_exception_capture
def test_unexpected_exception_is_shown_and_app_keeps_running(qtbot, gui, window):
    win = window
    win.reporter.install()
    try:

        def boom() -> None:
            raise RuntimeError("a bug in a slot")

        QTimer.singleShot(0, boom)
        qtbot.waitUntil(lambda: bool(_dialogs()), timeout=5_000)
        dialog = _dialogs()[0]
        assert dialog.text() == "Something went wrong inside CXR Lens"
        assert "a bug in a slot" in dialog.informativeText()
        assert "RuntimeError" in dialog.detailedText()
        assert win.isVisible()
        dialog.accept()
    finally:
        win.reporter.uninstall()
    assert sys.excepthook is not win.reporter._excepthook


def test_views_zoom_pan_window_level_in_sync(qtbot, gui, window, studies_dir):
    win = window
    gui.open_study(qtbot, win, studies_dir / "phantom0.png", with_prediction=False)
    win.actions_["layout_side"].trigger()  # the original next to the composite
    a, b = win.original_view, win.overlay_view
    qtbot.waitUntil(lambda: a.isVisible() and b.isVisible())
    a.zoom_by(2.0)
    assert b.zoom == pytest.approx(a.zoom)
    a.horizontalScrollBar().setValue(a.horizontalScrollBar().maximum() // 2)
    assert b.horizontalScrollBar().value() == a.horizontalScrollBar().value()
    a.fit()
    assert b.zoom == pytest.approx(a.zoom)

    before = win.state.effective_window
    vp = a.viewport()
    qtbot.mousePress(vp, Qt.MouseButton.RightButton, pos=QPoint(100, 100))
    from PySide6.QtGui import QMouseEvent

    move = QMouseEvent(
        QMouseEvent.Type.MouseMove,
        QPointF(160, 80),
        QPointF(160, 80),
        Qt.MouseButton.NoButton,
        Qt.MouseButton.RightButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(vp, move)
    qtbot.mouseRelease(vp, Qt.MouseButton.RightButton, pos=QPoint(160, 80))
    after = win.state.effective_window
    assert after.width > before.width and after.center > before.center
    assert "C " in win.status.window_label.text()

    win.actions_["invert"].trigger()
    assert win.state.invert_flip
    names = [act.text() for act in win.actions_.preset_menu.actions()]
    assert names[0] == "File default" and any("Lung" in n for n in names)
    win.actions_["reset"].trigger()
    assert win.state.window is None and not win.state.invert_flip

    win.actions_["single"].trigger()
    assert not a.isVisible() and b.isVisible()
    win.actions_["single"].trigger()
    assert a.isVisible()


def test_next_previous_by_keyboard_and_thumbnails(qtbot, gui, window, studies_dir):
    win = window
    win.open_paths([str(studies_dir)])
    qtbot.waitUntil(lambda: win.state.study is not None, timeout=20_000)
    assert win.state.index == 0 and win.study_list.count() == 3
    qtbot.keyClick(win, Qt.Key.Key_PageDown)
    qtbot.waitUntil(lambda: win.state.index == 1 and win.state.study.path.name == "phantom1.png")
    qtbot.keyClick(win, Qt.Key.Key_N)
    qtbot.waitUntil(lambda: win.state.index == 2)
    qtbot.keyClick(win, Qt.Key.Key_PageUp)
    qtbot.waitUntil(lambda: win.state.index == 1)
    qtbot.waitUntil(
        lambda: all(
            win.study_list.has_thumbnail(studies_dir / f"phantom{i}.png") for i in range(3)
        ),
        timeout=20_000,
    )
    assert len(win.settings.recent_files()) == 1


def test_export_png_and_one_page_pdf(qtbot, gui, viewer, studies_dir, tmp_path):
    win = viewer
    gui.open_study(qtbot, win, studies_dir / "phantom0.png")
    win.state.set_visible("gradcam", True)
    gui.wait_done(qtbot, win, "gradcam")
    png, pdf = tmp_path / "view.png", tmp_path / "report.pdf"
    win.export("png", png)
    win.export("pdf", pdf)
    qtbot.waitUntil(lambda: png.exists() and pdf.exists(), timeout=60_000)
    qtbot.waitUntil(lambda: not win.controller.io_worker.busy, timeout=60_000)
    img = cv2.imread(str(png), cv2.IMREAD_COLOR)
    rows, cols = win.state.study.rows, win.state.study.columns
    from cxr_viewer.gui.report import annotated_panels, composite_image, export_scale

    # the grid on screen: the original and the Grad-CAM pane, side by side
    _image, panels = annotated_panels(win.snapshot())
    assert [p.title.split(" ·")[0] for p in panels] == ["Original", "Grad-CAM"]
    k = export_scale(2 * cols)  # small images are magnified by an integer factor
    x, y, w, h = panels[1].box
    assert (w, h) == (cols * k, rows * k) and img.shape[0] > y + h  # panels + annotation band
    # the composite's own pixels, each a k × k block, never resampled
    top = img[y : y + h : k, x : x + w : k, ::-1]
    np.testing.assert_array_equal(top, composite_image(win.snapshot()))
    assert img[y : y + h, x : x + w].std(axis=2).max() > 0  # the coloured overlay is in it
    assert img[y + h :].std() > 0  # the band has text and a colour bar
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    import re

    assert len(re.findall(rb"/Type\s*/Page\b(?!s)", data)) == 1


def test_hide_patient_fields(qtbot, gui, window, tmp_path):
    from pathlib import Path

    from cxr_viewer.core.io.study import Study, Window

    win = window
    study = Study(
        Path("x.dcm"),
        "dicom",
        np.zeros((32, 32), np.float32),
        Window(0, 1),
        metadata={"PatientName": "Doe^Jane", "PatientID": "123", "Modality": "CR"},
    )
    win.state.set_study(study)
    assert win.metadata_panel.values()["PatientName"] == "Doe^Jane"
    win.actions_["hide_patient"].trigger()
    values = win.metadata_panel.values()
    assert values["PatientName"] == "(hidden)" and values["PatientID"] == "(hidden)"
    assert values["Modality"] == "CR"


def test_newer_request_supersedes_older(qtbot, gui, viewer, studies_dir):
    """Changing the class while LIME runs cancels that run; only the new class's map lands."""
    win = viewer
    gui.start_long_lime(qtbot, win, studies_dir / "phantom1.png")
    qtbot.waitUntil(lambda: win.state.overlays["lime"].progress > 0.0, timeout=30_000)
    old_task = win.controller.explanations.task_of("lime")
    assert old_task is not None
    first = win.state.target_class
    win.state.set_setting("lime", "num_samples", 300)  # a newer request for LIME
    win.state.set_target_class(1 - first)
    assert old_task.token.cancelled
    gui.wait_done(qtbot, win, "lime", timeout=60_000)
    hm = win.state.overlays["lime"].heatmap.heatmap
    assert hm.target_class == 1 - first and hm.settings["samples_used"] <= 300


def test_large_image_draws_preview_then_full_size(qtbot, gui, window, tmp_path):
    """A 16-bit 3000×2400 radiograph: screen-size copy at once, full size from the I/O worker."""
    from cxr_viewer.gui.imaging import PREVIEW_MAX_SIDE

    big = tmp_path / "big16.png"
    ramp = np.linspace(0, 65535, 3000, dtype=np.float64)[None, :].repeat(2400, axis=0)
    cv2.imwrite(str(big), ramp.astype(np.uint16))
    win = window
    gui.open_study(qtbot, win, big, with_prediction=False)
    item = win.original_view.image_item()
    assert max(item.pixmap().width(), item.pixmap().height()) <= PREVIEW_MAX_SIDE
    qtbot.waitUntil(lambda: item.pixmap().width() == 3000, timeout=20_000)
    # both views show the study at the same scene size, whatever the pixmap resolution
    rect = win.overlay_view.image_item().sceneBoundingRect()
    assert (round(rect.width()), round(rect.height())) == (3000, 2400)
    # a window/level change redraws the preview at once and the full size again later
    win.state.adjust_window(0.0, -10000.0)
    assert item.pixmap().width() <= PREVIEW_MAX_SIDE
    qtbot.waitUntil(lambda: item.pixmap().width() == 3000, timeout=20_000)
