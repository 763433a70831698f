"""numpy images → QImage, and the fast screen-size preview of a study's display.

The display pipeline (:func:`cxr_viewer.core.io.display.display_image`) on a 2828×2320 radiograph
takes ~50 ms, too long for the GUI thread during a window/level drag. So the GUI thread renders
a copy of the pixels at most :data:`PREVIEW_MAX_SIDE` long (~5 ms) at once, and the full-size
image follows from the I/O worker. Both go through the same ``display_image`` call.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
from PySide6.QtGui import QImage

from cxr_viewer.core.io.display import display_image, to_uint8
from cxr_viewer.core.io.study import Study, Window

PREVIEW_MAX_SIDE = 1280


def gray_qimage(u8: np.ndarray) -> QImage:
    """A QImage (Grayscale8) that owns a copy of a 2-D uint8 array."""
    a = np.ascontiguousarray(u8, dtype=np.uint8)
    h, w = a.shape
    return QImage(a.data, w, h, a.strides[0], QImage.Format.Format_Grayscale8).copy()


def display_qimage(u8: np.ndarray) -> QImage:
    """A QImage (RGB32) of a 2-D uint8 display image, in the format pixmaps use natively.

    ``QPixmap.fromImage`` on a Grayscale8 image converts every pixel in the GUI thread (~9 ms
    for 2048², per view); building RGB32 here — on the I/O worker for the full-size image —
    leaves the GUI thread a conversion-free ``fromImage``.
    """
    bgra = cv2.cvtColor(np.ascontiguousarray(u8, dtype=np.uint8), cv2.COLOR_GRAY2BGRA)
    h, w = bgra.shape[:2]
    # little-endian 0xAARRGGBB = bytes B, G, R, A; cvtColor sets alpha to 255
    return QImage(bgra.data, w, h, bgra.strides[0], QImage.Format.Format_RGB32).copy()


def rgba_qimage(rgba: np.ndarray) -> QImage:
    """A QImage (RGBA8888, straight alpha) that owns a copy of an (h, w, 4) uint8 array."""
    a = np.ascontiguousarray(rgba, dtype=np.uint8)
    h, w, c = a.shape
    if c != 4:
        raise ValueError(f"expected (h, w, 4) RGBA, got {a.shape}")
    return QImage(a.data, w, h, a.strides[0], QImage.Format.Format_RGBA8888).copy()


def preview_study(study: Study, max_side: int = PREVIEW_MAX_SIDE) -> Study:
    """The same study with its pixels area-resized so the longer side is ≤ ``max_side``."""
    rows, cols = study.pixels.shape
    scale = min(1.0, max_side / max(rows, cols))
    if scale >= 1.0:
        return study
    size = (max(1, round(cols * scale)), max(1, round(rows * scale)))
    small = cv2.resize(study.pixels, size, interpolation=cv2.INTER_AREA)
    return replace(study, pixels=small.astype(np.float32))


def render_u8(study: Study, window: Window | None, invert: bool) -> np.ndarray:
    """The display image as uint8, through the one display pipeline."""
    return to_uint8(display_image(study, window=window, invert=invert))


def thumbnail(study: Study, size: int = 96) -> QImage:
    """A small greyscale QImage of the study's default display."""
    small = preview_study(study, max_side=size * 2)
    u8 = render_u8(small, None, small.invert)
    h, w = u8.shape
    s = size / max(h, w)
    u8 = cv2.resize(u8, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return gray_qimage(u8)
