"""File ▸ Export ▸ DICOM (gui/pacs_dialogs.py DicomExportDialog) for a DICOM film: besides the
Secondary Capture and report, a Parametric Map per explanation (and the TID 1500 report
referencing it) on the film's pixel grid or at the model's input size, the choice remembered
in the settings (as ``cxr-viewer batch --dicom-pm-resolution``)."""

from __future__ import annotations

import shutil

import pytest

from cxr_viewer.core.paths import samples_dir

pytest.importorskip("highdicom", reason='the "pacs" extra is not installed')

WAIT_MS = 60_000


def _export_dialog(viewer):
    """File ▸ Export ▸ DICOM's dialog, as the menu entry opens it."""
    dlg = viewer.pacs.export()
    assert dlg is not None and dlg.isVisible()
    return dlg


def test_export_writes_parametric_maps_at_the_chosen_resolution_and_remembers_it(
    qtbot, gui, viewer, tmp_path
):
    import pydicom

    from cxr_viewer.gui.settings import Settings

    film = tmp_path / "film.dcm"
    shutil.copy(samples_dir() / "phantom_j2k.dcm", film)
    gui.open_study(qtbot, viewer, film)
    viewer.state.set_visible("gradcam", True)
    gui.wait_done(qtbot, viewer, "gradcam")
    model_shape = viewer.state.overlays["gradcam"].heatmap.heatmap.values.shape
    study = viewer.state.study
    assert model_shape != (study.rows, study.columns)
    dlg = _export_dialog(viewer)
    assert dlg.is_dicom and dlg.pm_resolution.currentData() == "source"  # the default
    dlg.pm_resolution.setCurrentIndex(dlg.pm_resolution.findData("model"))
    dlg.folder.setText(str(tmp_path / "dicom"))
    dlg.start()
    qtbot.waitUntil(lambda: "Wrote" in viewer.status.msg.text(), timeout=WAIT_MS)
    names = sorted(p.name for p in (tmp_path / "dicom").glob("*.dcm"))
    assert names == ["film_MR.dcm", "film_SR.dcm", "film_gradcam_PM.dcm", "film_gradcam_SC.dcm"]
    assert "Wrote 4 DICOM file(s)" in viewer.status.msg.text()
    pm = pydicom.dcmread(tmp_path / "dicom" / "film_gradcam_PM.dcm")
    assert (pm.Rows, pm.Columns) == model_shape  # kept at the model's input size
    assert "kept at the model's input size" in pm.DerivationDescription
    # remembered: the settings file and the next dialog
    assert Settings(viewer.settings.q.fileName()).dicom_pm_resolution == "model"
    again = _export_dialog(viewer)
    assert again is not dlg and again.pm_resolution.currentData() == "model"
    again.pm_resolution.setCurrentIndex(again.pm_resolution.findData("none"))
    again.folder.setText(str(tmp_path / "none"))
    again.start()
    qtbot.waitUntil(lambda: (tmp_path / "none" / "film_SR.dcm").exists(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: "Wrote 2 DICOM file(s)" in viewer.status.msg.text(), timeout=WAIT_MS)
    assert not list((tmp_path / "none").glob("*_PM.dcm"))
    assert viewer.settings.dicom_pm_resolution == "none"


def test_the_resolution_setting_refuses_unknown_values(tmp_path):
    from cxr_viewer.gui.settings import Settings

    settings = Settings(tmp_path / "s.ini")
    assert settings.dicom_pm_resolution == "source"
    with pytest.raises(ValueError, match="not one of source, model, none"):
        settings.dicom_pm_resolution = "film"
    settings.q.setValue("dicom_pm_resolution", "film")  # e.g. an edited settings file
    assert settings.dicom_pm_resolution == "source"
