"""The display pipeline: modality values → VOI → inversion → [0, 1] (DICOM PS3.3 C.11).

The modality LUT is applied once by the reader (``Study.pixels`` is in modality units), the VOI
transform and the MONOCHROME1/INVERSE inversion are applied here, once, at the end. The viewer,
``cxr-viewer render`` and the model's preprocessing all go through :func:`display_image`, so
what the radiologist sees is what the model was given.
"""

from __future__ import annotations

import numpy as np

from .study import Study, VoiLut, Window


def apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """Map modality values to [0, 1] with a VOI window.

    Implements the three VOI LUT Functions of DICOM PS3.3 C.11.2.1.2 (LINEAR, LINEAR_EXACT,
    SIGMOID) with output range [0, 1].
    """
    x = values.astype(np.float32, copy=False)
    c, w = float(window.center), float(window.width)
    if window.function == "SIGMOID":
        return (1.0 / (1.0 + np.exp(-4.0 * (x - c) / w))).astype(np.float32)
    if window.function == "LINEAR_EXACT":
        y = (x - c) / w + 0.5
    else:  # LINEAR, C.11.2.1.2.1: centre and width are offset by 0.5 / 1
        w1 = max(w - 1.0, 1e-6)
        y = (x - (c - 0.5)) / w1 + 0.5
    return np.clip(y, 0.0, 1.0).astype(np.float32)


def apply_voi_lut(values: np.ndarray, lut: VoiLut) -> np.ndarray:
    """Map modality values through a VOI LUT (PS3.3 C.11.2.1.1) to [0, 1]."""
    idx = np.rint(values).astype(np.int64) - int(lut.first_mapped)
    idx = np.clip(idx, 0, len(lut.data) - 1)
    top = float(2**lut.bits - 1) or 1.0
    return (lut.data[idx].astype(np.float32) / top).clip(0.0, 1.0)


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
    return np.rint(np.clip(image01, 0.0, 1.0) * 255.0).astype(np.uint8)


def auto_window_from_pixels(
    pixels: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5
) -> Window:
    """A window spanning the given percentiles of the pixel values (for files with no window)."""
    sample = pixels[:: max(1, pixels.shape[0] // 512), :: max(1, pixels.shape[1] // 512)]
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
