"""DICOM results: Secondary Capture with the overlay burned in, and a Comprehensive SR.

Unit tests use the shipped samples (a DICOM phantom and a real JPEG film); the round trip on a
MONOCHROME1 JPEG 2000 chest CR uses the shared data (integration, skipped without it). Every
written file is read back by pydicom with warnings turned into errors and validated with
dicom3tools' ``dciodvfy`` where it is installed, else by highdicom parsing it back.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from cxr_viewer.cli import main
from cxr_viewer.core.errors import DicomExportError
from cxr_viewer.core.explain.overlay import colorize, composite, default_colormap, robust_vmax
from cxr_viewer.core.interop import dicom_export as de
from cxr_viewer.core.io import load_study
from cxr_viewer.core.io.display import display_image
from cxr_viewer.core.model.inference import Prediction
from cxr_viewer.core.paths import samples_dir

pytest.importorskip("highdicom", reason='the "pacs" extra is not installed')

CLASSES = ("NORMAL", "PNEUMONIA")
MODEL = de.ModelIdentity("demo-model", "2.1", CLASSES, 0.203, "PNEUMONIA")


def _blob(study, cy, cx, sigma):
    yy, xx = np.mgrid[: study.rows, : study.columns]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2.0 * sigma**2)).astype(np.float32)


def _prediction(p=0.9):
    return Prediction(np.array([1 - p, p]), CLASSES, 0.203, "PNEUMONIA")


def _explanation(study, cy, cx, sigma):
    return de.ExplanationResult(
        method="gradcam",
        class_name="PNEUMONIA",
        values=_blob(study, cy, cx, sigma),
        signed=False,
        layer="conv_pw_13_relu",
        trust={"deletion_auc": 0.21, "insertion_auc": 0.83},
    )


def read_strict(path: Path):
    """pydicom reads the file fully (every element) with no warning at all."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = pydicom.dcmread(path)
        for elem in ds.iterall():
            _ = elem.value
        if "PixelData" in ds:
            _ = ds.pixel_array
    return ds


def check_valid(path: Path) -> None:
    errors = de.validate_with_dciodvfy(path)
    if errors is not None:
        assert errors == [], f"dciodvfy: {errors}"
        return
    import highdicom as hd

    ds = pydicom.dcmread(path)
    if ds.SOPClassUID == pydicom.uid.ComprehensiveSRStorage:
        hd.sr.ComprehensiveSR.from_dataset(ds)  # raises on a malformed content tree
    else:
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "Modality"):
            assert str(ds.get(keyword, "")).strip(), keyword


def _sr_content(ds):
    """{concept meaning: value} of the SR's top-level items (NUM, TEXT, CODE)."""
    out = {}
    for item in ds.ContentSequence:
        name = item.ConceptNameCodeSequence[0].CodeMeaning
        if item.ValueType == "NUM":
            out[name] = float(item.MeasuredValueSequence[0].NumericValue)
        elif item.ValueType == "TEXT":
            out[name] = str(item.TextValue)
        elif item.ValueType == "CODE":
            out[name] = str(item.ConceptCodeSequence[0].CodeMeaning)
        elif item.ValueType == "IMAGE":
            ref = item.ReferencedSOPSequence[0]
            out.setdefault("images", []).append(str(ref.ReferencedSOPInstanceUID))
        elif item.ValueType == "CONTAINER":
            out.setdefault("containers", []).append(
                {
                    c.ConceptNameCodeSequence[0].CodeMeaning: (
                        float(c.MeasuredValueSequence[0].NumericValue)
                        if c.ValueType == "NUM"
                        else str(c.TextValue)
                    )
                    for c in item.ContentSequence
                }
            )
    return out


