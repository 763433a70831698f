"""File ▸ Model: the shipped bundles and recent ones, switching on the model worker (the
window keeps working), the study explained again with the new model, a failed switch shown
and undone, and each method's localization figures from the model card (or none)."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from cxr_viewer.core.model.localization_card import localization_card
from cxr_viewer.gui import model_menu as mm_module
from cxr_viewer.gui.error_dialog import ErrorDialog
from cxr_viewer.gui.main_window import shortcuts_html
from cxr_viewer.gui.state import ModelInfo

LOCALIZATION = {
    "split": "test",
    "images": 65,
    "boxes": 101,
    "prior_source": "the training boxes",
    "methods": {"gradcam": {"energy_inside": 0.41, "pointing_tolerant": 0.62}},
    "baselines": {"anatomy_prior": {"energy_inside": 0.33, "pointing_tolerant": 0.8}},
}


@pytest.fixture(scope="session")
def adult_bundle(tmp_path_factory, tiny_bundle) -> Path:
    """A second tiny bundle (32 px, grey) whose card has localization figures for Grad-CAM."""
    from bundle_support import write_tiny_bundle

    root = tmp_path_factory.mktemp("adult") / "tiny-adult"
    errors: list[BaseException] = []

    def run() -> None:
        try:
            write_tiny_bundle(
                root,
                size=32,
                channels=1,
                name="tiny adult opacity",
                extra={"version": "2", "model_card": {"localization": LOCALIZATION}},
            )
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    t = threading.Thread(target=run)  # TensorFlow used off the GUI thread, as in the app
    t.start()
    t.join()
    if errors:
        raise errors[0]
    return root


@pytest.fixture
def resources(tmp_path, monkeypatch, tiny_bundle, adult_bundle, studies_dir) -> Path:
    """A resources/ folder shipping the two tiny bundles as the paediatric and adult demos."""
    res = tmp_path / "resources"
    shutil.copytree(tiny_bundle, res / "demo_bundle")
    shutil.copytree(adult_bundle, res / "adult_bundle")
    (res / "icons").mkdir()  # not a bundle: not listed
    films = res / "adult_samples"  # the adult demo's films with their radiologists' boxes
    films.mkdir()
    for i in (1, 2):
        shutil.copy(studies_dir / f"phantom{i}.png", films / f"adult-0{i}.png")
    (films / "boxes.csv").write_text(
        "filename,finding,x,y,w,h,image_width,image_height,patient_id\n"
        "adult-01.png,Lung Opacity,40,60,100,120,384,384,p1\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(mm_module, "resources_dir", lambda: res)
    return res


def _entries(win) -> list[tuple[str, bool, bool]]:
    win.model_menu.rebuild()
    return [
        (a.text(), a.isEnabled(), a.isChecked())
        for a in win.model_menu.menu.actions()
        if a.text()  # sections have a text, separators none
    ]


def _entry(win, startswith: str):
    win.model_menu.rebuild()
    (act,) = [a for a in win.model_menu.menu.actions() if a.text().startswith(startswith)]
    return act


def _dialogs() -> list[ErrorDialog]:
    return [
        w for w in QApplication.topLevelWidgets() if isinstance(w, ErrorDialog) and w.isVisible()
    ]


def _ready(win, name: str):
    return lambda: win.state.model is not None and win.state.model.name == name


def test_switching_models_from_the_file_menu(qtbot, gui, tmp_path, resources, studies_dir):
    win = gui.make_window(qtbot, tmp_path)
    try:
        menu = win.model_menu.menu
        file_texts = [a.text() for a in win.actions_.file_menu.actions()]
        assert "&Model" in file_texts and "Open &model…" not in file_texts  # moved inside
        assert _entries(win) == [
            ("Shipped models", False, False),
            ("&1 Tiny-test", True, False),
            ("&2 Tiny adult opacity", True, False),
            ("Open the &adult sample films (2 with radiologists' boxes)", True, False),
            ("Open &model…", True, False),
            ("&Import a Keras model (.keras/.h5)…", True, False),
        ]
        # the paediatric demo, a study, Grad-CAM shown
        _entry(win, "&1").trigger()
        qtbot.waitUntil(_ready(win, "tiny-test"), timeout=gui.MODEL_READY_TIMEOUT_MS)
        win.state.set_visible("gradcam", True)
        gui.open_study(qtbot, win, studies_dir / "phantom0.png")
        gui.wait_done(qtbot, win, "gradcam")
        first_map = win.state.overlays["gradcam"].heatmap
        assert win.model_menu.checked_path() == str((resources / "demo_bundle").resolve())
        assert win.status.model_label.text().startswith("tiny-test")
        ctrl = win.overlay_panel.controls["gradcam"]
        assert ctrl.localization_text() == "" and ctrl.localization.isHidden()  # no figures

        # switch: the window stays usable while the adult model loads on the worker
        _entry(win, "&2").trigger()
        assert win.state.model is None and win.state.model_status == "loading"
        assert "Switching to tiny adult opacity" in win.status.msg.text()
        assert _entry(win, "&2").text().endswith("loading…") and _entry(win, "&2").isChecked()
        win.state.set_invert_flip(True)  # the GUI answers meanwhile
        assert win.state.invert_flip
        qtbot.waitUntil(_ready(win, "tiny adult opacity"), timeout=gui.MODEL_READY_TIMEOUT_MS)
        assert win.model_menu.checked_path() == str((resources / "adult_bundle").resolve())
        assert win.status.model_label.text() == "tiny adult opacity v2"
        # the study shown is predicted and explained again with the new model
        qtbot.waitUntil(lambda: win.state.prediction is not None, timeout=30_000)
        gui.wait_done(qtbot, win, "gradcam")
        second_map = win.state.overlays["gradcam"].heatmap
        assert second_map is not first_map
        assert win.state.result_key("gradcam")[1] == win.state.model.path  # keyed by the model
        # the card's localization figures next to the map, and none for a method without them
        assert not ctrl.localization.isHidden()
        assert ctrl.localization.text() == (
            "On radiologists' boxes of 65 test films (101 boxes): this map puts 41 % of its "
            "mass inside; a map that ignores the image, 33 %. Peak in or near a box: 62 % of films; "
            "the prior's, 80 %."
        )
        assert "the training boxes" in ctrl.localization.toolTip()
        assert win.overlay_panel.controls["lime"].localization_text() == ""
        win.state.set_visible("gradcam", False)  # shown with the map only
        assert ctrl.localization.isHidden()

        # the adult sample films open from the menu, their boxes drawn
        _entry(win, "Open the &adult sample films").trigger()
        qtbot.waitUntil(
            lambda: win.state.study is not None and win.state.study.path.name == "adult-01.png",
            timeout=20_000,
        )
        assert [b.finding for b in win.annotations.current] == ["Lung Opacity"]

        # the same model again: nothing is reloaded
        assert win.model_menu.switch(resources / "adult_bundle") is False
        assert win.state.model is not None

        # keyboard: Ctrl+Shift+M pops the menu up
        win.activateWindow()
        qtbot.keyClick(
            win,
            Qt.Key.Key_M,
            Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
        )
        qtbot.waitUntil(menu.isVisible, timeout=5_000)
        menu.hide()
    finally:
        win.close()


def test_recent_bundles_persist_and_missing_ones_are_disabled(
    qtbot, gui, tmp_path, resources, tiny_bundle
):
    win = gui.make_window(qtbot, tmp_path)
    try:
        # a bundle outside resources/ (Open model…) becomes a recent one once it loaded
        win.load_model(tiny_bundle)
        qtbot.waitUntil(_ready(win, "tiny-test"), timeout=gui.MODEL_READY_TIMEOUT_MS)
        gone = tmp_path / "gone_bundle"
        win.model_menu.recent.add(gone)  # loaded once, deleted since
        win.model_menu.recent.add(tiny_bundle)
        entries = _entries(win)
        assert ("Recent bundles", False, False) in entries
        assert ("Tiny-test", True, True) in entries  # the model in use, checked
        assert ("gone_bundle (not found)", False, False) in entries
        texts = [t for t, _, _ in entries]
        assert "Ctrl+Shift+M" in shortcuts_html(win.actions_.all.values())
        assert texts.index("Tiny-test") < texts.index("gone_bundle (not found)")  # newest first
    finally:
        win.close()
    # kept in the settings: a new window lists them
    win2 = gui.make_window(qtbot, tmp_path)
    try:
        assert win2.model_menu.recent.paths()[:2] == [str(tiny_bundle.resolve()), str(gone)]
        _entry(win2, "Forget missing").trigger()
        texts = [t for t, _, _ in _entries(win2)]
        assert "gone_bundle (not found)" not in texts and "Tiny-test" in texts
        _entry(win2, "Clear recent").trigger()
        assert "Recent bundles" not in [t for t, _, _ in _entries(win2)]
    finally:
        win2.close()


def test_a_failed_switch_is_shown_and_the_previous_model_comes_back(
    qtbot, gui, tmp_path, resources
):
    broken = tmp_path / "broken_bundle"
    broken.mkdir()
    (broken / "metadata.json").write_text(json.dumps({"name": "broken"}), encoding="utf-8")
    win = gui.make_window(qtbot, tmp_path)
    try:
        _entry(win, "&2").trigger()
        qtbot.waitUntil(_ready(win, "tiny adult opacity"), timeout=gui.MODEL_READY_TIMEOUT_MS)
        for load in (win.model_menu.switch, win.open_model_path):  # the menu, or Ctrl+M
            load(broken)
            qtbot.waitUntil(lambda: bool(_dialogs()), timeout=gui.MODEL_READY_TIMEOUT_MS)
            assert "back to tiny adult opacity" in win.status.msg.text()
            qtbot.waitUntil(_ready(win, "tiny adult opacity"), timeout=gui.MODEL_READY_TIMEOUT_MS)
            assert win.model_menu.checked_path() == str((resources / "adult_bundle").resolve())
            for d in _dialogs():
                d.done(0)
        assert len(win.reporter.shown) == 2  # each failure shown once
    finally:
        win.close()


def test_localization_line_only_from_a_card_that_has_it(qtbot, window):
    win = window
    ctrl = win.overlay_panel.controls["gradcam"]
    base = dict(name="m", version="1", class_names=["a", "b"], intended_use="research")
    card = localization_card({"model_card": {"localization": LOCALIZATION}})
    win.state.set_model(ModelInfo(**base, settings={"gradcam": {}}, localization=card))
    win.state.set_visible("gradcam", True)
    assert not ctrl.localization.isHidden()
    assert "41 % of its mass inside; a map that ignores the image, 33 %" in ctrl.localization.text()
    win.state.set_model(ModelInfo(**base, settings={"gradcam": {}}))  # a card without figures
    assert ctrl.localization.isHidden() and ctrl.localization.text() == ""


def test_localization_figures_only_next_to_the_scored_class(qtbot, window):
    """The boxes scored class b's maps: explaining a, the line says so instead of the figures."""
    win = window
    ctrl = win.overlay_panel.controls["gradcam"]
    base = dict(name="m", version="1", class_names=["a", "b"], intended_use="research")
    card = localization_card({"model_card": {"localization": {**LOCALIZATION, "classes": ["b"]}}})
    win.state.set_model(ModelInfo(**base, settings={"gradcam": {}}, localization=card))
    win.state.set_visible("gradcam", True)
    win.state.set_target_class(1)
    assert "41 % of its mass inside" in ctrl.localization.text()
    assert "the training boxes" in ctrl.localization.toolTip()
    win.state.set_target_class(0)
    assert ctrl.localization.text() == (
        "Localization on radiologists' boxes was measured for b maps; this map explains a."
    )
    assert not ctrl.localization.isHidden() and ctrl.localization.toolTip() == ""
