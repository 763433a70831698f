"""Finding results again (core/interop/dicom_overlays.py) and writing them per image
(core/interop/dicom_results.py): a study folder holding the film, its Parametric Maps, Segmentation
and report, another film's map, a damaged file and unrelated files."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from cxr_viewer.core.interop import dicom_export as de
from cxr_viewer.core.interop.dicom_overlays import describe_derived, results_for_image
from cxr_viewer.core.interop.dicom_results import export_objects
from cxr_viewer.core.io import load_study
from cxr_viewer.core.model.inference import Prediction
from cxr_viewer.core.paths import samples_dir

pytest.importorskip("highdicom", reason='the "pacs" extra is not installed')

CLASSES = ("NORMAL", "PNEUMONIA")
MODEL = de.ModelIdentity("demo-model", "2.1", CLASSES, 0.203, "PNEUMONIA")
PRED = Prediction(np.array([0.25, 0.75]), CLASSES, 0.203, "PNEUMONIA")


def _explanations(study):
    yy, xx = np.mgrid[: study.rows, : study.columns].astype(np.float32)
    blob = np.exp(-((yy - 80) ** 2 + (xx - 170) ** 2) / (2 * 30.0**2)).astype(np.float32)
    return [
        de.ExplanationResult("gradcam", "PNEUMONIA", blob, False, trust={"deletion_auc": 0.2}),
        de.ExplanationResult(
            "lime", "PNEUMONIA", blob - blob.T, True, trust={"insertion_auc": 0.7}
        ),
    ]


def test_a_study_folder_shows_the_results_of_its_film(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    shutil.copy(samples_dir() / "phantom_j2k.dcm", folder / "film.dcm")
    study = load_study(folder / "film.dcm")
    exs = _explanations(study)
    written = export_objects(
        study, PRED, MODEL, exs, folder, kinds=("pm", "sr", "seg"), model_sha256="cd" * 32
    )
    assert [written.kinds[p] for p in written.files] == ["pm", "seg", "pm", "seg", "sr"]
    other = load_study(samples_dir() / "phantom_jpegls.dcm")
    export_objects(
        other, PRED, MODEL, _explanations(other)[:1], folder, kinds=("pm",), stem="other"
    )
    (folder / "notes.txt").write_text("not DICOM")
    broken = folder / "broken_PM.dcm"
    broken.write_bytes(written.of_kind("pm")[0].read_bytes()[:4000])  # cut inside the pixels

    uid = str(pydicom.dcmread(folder / "film.dcm", stop_before_pixels=True).SOPInstanceUID)
    found = results_for_image([folder], uid)
    assert sorted(m.method for m in found.maps) == ["gradcam", "lime"]
    assert [r.label for r in found.regions] == [
        "Grad-CAM PNEUMONIA top 10%",
        "LIME PNEUMONIA top 10%",
    ]
    (report,) = found.reports
    assert report.sha256 == "cd" * 32 and report.findings == ["PNEUMONIA"]
    assert [name for name, _ in found.problems] == ["broken_PM.dcm"]
    gradcam = next(m for m in found.maps if m.method == "gradcam")
    assert found.figures_of(gradcam) == {"deletion auc": 0.2}
    legend = found.legend(gradcam)
    assert "Grad-CAM evidence for PNEUMONIA" in legend and "deletion auc 0.200" in legend
    assert "model demo-model 2.1" in legend
    # as Heatmaps on the film's grid, the values written
    heatmaps = {h.method: h for h in found.heatmaps(study.rows, study.columns)}
    assert np.array_equal(heatmaps["gradcam"].values, exs[0].values)
    assert np.array_equal(heatmaps["lime"].values, exs[1].values) and heatmaps["lime"].signed
    assert heatmaps["lime"].class_name == "PNEUMONIA"
    assert heatmaps["lime"].trust == {"insertion auc": 0.7}
    # at another size (a preview), resampled
    assert found.heatmaps(64, 64)[0].values.shape == (64, 64)
    # data sets work as well as files (what a WADO-RS retrieve returns)
    datasets = [pydicom.dcmread(p) for p in written.files]
    assert len(results_for_image(datasets, uid).maps) == 2
    # nothing for an image without results
    assert results_for_image([folder], "1.2.3").empty


def test_a_map_opened_alone_names_its_image(tmp_path):
    study = load_study(samples_dir() / "phantom_j2k.dcm")
    written = export_objects(
        study, PRED, MODEL, _explanations(study)[:1], tmp_path, kinds=("pm", "seg")
    )
    src = pydicom.dcmread(samples_dir() / "phantom_j2k.dcm", stop_before_pixels=True)
    pm, seg = (pydicom.dcmread(p) for p in written.files)
    where = f"image {src.SOPInstanceUID} of series {src.SeriesInstanceUID} in study {src.StudyInstanceUID}"
    assert describe_derived(pm) == f"Parametric Map GRADCAM of {where}"
    assert describe_derived(seg).startswith("Segmentation TOPREGION of image " + src.SOPInstanceUID)
    assert describe_derived(src) is None


def test_png_and_jpeg_sources_fall_back_to_secondary_capture(tmp_path):
    jpeg = load_study(next(samples_dir().glob("real-01*.jpeg")))
    yy = np.linspace(0, 1, jpeg.rows * jpeg.columns, dtype=np.float32).reshape(
        jpeg.rows, jpeg.columns
    )
    ex = de.ExplanationResult("gradcam", "PNEUMONIA", yy, False)
    written = export_objects(jpeg, PRED, MODEL, [ex], tmp_path, kinds=("pm", "sr"))
    assert "no DICOM source image" in written.note
    assert sorted(written.kinds.values()) == ["sc", "sc-sr"]
    assert (
        pydicom.dcmread(written.of_kind("sc")[0]).SOPClassUID
        == pydicom.uid.SecondaryCaptureImageStorage
    )