def test_dicom_source_gets_new_series_in_its_study(tmp_path):
    src_path = samples_dir() / "phantom_j2k.dcm"
    study = load_study(src_path)
    src = pydicom.dcmread(src_path, stop_before_pixels=True)
    ex = _explanation(study, study.rows // 3, study.columns // 2, study.rows / 10)
    res = de.export_results(study, _prediction(), MODEL, [ex], tmp_path)
    assert not res.new_study and res.study_instance_uid == src.StudyInstanceUID
    assert [p.name for p in res.files] == ["phantom_j2k_gradcam_SC.dcm", "phantom_j2k_SR.dcm"]
    sc, sr = (read_strict(p) for p in res.files)
    for ds in (sc, sr):
        check_valid(Path(ds.filename))
        assert ds.StudyInstanceUID == src.StudyInstanceUID
        assert ds.SeriesInstanceUID != src.SeriesInstanceUID
        for keyword in ("PatientName", "PatientID", "StudyDate", "StudyID", "AccessionNumber"):
            assert str(ds.get(keyword) or "") == str(src.get(keyword) or ""), keyword
    assert sc.SeriesInstanceUID != sr.SeriesInstanceUID
    assert sc.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    assert list(sc.ImageType) == ["DERIVED", "SECONDARY"] and sc.BurnedInAnnotation == "YES"
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert sc.SourceImageSequence[0].ReferencedSOPClassUID == src.SOPClassUID
    assert "NOT FOR DIAGNOSIS" in sc.DerivationDescription
    assert sc.Rows >= study.rows and sc.Columns > study.columns  # the side panel
    # the film part is the viewer's composite, pixel for pixel
    expected = composite(display_image(study), [(colorize(ex.values, signed=False), 0.5)])
    assert np.array_equal(sc.pixel_array[: study.rows, : study.columns], expected)
    _assert_colour_bar(sc.pixel_array[:, study.columns :], default_colormap(False))

    assert sr.SOPClassUID == pydicom.uid.ComprehensiveSRStorage
    content = _sr_content(sr)
    assert content["Algorithm Name"] == "demo-model" and content["Algorithm Version"] == "2.1"
    assert content["Probability of PNEUMONIA"] == pytest.approx(0.9)
    assert content["Probability of NORMAL"] == pytest.approx(0.1)
    assert content["Decision threshold for PNEUMONIA"] == pytest.approx(0.203)
    assert content["Finding"] == "PNEUMONIA"
    assert content["images"] == [str(src.SOPInstanceUID), str(sc.SOPInstanceUID)]
    (method,) = content["containers"]
    assert method["Explanation method"] == "Grad-CAM"
    assert method["Explained class"] == "PNEUMONIA"
    assert method["deletion auc"] == pytest.approx(0.21)
    assert method["insertion auc"] == pytest.approx(0.83)
    # the evidence lists the source study's instances
    evidence = {
        str(i.ReferencedSOPInstanceUID)
        for s in sr.CurrentRequestedProcedureEvidenceSequence
        for se in s.ReferencedSeriesSequence
        for i in se.ReferencedSOPSequence
    }
    assert evidence == {str(src.SOPInstanceUID), str(sc.SOPInstanceUID)}


def test_jpeg_source_gets_a_new_study_with_entered_or_anonymous_patient(tmp_path):
    path = next(samples_dir().glob("real-04_*.jpeg"))
    study = load_study(path)
    ex = _explanation(study, 100, 120, 20)
    anon = de.export_results(study, _prediction(0.7), MODEL, [ex], tmp_path / "anon")
    named = de.export_results(
        study,
        _prediction(0.7),
        MODEL,
        [ex],
        tmp_path / "named",
        patient=de.PatientEntry("Doe^Jane", "P-17", "20200131", "F"),
    )
    assert anon.new_study and named.new_study
    assert anon.study_instance_uid != named.study_instance_uid
    a_sc, a_sr = (read_strict(p) for p in anon.files)
    n_sc, n_sr = (read_strict(p) for p in named.files)
    for ds in (a_sc, a_sr, n_sc, n_sr):
        check_valid(Path(ds.filename))
    assert a_sc.StudyInstanceUID == a_sr.StudyInstanceUID == anon.study_instance_uid
    assert str(a_sc.get("PatientName", "")) == "" and str(a_sc.get("PatientID", "")) == ""
    assert "SourceImageSequence" not in a_sc  # nothing DICOM to reference
    # a 224-pixel film: the panel with text and colour bar runs below it, padded with black
    px = a_sc.pixel_array
    assert study.rows == 224 and px.shape[0] > study.rows
    assert not px[study.rows :, : study.columns].any()
    _assert_colour_bar(px[:, study.columns :], default_colormap(False))
    for ds in (n_sc, n_sr):
        assert (str(ds.PatientName), ds.PatientID, ds.PatientBirthDate, ds.PatientSex) == (
            "Doe^Jane",
            "P-17",
            "20200131",
            "F",
        )
    # the SR references the SC (the only DICOM image of the new study)
    assert _sr_content(n_sr)["images"] == [str(n_sc.SOPInstanceUID)]


@pytest.mark.parametrize(
    ("entry", "what"),
    [
        (de.PatientEntry(birth_date="31.01.2020"), "birth date"),
        (de.PatientEntry(sex="X"), "sex"),
        (de.PatientEntry(name="a\\b"), "patient name"),
    ],
)
def test_bad_patient_entry_is_a_clear_error(tmp_path, entry, what):
    study = load_study(samples_dir() / "phantom_selftest.png")
    ex = _explanation(study, 10, 10, 5)
    with pytest.raises(DicomExportError) as info:
        de.export_results(study, _prediction(), MODEL, [ex], tmp_path, patient=entry)
    assert what in info.value.what and info.value.hint
    assert not list(tmp_path.iterdir())


def test_map_of_the_wrong_size_is_a_clear_error(tmp_path):
    study = load_study(samples_dir() / "phantom_selftest.png")
    ex = de.ExplanationResult("gradcam", "PNEUMONIA", np.zeros((7, 7), np.float32), False)
    with pytest.raises(DicomExportError, match="map is"):
        de.export_results(study, _prediction(), MODEL, [ex], tmp_path)


@pytest.mark.integration
def test_round_trip_mono1_jpeg2000_cr_opens_in_info_and_render(shared_data, tmp_path, capsys):
    src_path = shared_data / "dicom" / "chest_CR_MONO1_J2K-lossy_RG1_J2KI.dcm"
    study = load_study(src_path)
    assert study.photometric == "MONOCHROME1" and study.invert
    assert study.transfer_syntax == "1.2.840.10008.1.2.4.91"
    cy, cx = int(study.rows * 0.3), int(study.columns * 0.65)  # upper left lung of the patient
    ex = _explanation(study, cy, cx, study.rows / 14)
    res = de.export_results(study, _prediction(), MODEL, [ex], tmp_path)
    sc_path, sr_path = res.files
    for p in res.files:
        read_strict(p)
        check_valid(p)

    assert main(["info", str(sc_path)]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["format"] == "dicom" and rec["modality"] == "OT"
    assert rec["photometric_interpretation"] == "RGB" and rec["invert"] is False
    assert rec["rows"] == study.rows and rec["columns"] > study.columns

    out_png = tmp_path / "sc.png"
    assert main(["render", str(sc_path), "-o", str(out_png)]) == 0
    rendered = np.asarray(Image.open(out_png), np.float32)[:, : study.columns]
    # what the viewer draws (the MONOCHROME1 film inverted once, then the overlay) ...
    vmax = robust_vmax(ex.values)
    expected = composite(
        display_image(study), [(colorize(ex.values, signed=False, vmax=vmax), 0.5)]
    )
    luminance = expected.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    assert np.abs(rendered - luminance).max() <= 2.0
    # ... and the overlay is where the map is: the change from the plain film peaks at the blob
    plain = display_image(study) * 255.0
    change = np.abs(rendered - plain)
    peak = np.unravel_index(np.argmax(_box_mean(change, 31)), change.shape)
    assert abs(peak[0] - cy) < study.rows * 0.03 and abs(peak[1] - cx) < study.columns * 0.03
    far = change[ex.values < 0.01]
    near = change[ex.values > 0.5]
    assert near.mean() > 10 * max(far.mean(), 0.5)


def _assert_colour_bar(panel: np.ndarray, colormap: str) -> None:
    """Both ends of the colormap appear in the panel as a vertical strip (the colour bar)."""
    from cxr_viewer.core.explain.overlay import _lut

    lut = _lut(colormap)
    for end in (lut[0], lut[255]):
        hits = np.all(panel == end, axis=2)
        assert hits.sum() >= 8 and len(np.unique(np.nonzero(hits)[1])) >= 8, end


def _box_mean(a: np.ndarray, k: int) -> np.ndarray:
    import cv2

    return cv2.blur(a.astype(np.float32), (k, k))


def test_multilabel_prediction_reports_every_threshold_and_finding(tmp_path):
    study = load_study(samples_dir() / "phantom_j2k.dcm")
    names = ("nodule", "effusion", "edema")
    pred = Prediction(
        np.array([0.7, 0.4, 0.1]), names, kind="multilabel", thresholds=(0.5, 0.3, 0.5)
    )
    model = de.ModelIdentity("multi", "1", names)
    ex = _explanation(study, 50, 50, 20)
    ex.class_name = "nodule"
    res = de.export_results(study, pred, model, [ex], tmp_path)
    sr = read_strict(res.report)
    findings = [
        str(i.ConceptCodeSequence[0].CodeMeaning)
        for i in sr.ContentSequence
        if i.ValueType == "CODE"
    ]
    assert findings == ["nodule", "effusion"]  # above their own thresholds, most probable first
    content = _sr_content(sr)
    assert content["Decision threshold for effusion"] == pytest.approx(0.3)
    assert content["Decision threshold for edema"] == pytest.approx(0.5)
    assert content["Probability of edema"] == pytest.approx(0.1)
    check_valid(res.report)
