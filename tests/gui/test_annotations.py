"""Radiologist boxes in the viewer: open a CSV, outlines on every pane, toggle, trust line."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PySide6.QtWidgets import QApplication

from cxr_viewer.core.explain.base import Heatmap
from cxr_viewer.gui.annotations import BoxOutlineItem
from cxr_viewer.gui.error_dialog import ErrorDialog
from cxr_viewer.gui.results import OverlayResult
from cxr_viewer.gui.state import ModelInfo

HEADER = ["filename", "finding", "x", "y", "w", "h", "image_width", "image_height", "patient_id"]


def _write(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        w.writerows(rows)
    return path


def _outlines(win) -> list[BoxOutlineItem]:
    return [
        item
        for view in win.views
        for item in view.scene().items()
        if isinstance(item, BoxOutlineItem)
    ]


def test_annotations_are_drawn_on_every_pane_and_toggle(qtbot, gui, window, studies_dir, tmp_path):
    win = window
    # boxes given on a 768-px copy of the 384-px phantom: they are scaled to the study
    boxes = _write(
        tmp_path / "boxes.csv",
        [
            [str(studies_dir / "phantom0.png"), "Pneumonia", 96, 192, 120, 160, 768, 768, "1"],
            [str(studies_dir / "phantom0.png"), "Effusion", 480, 400, 100, 80, 768, 768, "1"],
            ["elsewhere/phantom1.png", "Mass", 10, 10, 40, 40, 384, 384, "2"],
        ],
    )
    gui.open_study(qtbot, win, studies_dir / "phantom0.png", with_prediction=False)
    menu_texts = [a.text() for a in win.actions_.file_menu.actions()]
    assert "Open &annotations…" in menu_texts
    win.annotations.open_path(str(boxes))
    items = _outlines(win)
    assert len(items) == len(win.views) >= 2  # one per pane
    for item in items:
        assert item.isVisible()
        rects = {text: r.getRect() for r, text in item.boxes()}
        assert rects["Pneumonia"] == pytest.approx((48, 96, 60, 80))
        assert rects["Effusion"] == pytest.approx((240, 200, 50, 40))
        assert sorted(item.label_texts()) == ["Effusion", "Pneumonia"]
    assert "2 on this study" in win.status.msg.text()

    win.annotations.toggle_action.trigger()  # B
    assert not any(i.isVisible() for i in _outlines(win))
    win.annotations.toggle_action.trigger()
    assert all(i.isVisible() for i in _outlines(win))

    # a study matched by file name only (the CSV names another folder)
    gui.open_study(qtbot, win, studies_dir / "phantom1.png", with_prediction=False)
    for item in _outlines(win):
        assert [t for _, t in item.boxes()] == ["Mass"]
    # a study without boxes shows none
    gui.open_study(qtbot, win, studies_dir / "phantom2.png", with_prediction=False)
    assert not any(i.isVisible() for i in _outlines(win))

    # screenshot-size render works (what docs/ shows)
    gui.open_study(qtbot, win, studies_dir / "phantom0.png", with_prediction=False)
    qtbot.waitUntil(lambda: all(v.has_image() for v in win.views), timeout=10_000)
    assert not win.grab().isNull()


def test_trust_line_says_where_the_peak_is(qtbot, gui, window, studies_dir, tmp_path):
    win = window
    study_path = studies_dir / "phantom0.png"
    boxes = _write(
        tmp_path / "b.csv", [[str(study_path), "Pneumonia", 40, 60, 100, 100, "", "", ""]]
    )
    gui.open_study(qtbot, win, study_path, with_prediction=False)
    win.annotations.open_path(str(boxes))
    study = win.state.study
    values = np.zeros((study.rows, study.columns), np.float32)
    values[60:160, 40:140] = 1.0  # the map equals the box...
    values[300:340, 300:340] = 0.5  # ... plus a weaker blob outside: 1e4 / (1e4 + 0.5·1600)
    hm = Heatmap(values, "gradcam", 1, "pneumonia", signed=False)
    win.state.set_result("gradcam", OverlayResult.from_heatmap(hm))
    label = win.annotations._lines["gradcam"]
    assert label.text() == "peak in box: yes · 93 % of the map inside the box"
    assert not label.isHidden()

    moved = np.zeros_like(values)
    moved[300:340, 300:340] = 1.0
    win.state.set_result(
        "gradcam", OverlayResult.from_heatmap(Heatmap(moved, "gradcam", 1, "p", signed=False))
    )
    assert label.text() == "peak in box: no · 0 % of the map inside the box"
    win.state.set_result("gradcam", None)
    assert label.isHidden()

    # a model whose classes name the boxes' finding: a map of its other class is not meant to
    # lie in these boxes, so the line says so instead of "peak in box: no"
    info = dict(name="m", version="1", intended_use="research", settings={"gradcam": {}})
    win.state.set_model(ModelInfo(class_names=["normal", "PNEUMONIA"], **info))
    for index, name, text in (
        (1, "PNEUMONIA", "peak in box: yes · 93 % of the map inside the box"),
        (0, "normal", "these boxes mark Pneumonia; this map explains normal"),
    ):
        hm = Heatmap(values, "gradcam", index, name, signed=False)
        win.state.set_result("gradcam", OverlayResult.from_heatmap(hm))
        assert label.text() == text


def test_a_bad_annotation_file_is_reported_not_raised(qtbot, window, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("filename,x\na.png,1\n", encoding="utf-8")
    window.annotations.open_path(str(bad))

    def dialogs():
        return [
            w
            for w in QApplication.topLevelWidgets()
            if isinstance(w, ErrorDialog) and w.isVisible()
        ]

    qtbot.waitUntil(lambda: bool(dialogs()), timeout=5_000)
    dialog = dialogs()[0]
    assert dialog.text().startswith("Cannot read the boxes in bad.csv")
    assert "lacks the column" in dialog.informativeText()
    dialog.accept()
    assert window.isVisible() and window.annotations.current == []


def test_a_per_study_sidecar_is_picked_up_without_opening_anything(
    qtbot, gui, window, studies_dir, tmp_path
):
    import shutil

    study = tmp_path / "chest.png"
    shutil.copy(studies_dir / "phantom0.png", study)
    _write(tmp_path / "chest.boxes.csv", [["any-name.png", "Nodule", 10, 20, 30, 40, "", "", ""]])
    gui.open_study(qtbot, window, study, with_prediction=False)
    items = _outlines(window)
    assert len(items) == len(window.views)
    for item in items:
        assert item.isVisible()
        assert [(r.getRect(), t) for r, t in item.boxes()] == [((10, 20, 30, 40), "Nodule")]
