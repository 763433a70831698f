"""The display pipeline's inputs are validated and a non-finite image never reaches the model.

The issue's cases, built here: a VOI LUT whose descriptor claims 1024 or 64 bits (an
OverflowError, or a silently black image), a window of centre -1e308 / width 1e308 (an
all-NaN display in float32), and NaN pixels (a probability computed on NaN).
"""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.sequence import Sequence
from test_io_dicom import _load, _lut_item
from test_io_samples import dicom_bytes, dicom_dataset, gradient

from cxr_viewer.core.errors import CxrError, InvalidInputError
from cxr_viewer.core.io.display import apply_voi_lut, apply_window, display_image, to_uint8
from cxr_viewer.core.io.study import Study, VoiLut, Window
from cxr_viewer.core.model.preprocess import (
    InputSpec,
    check_finite,
    image01_to_input,
    study_to_input,
)

SPEC = InputSpec(16, 16, 3, "unit")


@pytest.mark.parametrize("bits", [1024, 64, 0])
def test_voi_lut_with_an_impossible_bit_depth_takes_the_depth_from_its_data(tmp_path, bits):
    stored = gradient(top=255)
    table = (np.arange(256) * 16).tolist()  # a 12-bit ramp
    ds = dicom_dataset(stored, bits_stored=8)
    ds.VOILUTSequence = Sequence([_lut_item([256, 0, bits], table)])
    study = _load(tmp_path, dicom_bytes(ds))
    (lut,) = study.voi_luts
    assert lut.bits == 12
    shown = display_image(study)
    np.testing.assert_allclose(shown, np.asarray(table)[stored.astype(int)] / 4095.0, atol=1e-6)
    assert to_uint8(shown).max() >= 250  # not the black image a 64-bit scale gave


@pytest.mark.parametrize("bits", [0, 17, 64, 1024])
def test_voi_lut_object_refuses_more_than_16_bits(bits):
    with pytest.raises(ValueError, match="1 to 16 bits"):
        VoiLut(first_mapped=0, data=np.arange(4), bits=bits)
    with pytest.raises(ValueError, match="non-empty"):
        VoiLut(first_mapped=0, data=np.zeros(0), bits=8)


def test_apply_voi_lut_handles_nan_and_huge_values():
    lut = VoiLut(first_mapped=-2, data=np.array([0, 100, 200, 255]), bits=8)
    out = apply_voi_lut(np.array([[np.nan, np.inf, -np.inf, 1e30]], np.float32), lut)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_extreme_but_finite_windows_give_a_finite_display(function):
    x = gradient(top=4095).astype(np.float32)
    for center, width in ((-1e308, 1e308), (1e308, 1e308), (0.0, 1e-300), (3e38, 1.0)):
        out = apply_window(x, Window(center, width, function))
        assert np.isfinite(out).all(), (center, width)
        assert out.min() >= 0.0 and out.max() <= 1.0


def test_the_issue_window_in_a_file_gives_a_finite_display_and_model_input(tmp_path):
    ds = dicom_dataset(gradient(top=4095), WindowCenter=-1e308, WindowWidth=1e308)
    study = _load(tmp_path, dicom_bytes(ds))
    assert study.windows and study.windows[0].width == 1e308
    shown = display_image(study)
    assert np.isfinite(shown).all()
    assert np.array_equal(shown, np.ones_like(shown))  # every pixel is above this window
    # a uniform model input gets no prediction (issue 26 item 12), with the reason
    with pytest.raises(InvalidInputError, match="its model input has no contrast"):
        study_to_input(study, SPEC)


def test_non_finite_windows_are_refused():
    with pytest.raises(ValueError, match="finite"):
        Window(float("nan"), 10)
    with pytest.raises(ValueError, match="finite"):
        Window(0, float("inf"))


def _study(pixels) -> Study:
    from pathlib import Path

    return Study(
        path=Path("nan.dcm"),
        format="dicom",
        pixels=np.asarray(pixels, np.float32),
        auto_window=Window(0.5, 1.0, "LINEAR_EXACT"),
    )


def test_nan_pixels_never_become_a_model_input():
    pixels = np.full((20, 20), 0.5, np.float32)
    pixels[3, 4] = np.nan
    with pytest.raises(InvalidInputError, match="not finite") as info:
        study_to_input(_study(pixels), SPEC)
    assert isinstance(info.value, CxrError) and info.value.hint
    with pytest.raises(InvalidInputError):
        image01_to_input(np.full((20, 20), np.nan, np.float32), SPEC)
    ok = study_to_input(_study(np.linspace(0.2, 0.8, 400).reshape(20, 20)), SPEC)
    assert ok.shape == (16, 16, 3) and np.isfinite(ok).all()


def test_check_finite_counts_the_bad_values():
    x = np.zeros((2, 4, 4, 3), np.float32)
    x[0, 0, 0, :] = [np.nan, np.inf, -np.inf]
    with pytest.raises(InvalidInputError, match="3 of its 96"):
        check_finite(x)
    assert check_finite(np.ones(3)) is not None
