"""File ▸ Stored DICOM results… (gui/stored_results.py): Parametric Maps and a Segmentation
stored beside a film, shown as toggleable overlays with the report's legend; a map opened
alone names its image."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from cxr_viewer.core.explain.overlay import colorize, composite, robust_vmax
from cxr_viewer.core.interop import dicom_export as de
from cxr_viewer.core.interop.dicom_results import export_objects
from cxr_viewer.core.io import load_study
from cxr_viewer.core.io.display import display_image
from cxr_viewer.core.model.inference import Prediction
from cxr_viewer.core.paths import samples_dir

pytest.importorskip("highdicom", reason='the "pacs" extra is not installed')

CLASSES = ("NORMAL", "PNEUMONIA")
MODEL = de.ModelIdentity("demo-model", "2.1", CLASSES, 0.203, "PNEUMONIA")


@pytest.fixture()
def study_with_results(tmp_path):
    shutil.copy(samples_dir() / "phantom_j2k.dcm", tmp_path / "film.dcm")
    study = load_study(tmp_path / "film.dcm")
    yy, xx = np.mgrid[: study.rows, : study.columns].astype(np.float32)
    blob = np.exp(-((yy - 80) ** 2 + (xx - 170) ** 2) / (2 * 30.0**2)).astype(np.float32)
    exs = [
        de.ExplanationResult("gradcam", "PNEUMONIA", blob, False, trust={"deletion_auc": 0.2}),
        de.ExplanationResult("lime", "PNEUMONIA", blob - blob.T, True),
    ]
    pred = Prediction(np.array([0.25, 0.75]), CLASSES, 0.203, "PNEUMONIA")
    written = export_objects(study, pred, MODEL, exs, tmp_path, kinds=("pm", "sr", "seg"))
    return study, exs, written


def test_stored_maps_are_toggleable_overlays(qtbot, study_with_results):
    from cxr_viewer.gui.stored_results import StoredResultsDialog

    study, exs, _ = study_with_results
    dialog = StoredResultsDialog(study)
    qtbot.addWidget(dialog)
    assert len(dialog.map_boxes) == 2 and len(dialog.region_boxes) == 2
    assert "Report by demo-model 2.1: p(NORMAL) 0.250, p(PNEUMONIA) 0.750" in dialog.summary.text()
    assert "finding: PNEUMONIA" in dialog.summary.text()
    legend = dialog.map_boxes[0].text()
    assert "Grad-CAM evidence for PNEUMONIA" in legend and "deletion auc 0.200" in legend
    film = display_image(study)
    # the first map is shown at first, drawn as the viewer draws its own
    rgba = colorize(exs[0].values, signed=False, vmax=robust_vmax(exs[0].values))
    assert np.array_equal(dialog.composite(), composite(film, [(rgba, 0.5)]))
    dialog.map_boxes[0].setChecked(False)
    assert np.array_equal(dialog.composite(), composite(film, []))
    dialog.region_boxes[0].setChecked(True)  # the outline of the top region, in green
    outlined = dialog.composite()
    green = (outlined[..., 1] == 255) & (outlined[..., 0] == 0) & (outlined[..., 2] == 0)
    assert green.sum() > 20
    assert dialog.picture.pixmap() is not None and not dialog.picture.pixmap().isNull()


def test_a_map_opened_alone_names_its_image(qtbot, study_with_results):
    from cxr_viewer.gui.stored_results import StoredResultsDialog

    study, _, written = study_with_results
    pm_study = load_study(written.of_kind("pm")[0])
    dialog = StoredResultsDialog(pm_study)
    qtbot.addWidget(dialog)
    text = dialog.summary.text()
    assert "a Parametric Map GRADCAM of image" in text and "Open that image" in text
    assert not dialog.map_boxes


def test_png_study_and_folder_without_results(qtbot, tmp_path):
    from cxr_viewer.gui.stored_results import StoredResultsDialog

    png = StoredResultsDialog(load_study(samples_dir() / "phantom_selftest.png"))
    qtbot.addWidget(png)
    assert "not one" in png.summary.text()
    shutil.copy(samples_dir() / "phantom_jpegls.dcm", tmp_path / "alone.dcm")
    alone = StoredResultsDialog(load_study(tmp_path / "alone.dcm"))
    qtbot.addWidget(alone)
    assert "No Parametric Map or Segmentation" in alone.summary.text()


def test_the_file_menu_offers_it(qtbot, gui, tmp_path):
    win = gui.make_window(qtbot, tmp_path)  # through the fixture: see tests/gui/conftest.py
    act = win.actions_.all["stored_results"]
    (file_menu,) = [
        a.menu() for a in win.menuBar().actions() if a.text().replace("&", "") == "File"
    ]
    assert act in file_menu.actions()
    assert act.trigger() is None and win.state.study is None  # no study: a message, no dialog


def test_opening_the_film_offers_its_stored_maps_on_the_explanations_pane(
    qtbot, gui, study_with_results, tmp_path
):
    """The main window: opening a film whose folder holds its Parametric Maps lists them as
    stored (method, model, date from the object), each switched on and off on the
    Explanations pane with its own opacity, drawn as the viewer draws its own maps."""
    from PySide6.QtGui import QImage

    from cxr_viewer.core.explain.overlay import colorize, robust_vmax

    study, exs, written = study_with_results
    win = gui.make_window(qtbot, tmp_path / "settings")
    gui.open_study(qtbot, win, study.path, with_prediction=False)
    panel = win.stored_panel
    qtbot.waitUntil(lambda: len(panel.boxes) == 2, timeout=10_000)
    assert panel.isVisible()
    labels = [ov.label for ov in panel.overlays]
    for box, label in zip(panel.boxes, labels, strict=True):
        # the dock is 350 px wide: a long label is shortened on the box, whole in its tooltip
        assert box.toolTip().startswith(label + "\n")
        assert box.text() == label or "…" in box.text()
        assert box.sizeHint().width() <= 300
    import pydicom

    date = str(pydicom.dcmread(written.of_kind("pm")[0], stop_before_pixels=True).ContentDate)
    when = f"{date[:4]}-{date[4:6]}-{date[6:]}"
    assert labels == [
        f"stored Grad-CAM PNEUMONIA · model demo-model · {when}",
        f"stored LIME PNEUMONIA · model demo-model · {when}",
    ]
    assert "deletion auc 0.200" in panel.boxes[0].toolTip()
    view = win.overlay_view
    item = view.overlay_item(panel.overlays[0].name)
    assert item is not None and not item.isVisible()  # off until asked for
    win.state.set_layout("grid")
    panel.boxes[0].setChecked(True)
    assert item.isVisible() and win.state.layout == "side"  # the pane is shown
    assert view in win.shown_views()
    panel.sliders[0].setValue(25)
    assert item.opacity() == pytest.approx(0.25)
    # the Explanations pane's caption names it
    assert win.overlays.stored_captions == [f"{labels[0]} (opacity 25 %)"]
    assert view.caption == f"Explanations: {labels[0]} (opacity 25 %)"
    other = view.overlay_item(panel.overlays[1].name)
    assert other is not None and not other.isVisible() and other.opacity() == pytest.approx(0.6)
    # the pixels drawn are the stored values coloured as the viewer colours its own maps
    shown = item.pixmap().toImage().convertToFormat(QImage.Format.Format_RGBA8888)
    h, w = shown.height(), shown.width()
    drawn = np.frombuffer(shown.constBits(), np.uint8).reshape(h, shown.bytesPerLine())[:, : 4 * w]
    drawn = drawn.reshape(h, w, 4)
    expected = colorize(exs[0].values, signed=False, vmax=robust_vmax(exs[0].values))
    assert np.array_equal(drawn[..., 3], expected[..., 3])
    opaque = expected[..., 3] == 255  # (a pixmap keeps no colour where alpha is 0)
    assert opaque.any() and np.array_equal(drawn[opaque], expected[opaque])
    panel.boxes[0].setChecked(False)
    assert not item.isVisible()
    assert view.caption == "Explanations: none (G, L, S show them)"
    # another film: its folder holds no maps of it, the box hides and the overlays go
    shutil.copy(samples_dir() / "phantom_jpegls.dcm", tmp_path / "other.dcm")
    gui.open_study(qtbot, win, tmp_path / "other.dcm", with_prediction=False)
    qtbot.waitUntil(lambda: not panel.boxes, timeout=10_000)
    assert not panel.isVisible() and item.pixmap().isNull()


def test_a_stored_map_shown_has_the_legend_of_a_computed_map(
    qtbot, gui, study_with_results, tmp_path
):
    """A stored map switched on gets the colour bar a computed map's legend has (same colour
    map, same strip), its ends the real-world values of its scale, and the meaning and unit
    the Parametric Map states; switched off, the legend goes."""
    from cxr_viewer.core.explain.overlay import colorbar_image, default_colormap

    study, exs, _ = study_with_results
    win = gui.make_window(qtbot, tmp_path / "settings")
    gui.open_study(qtbot, win, study.path, with_prediction=False)
    panel = win.stored_panel
    qtbot.waitUntil(lambda: len(panel.boxes) == 2, timeout=10_000)
    view = win.overlay_view
    assert view.legends == []
    panel.boxes[1].setChecked(True)  # LIME: signed
    (legend,) = view.legends
    assert legend.title == panel.overlays[1].label
    vmax = robust_vmax(exs[1].values)
    assert (legend.low, legend.high) == (f"{-vmax:.3g}", f"{vmax:.3g}")
    meaning = "LIME attribution for PNEUMONIA, signed (+toward -against)"
    assert legend.caption == f"{meaning} · unit: no units"
    # the strip is the computed maps' legend strip for the same colour map
    assert panel.overlays[1].colormap == default_colormap(True) == "RdBu_r"
    strip = legend.strip.convertToFormat(legend.strip.Format.Format_RGBA8888)
    w, h = strip.width(), strip.height()
    pixels = np.frombuffer(strip.constBits(), np.uint8).reshape(h, strip.bytesPerLine())
    expected = colorbar_image(signed=True, colormap="RdBu_r", vertical=False, with_alpha=False)
    assert np.array_equal(pixels[:, : 4 * w].reshape(h, w, 4), expected)
    assert legend.strip is win.overlays.strip(True, "RdBu_r")  # the computed maps' own
    panel.boxes[0].setChecked(True)  # Grad-CAM too: two legends, in the panel's order
    assert [lg.title for lg in view.legends] == [ov.label for ov in panel.overlays]
    assert view.legends[0].low == "0"
    panel.boxes[1].setChecked(False)
    panel.boxes[0].setChecked(False)
    assert view.legends == []


def test_the_stored_maps_are_found_off_the_gui_thread(
    qtbot, gui, study_with_results, tmp_path, monkeypatch
):
    """Up to 400 headers and the maps' pixels are read when a film opens: on the I/O worker,
    so a slow disk or share never freezes the window."""
    import threading

    from cxr_viewer.gui.stored_overlays import StoredOverlayPanel

    on_gui_thread: list[bool] = []
    real = StoredOverlayPanel._find

    def spy(self, path):
        on_gui_thread.append(threading.current_thread() is threading.main_thread())
        return real(self, path)

    monkeypatch.setattr(StoredOverlayPanel, "_find", spy)
    study, _, _ = study_with_results
    win = gui.make_window(qtbot, tmp_path / "settings")
    gui.open_study(qtbot, win, study.path, with_prediction=False)
    qtbot.waitUntil(lambda: len(win.stored_panel.boxes) == 2, timeout=10_000)
    assert on_gui_thread and not any(on_gui_thread)


def test_the_dialog_searches_the_folder_on_the_network_worker(
    qtbot, network, study_with_results, monkeypatch
):
    """File ▸ Stored DICOM results… searches the whole folder (no file limit) on a worker: the
    dialog shows at once, says it is searching, and fills in when the search is done."""
    import threading

    from cxr_viewer.gui import stored_results
    from cxr_viewer.gui.stored_results import StoredResultsDialog

    on_gui_thread: list[bool] = []
    real = stored_results._scan

    def spy(study):
        on_gui_thread.append(threading.current_thread() is threading.main_thread())
        return real(study)

    monkeypatch.setattr(stored_results, "_scan", spy)
    study, _, _ = study_with_results
    dialog = StoredResultsDialog(study, network=network)
    qtbot.addWidget(dialog)
    assert dialog.summary.text().startswith("Searching this film's folder")
    qtbot.waitUntil(lambda: len(dialog.map_boxes) == 2, timeout=10_000)
    assert on_gui_thread == [False] and len(dialog.region_boxes) == 2
    assert "Report by demo-model 2.1" in dialog.summary.text()
    assert dialog.picture.pixmap() is not None and not dialog.picture.pixmap().isNull()
