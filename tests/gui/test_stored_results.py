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
