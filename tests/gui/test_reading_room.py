"""The reading room (offscreen): layouts and linked panes, trust verdicts, the loading state,
elided text, friendly errors, and the display check that runs before Qt opens a window."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtWidgets import QApplication

from cxr_viewer.core.errors import CorruptFileError
from cxr_viewer.core.evaluate.trust import margin_figures
from cxr_viewer.core.explain.base import Heatmap
from cxr_viewer.gui.platform_check import (
    APT_LINE,
    DisplayUnavailable,
    check_display,
    package_for,
    platform_plan,
)
from cxr_viewer.gui.presenter import MOST_FAITHFUL
from cxr_viewer.gui.results import OverlayResult
from cxr_viewer.gui.state import METHODS

ROOT = Path(__file__).resolve().parents[2]


def _right_drag(qtbot, view, start=(100, 100), end=(160, 80)) -> None:
    from PySide6.QtGui import QMouseEvent

    vp = view.viewport()
    qtbot.mousePress(vp, Qt.MouseButton.RightButton, pos=QPoint(*start))
    move = QMouseEvent(
        QMouseEvent.Type.MouseMove,
        QPointF(*end),
        QPointF(*end),
        Qt.MouseButton.NoButton,
        Qt.MouseButton.RightButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(vp, move)
    qtbot.mouseRelease(vp, Qt.MouseButton.RightButton, pos=QPoint(*end))


# ---------------------------------------------------------------------- layouts
def test_grid_mode_has_one_pane_per_shown_method_with_its_own_legend(
    qtbot, gui, viewer, studies_dir
):
    win = viewer
    assert win.state.layout == "grid"  # the default
    gui.open_study(qtbot, win, studies_dir / "phantom0.png")
    assert win.shown_views() == [win.original_view]
    win.state.set_setting("lime", "num_samples", 100)
    for m in ("gradcam", "lime"):
        win.actions_[f"toggle_{m}"].trigger()
        gui.wait_done(qtbot, win, m)
    panes = [win.original_view, win.panes["gradcam"], win.panes["lime"]]
    assert win.shown_views() == panes
    qtbot.waitUntil(lambda: all(v.isVisible() for v in panes))
    assert not win.overlay_view.isVisible() and not win.panes["shap"].isVisible()
    # each pane carries only its own map, its legend and its caption
    for m in ("gradcam", "lime"):
        pane = win.panes[m]
        assert pane.overlay_item(m) is not None and pane.overlay_item(m).isVisible()
        other = "lime" if m == "gradcam" else "gradcam"
        assert pane.overlay_item(other) is None
        assert [lg.title for lg in pane.legends] == [win.state.overlays[m].label]
        assert "relative, scaled to this image" in pane.legends[0].caption
        assert pane.caption.startswith(win.state.overlays[m].label)
        assert "opacity 35 %" in pane.caption
    assert win.panes["gradcam"].legends[0].low == "weak"  # sequential
    assert win.panes["lime"].legends[0].low.startswith("against")  # diverging
    # defaults: perceptual colormaps, 35 % opacity, a middle SHAP layer
    assert win.state.overlays["gradcam"].colormap == "inferno"
    assert win.state.overlays["lime"].colormap in ("PuOr_r", "RdBu_r")
    assert all(win.state.overlays[m].opacity == pytest.approx(0.35) for m in METHODS)
    shap = win.state.overlays["shap"]
    assert shap.layers == ["conv_a", "pool_a"] and shap.layer == "pool_a"


def test_panes_are_linked_for_zoom_pan_and_window(qtbot, gui, window, studies_dir):
    win = window
    gui.open_study(qtbot, win, studies_dir / "phantom0.png", with_prediction=False)
    win.state.set_visible("gradcam", True)
    win.state.set_visible("shap", True)
    views = [win.original_view, win.panes["gradcam"], win.panes["shap"]]
    qtbot.waitUntil(lambda: all(v.isVisible() for v in views))
    a = views[0]
    a.zoom_by(2.0)
    assert all(v.zoom == pytest.approx(a.zoom) for v in views)
    views[2].zoom_by(1.25)  # from any pane
    assert all(v.zoom == pytest.approx(views[2].zoom) for v in views)
    a.horizontalScrollBar().setValue(a.horizontalScrollBar().maximum() // 2)
    assert all(v.horizontalScrollBar().value() == a.horizontalScrollBar().value() for v in views)
    before = win.state.effective_window
    _right_drag(qtbot, views[1])  # window/level from a method pane
    after = win.state.effective_window
    assert after.width > before.width and after.center > before.center
    keys = {v.image_item().pixmap().cacheKey() for v in views}
    assert len(keys) == 1  # every pane shows the same (re-windowed) picture


def test_keyboard_switches_layouts_and_the_single_view_follows_the_method(
    qtbot, gui, window, studies_dir
):
    win = window
    gui.open_study(qtbot, win, studies_dir / "phantom0.png", with_prediction=False)
    win.state.set_visible("gradcam", True)
    win.state.set_visible("lime", True)
    qtbot.keyClick(win, Qt.Key.Key_V)
    assert win.state.layout == "side"
    qtbot.waitUntil(lambda: win.original_view.isVisible() and win.overlay_view.isVisible())
    assert [lg.title for lg in win.overlay_view.legends] == []  # no maps computed: no legend
    assert "Grad-CAM (opacity 35 %)" in win.overlay_view.caption
    qtbot.keyClick(win, Qt.Key.Key_V)
    assert win.state.layout == "single"
    assert win.shown_views() == [win.panes["lime"]]  # the method switched on last
    qtbot.keyClick(win, Qt.Key.Key_M)
    assert win.shown_views() == [win.panes["gradcam"]]
    qtbot.waitUntil(lambda: win.panes["gradcam"].isVisible() and not win.original_view.isVisible())
    qtbot.keyClick(win, Qt.Key.Key_V)
    assert win.state.layout == "grid"
    win.actions_["layout_side"].trigger()
    assert win.state.layout == "side" and win.actions_["layout_side"].isChecked()
    win.actions_["layout_grid"].trigger()
    assert win.state.layout == "grid" and not win.actions_["layout_side"].isChecked()
    from cxr_viewer.gui.main_window import shortcuts_html

    table = shortcuts_html(win.actions_.all.values())
    for text in ("Next layout", "Grid: one pane per method", "Single method, full view"):
        assert text in table
    assert "white-space:nowrap" in table  # keys never run into their descriptions


# ---------------------------------------------------------------------- trust
def _result(method: str, trust: dict, settings: dict | None = None) -> OverlayResult:
    values = np.linspace(-1, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    signed = method != "gradcam"
    hm = Heatmap(
        values if signed else np.abs(values),
        method,
        1,
        "pneumonia",
        signed,
        settings=settings or {},
        trust=trust,
    )
    return OverlayResult.from_heatmap(hm, "RdBu_r" if signed else "inferno")


def test_verdict_badges_in_the_panel_and_the_panes(qtbot, window):
    win = window
    st = win.state
    drops = {"p": 0.9, "drop_top": 0.41, "drop_random": 0.05, "drop_fraction": 0.2}
    drops |= margin_figures(6.0, 3.0, np.array([5.5, 5.6, 5.4, 5.5]))
    st.set_visible("gradcam", True)
    st.set_result(
        "gradcam", _result("gradcam", {**drops, "deletion_auc": 0.2, "insertion_auc": 0.7})
    )
    st.set_visible("lime", True)
    st.set_result(
        "lime",
        _result(
            "lime",
            {
                "p": 0.9,
                "drop_top": -0.02,
                "drop_random": 0.05,
                "samples": 2000.0,
                **margin_figures(6.0, 6.4, np.array([5.5, 5.6])),
            },
            {"samples_used": 2000, "converged": False, "early_stop": True},
        ),
    )
    st.set_visible("shap", True)
    st.set_result(
        "shap",
        _result(
            "shap",
            {**drops, "completeness_gap": 0.004, "f_x": 2.0, "f_background": 0.5},
        ),
    )
    controls = win.overlay_panel.controls
    assert controls["gradcam"].verdict_texts() == [
        (
            "good",
            "faithful: removing its top 20 % beats random by 2.50 log-odds (+2.37 to +2.63)",
        )
    ]
    lime_not_converged = (
        "warn",
        "LIME did not converge at 2,000 samples: raise Samples or use fewer superpixels",
    )
    assert controls["lime"].verdict_texts() == [
        ("bad", "not faithful: removing its top 20 % raises the log-odds by 0.40"),
        lime_not_converged,
    ]
    assert ("good", "SHAP sums to the score within 0.4 %") in controls["shap"].verdict_texts()
    badge = controls["lime"].badges[1]
    assert "two halves of the samples" in badge.toolTip()  # the tooltip explains the verdict
    assert controls["gradcam"].figures.text() == "del 0.20 / ins 0.70 · margin +2.50"
    # the same verdicts inside each method's pane
    qtbot.waitUntil(lambda: win.panes["lime"].isVisible())
    assert lime_not_converged in win.panes["lime"].badges
    # the most faithful map on this film (gradcam and shap tie; the first in the grid wins) is
    # marked in its pane's title, and the first pane says whether the maps agree
    assert win.panes["gradcam"].caption.startswith(MOST_FAITHFUL)
    assert not win.panes["shap"].caption.startswith(MOST_FAITHFUL)
    agreement = [t for lvl, t in win.panes["gradcam"].badges if t.startswith("Agreement: ")]
    assert len(agreement) == 1 and ("agree" in agreement[0] or "elsewhere" in agreement[0])
    assert not any(t.startswith("Agreement") for _, t in win.panes["lime"].badges)
    # the agreement layer on the composite view: where at least 2 shown maps put their top 10 %
    assert win.overlays.agreement_shown is None
    win.overlay_panel.agreement.setChecked(True)
    assert st.agreement_k == 2
    shown = win.overlays.agreement_shown
    assert shown is not None and shown.shape == (64, 64) and shown.max() > 0
    assert win.overlay_view.overlay_item("agreement").isVisible()
    win.overlay_panel.agreement.setChecked(False)
    assert win.overlays.agreement_shown is None
    # a partial map has no verdict yet
    partial = _result("gradcam", drops)
    partial.heatmap.partial = True
    st.set_result("gradcam", partial)
    assert controls["gradcam"].verdict_texts() == []


def test_real_maps_get_faithfulness_verdicts(qtbot, gui, viewer, studies_dir):
    win = viewer
    gui.open_study(qtbot, win, studies_dir / "phantom2.png")
    win.state.set_visible("gradcam", True)
    gui.wait_done(qtbot, win, "gradcam")
    trust = win.state.overlays["gradcam"].heatmap.heatmap.trust
    assert {"p", "logit", "margin", "margin_lo", "margin_hi"} <= set(trust)
    texts = win.overlay_panel.controls["gradcam"].verdict_texts()
    # measured on the log-odds: faithful, inconclusive or not faithful, never "not measurable"
    assert len(texts) == 1 and "20 %" in texts[0][1] and "log-odds" in texts[0][1]
    assert texts[0][0] in ("good", "warn", "bad")


# ---------------------------------------------------------------------- states and messages
def test_loading_model_state_with_progress(qtbot, window, tiny_bundle):
    win = window
    seen: list[tuple[str, float, str]] = []
    win.state.events.model.connect(
        lambda: seen.append(
            (win.state.model_status, win.state.model_progress, win.model_panel.shown_text())
        )
    )
    win.load_model(tiny_bundle)
    panel = win.model_panel
    assert panel.headline.text() == "Loading model…"
    assert panel.progress.isVisible()
    assert "No model loaded" not in panel.shown_text()
    assert win.status.model_label.text() == "Loading model…"
    assert win.overlay_panel.controls["gradcam"].status.text() == "waits for the model"
    qtbot.waitUntil(lambda: win.state.model is not None, timeout=120_000)
    loading = [s for s in seen if s[0] in ("loading", "warming up")]
    assert any(p > 0 for _, p, _ in loading), "no progress was shown while loading"
    assert all("No model loaded" not in text for _, _, text in loading)
    assert [p for _, p, _ in loading] == sorted(p for _, p, _ in loading)
    # the session's explicit phases: loading first, then warming up (never back)
    statuses = [status for status, _, _ in loading]
    assert statuses[0] == "loading" and "warming up" in statuses
    assert statuses == sorted(statuses, key=("loading", "warming up").index)
    assert not panel.progress.isVisible() and not panel.headline.isVisible()
    assert "tiny-test" in panel.text.text()


def test_cancel_message_uses_the_method_label(qtbot, gui, viewer, studies_dir):
    win = viewer
    gui.start_long_lime(qtbot, win, studies_dir / "phantom1.png")
    qtbot.waitUntil(lambda: win.state.overlays["lime"].status == "running", timeout=30_000)
    with qtbot.waitSignal(win.controller.message, timeout=5_000) as blocker:
        win.controller.cancel_explanations()
    assert blocker.args == ["Cancelled: LIME"]
    qtbot.waitUntil(lambda: not win.controller.model_worker.busy, timeout=60_000)


def test_long_text_is_elided_with_a_tooltip_and_the_window_keeps_its_size(qtbot, window):
    from cxr_viewer.gui.panels.base import ElidedLabel

    win = window
    size = win.size()
    long = "Loading TensorFlow and the model from a very long path " + "/deep" * 60
    win.status.show_message(long)
    win.status.on_busy("model", 0.3, long)
    qtbot.wait(50)
    assert win.size() == size  # long texts never widen the window
    for label in (win.status.msg, win.status.work_label):
        assert label.text() == long and label.toolTip() == long
        assert label.is_elided() and label.shown_text().endswith("…")
    lone = ElidedLabel("short")
    qtbot.addWidget(lone)
    lone.resize(300, 20)
    assert not lone.is_elided() and lone.shown_text() == "short"
    assert win.study_list.textElideMode() == Qt.TextElideMode.ElideMiddle
    win.status.on_busy("model", -1.0, "")
    assert not win.status.work_label.isVisible()


def test_unreadable_marks_survive_a_rebuild(qtbot, window, broken_file, studies_dir):
    win = window
    win.open_paths([str(broken_file)])
    qtbot.waitUntil(lambda: win.study_list.is_unreadable(broken_file), timeout=20_000)
    for d in [w for w in QApplication.topLevelWidgets() if w.objectName() == "ErrorDialog"]:
        d.close()
    win.open_paths([str(studies_dir / "phantom0.png")])  # the list is rebuilt
    qtbot.waitUntil(lambda: win.study_list.count() == 2, timeout=20_000)
    texts = [win.study_list.item(i).text() for i in range(win.study_list.count())]
    assert "broken.png (unreadable)" in texts


def test_privacy_badge_transfer_syntax_name_and_friendly_errors(qtbot, window):
    from cxr_viewer.core.io.study import Study, Window
    from cxr_viewer.gui.error_dialog import describe
    from cxr_viewer.gui.panels.info import study_rows

    win = window
    study = Study(
        Path("x.dcm"),
        "dicom",
        np.zeros((32, 32), np.float32),
        Window(0, 1),
        transfer_syntax="1.2.840.10008.1.2.4.90",
        metadata={"PatientName": "Doe^Jane"},
    )
    rows = dict(study_rows(study, False))
    assert rows["Transfer syntax"] == "JPEG 2000 Image Compression (Lossless Only)"
    win.state.set_study(study)
    assert not win.status.privacy_badge.isVisible()
    win.actions_["hide_patient"].trigger()
    assert win.status.privacy_badge.isVisible() and win.metadata_panel.privacy.isVisible()
    assert "study" in win.windowTitle() and "x.dcm" not in win.windowTitle()

    exc = CorruptFileError(
        "Cannot open x.dcm",
        "it is a DICOM file but its data set could not be parsed (ValueError: Expected "
        "explicit VR, but found implicit VR - using implicit VR for decoding)",
        "Ask for the file again.",
    )
    headline, text = describe(exc)
    assert headline == "Cannot open x.dcm"
    assert text.startswith("It is a DICOM file but its data set could not be parsed.")
    assert "ValueError" not in text and "VR" not in text
    dialog = win.reporter.report(exc, "Traceback (most recent call last): …")
    assert "Library message: ValueError: Expected explicit VR" in dialog.detailedText()
    dialog.accept()


# ---------------------------------------------------------------------- display check
def test_missing_xcb_libraries_name_the_apt_packages():
    env = {"DISPLAY": ":0"}
    with pytest.raises(DisplayUnavailable) as info:
        check_display(env, lambda: ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"])
    exc = info.value
    assert "libxcb-icccm.so.4" in exc.why and "libxcb-keysyms.so.1" in exc.why
    assert "sudo apt-get install -y libxcb-icccm4 libxcb-keysyms1" in exc.hint
    assert "--self-test" in exc.hint and "QT_QPA_PLATFORM=offscreen" in exc.hint
    assert APT_LINE in exc.hint
    check_display(env, lambda: [], lambda _display: True)  # nothing missing: no error
    assert package_for("libxkbcommon-x11.so.0") == "libxkbcommon-x11-0"
    assert package_for("libfoo.so.3") == "libfoo3"


def test_a_display_nobody_answers_is_reported():
    from cxr_viewer.gui.platform_check import x_server_answers

    if x_server_answers(":987") is None:
        pytest.skip("libxcb is not installed")
    assert x_server_answers(":987") is False  # no X server on display 987
    with pytest.raises(DisplayUnavailable, match="no X server answers at DISPLAY=:987"):
        check_display({"DISPLAY": ":987"}, lambda: [])


def test_no_display_and_platform_rules():
    with pytest.raises(DisplayUnavailable, match="there is no display"):
        check_display({}, lambda: [])
    check_display({"QT_QPA_PLATFORM": "offscreen"}, lambda: ["libxcb.so.1"])  # not needed
    check_display({"WAYLAND_DISPLAY": "wayland-0"}, lambda: ["libxcb-icccm.so.4"])
    session = {"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "w", "DISPLAY": ":0"}
    assert platform_plan(session) == ["wayland", "xcb"]
    check_display(session, lambda: ["libxcb-icccm.so.4"])  # Qt uses Wayland here
    assert platform_plan({**session, "XDG_CURRENT_DESKTOP": "GNOME"}) == ["xcb"]
    with pytest.raises(DisplayUnavailable, match="Wayland"):
        check_display({"QT_QPA_PLATFORM": "wayland"}, lambda: [])


def test_the_app_exits_with_the_message_instead_of_a_qt_abort(tmp_path):
    """A real start without any display: exit code 3 and the message, never Qt's abort (134)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM", "XDG_SESSION_TYPE")
    }
    env["PYTHONPATH"] = str(ROOT)
    env["CXR_LENS_SETTINGS"] = str(tmp_path / "settings.ini")
    proc = subprocess.run(
        [sys.executable, "-m", "cxr_viewer", "--no-model"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "cannot open its window: there is no display" in proc.stderr
    assert "QT_QPA_PLATFORM=offscreen" in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------------- defaults, exports, noise
def test_the_bundle_may_choose_the_default_shap_layer(tmp_path, tiny_bundle):
    import json
    import shutil

    from cxr_viewer.core.explain.registry import create_explainer, explainer_class
    from cxr_viewer.core.model.bundle import open_bundle
    from cxr_viewer.core.model.inference import Classifier

    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    clf = Classifier(open_bundle(copy))
    assert create_explainer("shap", clf).default_layer() == "pool_a"  # the middle offered
    meta = json.loads((copy / "metadata.json").read_text())
    meta["shap_default_layer"] = "conv_a"
    (copy / "metadata.json").write_text(json.dumps(meta))
    clf = Classifier(open_bundle(copy))
    assert create_explainer("shap", clf).default_layer() == "conv_a"
    assert explainer_class("gradcam").display.colormap == "inferno"
    assert explainer_class("shap").display.opacity == pytest.approx(0.35)


def test_pdf_report_wraps_and_states_threshold_colour_bars_and_inversion(
    qtbot, gui, viewer, studies_dir, monkeypatch, tmp_path
):
    from matplotlib.figure import Figure

    from cxr_viewer.gui.report import PDF_WRAP, save_pdf

    win = viewer
    gui.open_study(qtbot, win, studies_dir / "phantom0.png")
    for m in ("gradcam", "shap"):
        win.state.set_visible(m, True)
        gui.wait_done(qtbot, win, m)
    win.state.set_invert_flip(True)
    figures: list[Figure] = []
    real_savefig = Figure.savefig

    def keep(self, path, *args, **kwargs):
        figures.append(self)
        return real_savefig(self, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    out = save_pdf(win.snapshot(), tmp_path / "report.pdf")
    assert out.read_bytes().startswith(b"%PDF")
    fig = figures[0]
    texts = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        texts += [t.get_text() for t in ax.texts] + [ax.get_title(), ax.get_xlabel()]
    everything = "\n".join(texts)
    assert "threshold 0.50" in everything and "pneumonia if p ≥ 0.50" in everything
    assert "inverted by the reader" in everything
    assert everything.count("relative, scaled to this image") == 2  # one colour bar per map
    assert everything.count("faithful") >= 2  # a faithfulness verdict per map in the report
    body = [t.get_text() for t in fig.texts if t.get_fontfamily() == ["monospace"]]
    assert body and all(len(line) <= PDF_WRAP for t in body for line in t.split("\n"))


def test_qt_warnings_stay_off_the_terminal(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT))
    env["CXR_LENS_SETTINGS"] = str(tmp_path / "settings.ini")
    proc = subprocess.run(
        [sys.executable, "-m", "cxr_viewer", "--no-model", "--quit-after", "1.5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "propagateSizeHints" not in proc.stderr
