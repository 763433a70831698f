"""Every real file in ../shared/data/dicom and ../shared/data/cxr-samples through the reader.

The expectations come from the folder's own CSVs (dicom.csv: size, photometric, bits, transfer
syntax, windows, the stored pixel range a correct decoder gets; labels.csv: size). Each file
is decoded once (``_study``, cleared at the end of the module) to keep the suite fast.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.pixels import apply_modality_lut, pixel_array

from cxr_viewer.core.errors import CorruptFileError, MissingCodecError
from cxr_viewer.core.io import list_study_files, load_study
from cxr_viewer.core.io.display import display_image
from cxr_viewer.core.paths import shared_data_dir

pytestmark = pytest.mark.integration

_ROOT = shared_data_dir()
BROKEN = "nonchest_CR_hip_MONO2_10bit_JPEGextended12bit_RG2_JPLY.dcm"  # not the _fixed copy


def _rows(csv_name: str) -> list[dict[str, str]]:
    if _ROOT is None or not (_ROOT / csv_name).is_file():
        return []
    with open(_ROOT / csv_name, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


DICOM_ROWS = {Path(r["filename"]).name: r for r in _rows("dicom/dicom.csv")}
SAMPLE_ROWS = {r["filename"]: r for r in _rows("cxr-samples/labels.csv")}


@functools.cache
def _study(path: Path, frame: int = 0):
    return load_study(path, frame=frame)


@pytest.fixture(scope="module", autouse=True)
def _free_decoded_studies():
    """Decode each file once in this module, and free the arrays when the module is done."""
    yield
    _study.cache_clear()


def _dicom(shared_data, name):
    return _study(shared_data / "dicom" / name)


def _corr(a, b) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _region(image, r0, r1, c0, c1) -> float:
    h, w = image.shape
    return float(image[int(r0 * h) : int(r1 * h), int(c0 * w) : int(c1 * w)].mean())


def test_the_csvs_list_every_file(shared_data):
    on_disk = {p.name for p in list_study_files(shared_data / "dicom")}
    assert on_disk == set(DICOM_ROWS) and len(on_disk) == 14
    samples = {p.name for p in list_study_files(shared_data / "cxr-samples")}
    assert samples == set(SAMPLE_ROWS) and len(samples) == 47  # labels.csv is no candidate


@pytest.mark.parametrize("name", sorted(DICOM_ROWS))
def test_every_dicom_loads_as_its_csv_says(shared_data, name):
    row = DICOM_ROWS[name]
    path = shared_data / "dicom" / name
    if name == BROKEN:
        with pytest.raises((CorruptFileError, MissingCodecError)) as info:
            load_study(path)
        text = str(info.value)
        assert "JPEG Extended" in text and "rejected" in text and "pip install" in text
        assert info.value.__cause__ is not None
        return
    study = _study(path)
    assert (study.rows, study.columns) == (int(row["Rows"]), int(row["Columns"]))
    assert study.n_frames == int(row["NumberOfFrames"] or 1)
    assert study.photometric == row["PhotometricInterpretation"]
    assert study.bits_stored == int(row["BitsStored"])
    assert study.invert == (row["PhotometricInterpretation"] == "MONOCHROME1")
    if row["has_file_meta"] == "yes":
        assert study.transfer_syntax == row["TransferSyntaxUID"]
    else:
        assert study.transfer_syntax == pydicom.uid.ImplicitVRLittleEndian
    if row["has_WindowCenter"] == "yes":
        assert (study.windows[0].center, study.windows[0].width) == (
            float(row["WindowCenter"]),
            float(row["WindowWidth"]),
        )
    assert bool(study.voi_luts) == (row["has_VOILUTSequence"] == "yes")
    shown = display_image(study)
    assert shown.min() >= 0 and shown.max() <= 1 and shown.std() > 0.05


@pytest.mark.parametrize(
    "name", sorted(n for n, r in DICOM_ROWS.items() if r["pixel_min"] and n != BROKEN)
)
def test_stored_pixel_range_matches_the_csv(shared_data, name):
    row = DICOM_ROWS[name]
    path = shared_data / "dicom" / name
    lo, hi = np.inf, -np.inf
    for frame in range(_study(path).n_frames):
        study = _study(path, frame)
        if row["has_ModalityLUTSequence"] == "yes":
            # a LUT cannot be inverted: decode the stored values with pydicom and check that
            # the study holds exactly their modality-LUT output
            ds = pydicom.dcmread(path)
            stored = pixel_array(ds, index=frame)
            np.testing.assert_array_equal(study.pixels, apply_modality_lut(stored, ds))
        else:
            slope = float(row["RescaleSlope"] or 1)
            stored = (study.pixels - float(row["RescaleIntercept"] or 0)) / slope
        lo, hi = min(lo, float(stored.min())), max(hi, float(stored.max()))
    assert (lo, hi) == (float(row["pixel_min"]), float(row["pixel_max"]))


def test_ct_rle_fragments_are_in_hounsfield_units(shared_data):
    study = _dicom(shared_data, "nonchest_CT_RLE_fragments_D_CLUNIE_CT1_RLE_FRAGS.dcm")
    assert (study.pixels.min(), study.pixels.max()) == (-3024.0, 1254.0)  # stored -2000..2278
    assert study.metadata["Modality"] == "CT"


def test_multiframe_rle_mr_has_ten_distinct_frames(shared_data):
    path = shared_data / "dicom" / "nonchest_MR_RLE_multiframe_emri_small_RLE.dcm"
    first, last = _study(path, 0), _study(path, 9)
    assert first.n_frames == last.n_frames == 10 and last.frame == 9
    assert not np.array_equal(first.pixels, last.pixels)


def test_header_edited_monochrome1_renders_as_the_inverse_of_its_original(shared_data):
    original = _dicom(shared_data, "chest_CR_PA_MONO2_8bit_JPEGbaseline_SIIM.dcm")
    edited = _dicom(shared_data, "chest_CR_PA_MONO1-header-edited_JPEGbaseline_Fake_MONOHR1.dcm")
    np.testing.assert_array_equal(edited.pixels, original.pixels)  # nothing inverted at decode
    assert _corr(display_image(edited), display_image(original)) < -0.95
    # 8-bit with no window: shown over 0..255 as stored, not stretched
    assert (original.auto_window.low, original.auto_window.high) == (0.0, 255.0)
    assert original.metadata["ViewPosition"] == "PA" and original.pixel_spacing == (0.168, 0.168)


# Regions as fractions (rows, columns) of the RG1 chest, chosen on a render: upper lung fields
# either side of the spine, the spine/mediastinum, and the abdomen under the diaphragm.
RIGHT_LUNG, LEFT_LUNG = (0.15, 0.35, 0.2, 0.35), (0.15, 0.35, 0.6, 0.75)
MEDIASTINUM, ABDOMEN = (0.3, 0.6, 0.45, 0.55), (0.8, 0.95, 0.2, 0.8)


@pytest.mark.parametrize(
    "name",
    ["chest_CR_MONO1_J2K-lossy_RG1_J2KI.dcm", "chest_CR_MONO1_JPEGLS-near-lossless_RG1_JLSN.dcm"],
)
def test_rg1_chest_shows_dark_lungs_and_bright_bone(shared_data, name):
    shown = display_image(_dicom(shared_data, name))
    lungs = max(_region(shown, *RIGHT_LUNG), _region(shown, *LEFT_LUNG))
    assert lungs + 0.2 < _region(shown, *MEDIASTINUM)
    assert lungs + 0.2 < _region(shown, *ABDOMEN)


def test_rg1_j2k_and_jpegls_renders_agree(shared_data):
    a = display_image(_dicom(shared_data, "chest_CR_MONO1_J2K-lossy_RG1_J2KI.dcm"))
    b = display_image(_dicom(shared_data, "chest_CR_MONO1_JPEGLS-near-lossless_RG1_JLSN.dcm"))
    assert _corr(a, b) > 0.99 and float(np.abs(a - b).mean()) < 0.01


def test_acr_nema_chest_shows_dark_lungs(shared_data):
    study = _dicom(shared_data, "chest_CR_MONO1_10bit_ACRNEMA_CR-MONO1-10-chest.dcm")
    shown = display_image(study)
    lungs = (_region(shown, 0.25, 0.55, 0.2, 0.35) + _region(shown, 0.25, 0.55, 0.65, 0.8)) / 2
    assert lungs + 0.15 < _region(shown, 0.3, 0.7, 0.45, 0.55)


def test_voi_and_modality_lut_test_patterns_display_the_same_pattern(shared_data):
    # Both IHE MESA images show the SMPTE pattern; correct VOI / modality LUT handling makes
    # their displays agree, and each spans black to white.
    voi = display_image(_dicom(shared_data, "nonchest_OT_VOILUTSequence_vlut_04.dcm"))
    mod = display_image(_dicom(shared_data, "nonchest_OT_ModalityLUTSequence_mlut_18.dcm"))
    for shown in (voi, mod):
        assert np.percentile(shown, 1) < 0.05 and np.percentile(shown, 99) > 0.95
    assert _corr(voi, mod) > 0.9


def test_hip_lossless_syntaxes_decode_identically(shared_data):
    jpll = _dicom(shared_data, "nonchest_CR_hip_MONO2_10bit_JPEGlossless_RG2_JPLL.dcm")
    jlsl = _dicom(shared_data, "nonchest_CR_hip_MONO2_10bit_JPEGLS-lossless_RG2_JLSL.dcm")
    np.testing.assert_array_equal(jpll.pixels, jlsl.pixels)
    fixed = _dicom(shared_data, "nonchest_CR_hip_MONO2_10bit_JPEGextended12bit_RG2_JPLY_fixed.dcm")
    assert _corr(display_image(fixed), display_image(jpll)) > 0.98  # lossy copy of the same


@pytest.mark.parametrize("name", sorted(SAMPLE_ROWS))
def test_every_sample_radiograph_loads_as_greyscale(shared_data, name):
    row = SAMPLE_ROWS[name]
    path = shared_data / "cxr-samples" / name
    study = load_study(path)
    assert (study.columns, study.rows) == (int(row["width"]), int(row["height"]))
    assert study.format == ("png" if name.endswith(".png") else "jpeg")
    assert not study.is_color and study.bits_stored == 8  # some carry coloured arrows
    with Image.open(path) as im:
        pil = np.asarray(im.convert("L"), dtype=np.float32)
    assert np.abs(study.pixels - pil).max() <= 1.0  # Pillow's own grey conversion
