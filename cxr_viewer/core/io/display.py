"""The display pipeline: modality values → VOI → inversion → [0, 1] (DICOM PS3.3 C.11).

The modality LUT is applied once by the reader (``Study.pixels`` is in modality units), the VOI
transform and the MONOCHROME1/INVERSE inversion are applied here, once, at the end. The viewer,
``cxr-viewer render`` and the model's preprocessing all go through :func:`display_image`, so
what the radiologist sees is what the model was given.
"""

from __future__ import annotations

import math

import numpy as np

from cxr_viewer.core.io.study import Study, VoiLut, Window

#: Largest VOI LUT entry size (PS3.3 C.11.2.1.1: LUT Descriptor's third value is 8 to 16).
MAX_LUT_BITS = 16


def window_coefficients(window: Window) -> tuple[float, float]:
    """``(a, b)`` such that the window's argument is ``x * a + b`` (computed in float64).

    LINEAR (PS3.3 C.11.2.1.2.1) offsets centre and width by 0.5 / 1; LINEAR_EXACT maps
    ``c ± w/2`` to 0 and 1; SIGMOID's exponent is ``-4 (x - c) / w`` = ``-(x * a + b)``.
    Folding centre and width into two float64 numbers first keeps an extreme but finite
    window (centre -1e308, width 1e308) from overflowing float32 into ``inf - inf = NaN``.

    Raises
    ------
    ValueError
        When the window is not finite or its coefficients overflow (no usable display).
    """
    c, w = float(window.center), float(window.width)
    if not (math.isfinite(c) and math.isfinite(w)) or w <= 0:
        raise ValueError(f"window centre/width must be finite with width > 0, got {c}/{w}")
    if window.function == "SIGMOID":
        a, b = 4.0 / w, -4.0 * (c / w)
    elif window.function == "LINEAR_EXACT":
        a, b = 1.0 / w, 0.5 - c / w
    else:
        w1 = max(w - 1.0, 1e-6)
        a, b = 1.0 / w1, 0.5 - (c - 0.5) / w1
    if not (math.isfinite(a) and math.isfinite(b)):
        raise ValueError(f"window centre {c} / width {w} is out of the representable range")
    return a, b


def apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """Map modality values to [0, 1] with a VOI window.

    Implements the three VOI LUT Functions of DICOM PS3.3 C.11.2.1.2 (LINEAR, LINEAR_EXACT,
    SIGMOID) with output range [0, 1]. Finite values always give finite output.
    """
    x = values.astype(np.float32, copy=False)
    a, b = window_coefficients(window)
    a32, b32 = np.float32(np.clip(a, -3e38, 3e38)), np.float32(np.clip(b, -3e38, 3e38))
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        y = x * a32 + b32
        if window.function == "SIGMOID":
            sigmoid: np.ndarray = (1.0 / (1.0 + np.exp(-y))).astype(np.float32)
            return sigmoid
    linear: np.ndarray = np.clip(y, 0.0, 1.0).astype(np.float32)
    return linear


def apply_voi_lut(values: np.ndarray, lut: VoiLut) -> np.ndarray:
    """Map modality values through a VOI LUT (PS3.3 C.11.2.1.1) to [0, 1]."""
    if not 1 <= int(lut.bits) <= MAX_LUT_BITS or len(lut.data) == 0:
        raise ValueError(
            f"a VOI LUT needs 1 to {MAX_LUT_BITS} bits and at least one entry, got "
            f"{lut.bits} bits and {len(lut.data)} entries"
        )
    with np.errstate(invalid="ignore"):
        idx = np.rint(np.nan_to_num(values)).clip(-(2.0**62), 2.0**62).astype(np.int64)
    idx = np.clip(idx - int(lut.first_mapped), 0, len(lut.data) - 1)
    top = float(2 ** int(lut.bits) - 1) or 1.0
    mapped: np.ndarray = (lut.data[idx].astype(np.float32) / top).clip(0.0, 1.0)
    return mapped


def display_image(
    study: Study,
    window: Window | None = None,
    invert: bool | None = None,
) -> np.ndarray:
    """The image as displayed, float32 in [0, 1], (rows, columns).

    Parameters
    ----------
    study:
        The study to render.
    window:
        A window to use instead of the study's own. ``None`` means: the file's first window,
        else its first VOI LUT, else the automatic window.
    invert:
        Override the study's inversion (MONOCHROME1 / Presentation LUT INVERSE). ``None`` keeps
        the study's own; the viewer's "invert" toggle passes ``not study.invert``.
    """
    if window is not None:
        out = apply_window(study.pixels, window)
    elif study.windows:
        out = apply_window(study.pixels, study.windows[0])
    elif study.voi_luts:
        out = apply_voi_lut(study.pixels, study.voi_luts[0])
    else:
        out = apply_window(study.pixels, study.auto_window)
    if study.invert if invert is None else invert:
        out = 1.0 - out
    return out


def to_uint8(image01: np.ndarray) -> np.ndarray:
    """Quantise a [0, 1] image to uint8 with rounding."""
    quantised: np.ndarray = np.rint(np.clip(image01, 0.0, 1.0) * 255.0).astype(np.uint8)
    return quantised


def auto_window_from_pixels(
    pixels: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5
) -> Window:
    """A window spanning the given percentiles of the finite pixel values (files with no window)."""
    sample = pixels[:: max(1, pixels.shape[0] // 512), :: max(1, pixels.shape[1] // 512)]
    sample = sample[np.isfinite(sample)]  # NaN/inf pixels (float data) do not move the window
    if sample.size == 0:
        sample = np.zeros(1, np.float32)
    lo, hi = np.percentile(sample, [low_pct, high_pct]).astype(float)
    if not hi > lo:
        lo, hi = float(sample.min()), float(sample.max())
    if not hi > lo:
        hi = lo + 1.0
    return Window(center=(lo + hi) / 2.0, width=hi - lo, function="LINEAR_EXACT", name="auto")


def full_range_window(bits: int) -> Window:
    """The window that maps 0 .. 2**bits - 1 linearly onto [0, 1] (PNG/JPEG as stored)."""
    top = float(2**bits - 1)
    return Window(center=top / 2.0, width=top, function="LINEAR_EXACT", name=f"full {bits}-bit")
