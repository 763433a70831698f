"""Radiologist boxes shipped beside sample films (a ``boxes.csv`` in the films' folder, as the
adult samples carry theirs; RSNA's own column names too): drawn on every pane without opening
anything, toggled with the overlay panel's check box and B, following zoom and pan."""

from __future__ import annotations

import shutil

import pytest
from PySide6.QtCore import QRectF, Qt

from cxr_viewer.gui.annotations import BoxOutlineItem


def _outlines(win) -> list[BoxOutlineItem]:
    return [
        item
        for view in win.views
        for item in view.scene().items()
        if isinstance(item, BoxOutlineItem)
    ]


@pytest.fixture
def films(tmp_path, studies_dir):
    folder = tmp_path / "adult"
    folder.mkdir()
    for name in ("phantom0.png", "phantom1.png"):
        shutil.copy(studies_dir / name, folder / name)
    return folder


def test_boxes_csv_beside_the_films_is_drawn_and_toggled(qtbot, gui, window, films):
    # the table of the RSNA challenge: every film listed, a film without a box has no x
    (films / "boxes.csv").write_text(
        "patientId,x,y,width,height,Target\n"
        "phantom0,40,60,100,120,1\n"
        "phantom0,220,80,90,100,1\n"
        "phantom1,,,,,0\n",
        encoding="utf-8",
    )
    win = window
    box = win.annotations.checkbox
    assert box is not None and not box.isEnabled()  # no study, no boxes
    gui.open_study(qtbot, win, films / "phantom0.png", with_prediction=False)
    items = _outlines(win)
    assert len(items) == len(win.views)
    for item in items:
        assert item.isVisible()
        assert sorted(r.getRect() for r, _ in item.boxes()) == [
            pytest.approx((40, 60, 100, 120)),
            pytest.approx((220, 80, 90, 100)),
        ]
        assert item.label_texts() == ["Lung Opacity", "Lung Opacity"]
    assert box.isEnabled() and box.isChecked()
    assert box.text() == "Radiologist boxes (B): 2 on this film"

    # the check box hides them on every pane, B shows them again; both stay in step
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton)
    assert not box.isChecked() and not win.annotations.toggle_action.isChecked()
    assert not any(i.isVisible() for i in _outlines(win))
    win.activateWindow()
    qtbot.keyClick(win, Qt.Key.Key_B)
    assert box.isChecked() and all(i.isVisible() for i in _outlines(win))

    # boxes are in image pixels: they follow the view's zoom and pan
    view = win.original_view
    qtbot.waitUntil(view.has_image, timeout=10_000)
    rect = QRectF(40, 60, 100, 120)
    before = view.mapFromScene(rect).boundingRect()
    view.zoom_by(2.0)
    after = view.mapFromScene(rect).boundingRect()
    assert after.width() == pytest.approx(2 * before.width(), rel=0.05)
    view.horizontalScrollBar().setValue(view.horizontalScrollBar().value() + 30)
    moved = view.mapFromScene(rect).boundingRect()
    assert moved.width() == after.width() and moved.x() != after.x()

    # a film of the same folder without a box: nothing drawn, the check box says so
    gui.open_study(qtbot, win, films / "phantom1.png", with_prediction=False)
    assert not any(i.isVisible() for i in _outlines(win))
    assert not box.isEnabled() and box.text() == "Radiologist boxes (B)"


def test_the_shared_box_format_with_relative_names_matches_by_file_name(qtbot, gui, window, films):
    (films / "boxes.csv").write_text(
        "filename,finding,x,y,w,h,image_width,image_height,patient_id\n"
        "images/phantom1.png,Lung Opacity,96,192,120,160,768,768,p1\n",
        encoding="utf-8",
    )
    gui.open_study(qtbot, window, films / "phantom1.png", with_prediction=False)
    for item in _outlines(window):
        assert item.isVisible()
        # given on a 768-px copy of the 384-px film: scaled to the film
        assert [r.getRect() for r, _ in item.boxes()] == [pytest.approx((48, 96, 60, 80))]
    assert window.annotations.checkbox.text() == "Radiologist boxes (B): 1 on this film"
