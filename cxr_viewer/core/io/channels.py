"""Reduce decoded pixels to the one greyscale plane a Study holds.

Most radiographs shared as PNG/JPEG are greyscale stored as RGB or RGBA with three equal
channels; they are reduced to one channel losslessly. Anything else is converted to luminance
with the ITU-R BT.601 weights (the ones Pillow's ``convert("L")`` and DICOM PS3.3 C.7.6.3.1.2
use for YBR_FULL), and flagged as colour when a noticeable share of pixels is coloured (a few
burned-in coloured arrows on a grey radiograph do not make it a colour image).
"""

from __future__ import annotations

import numpy as np

BT601 = np.array([0.299, 0.587, 0.114], dtype=np.float32)

#: A pixel counts as coloured when its channels spread by more than this share of the range.
COLOUR_SPREAD = 0.03
#: An image counts as colour when more than this share of its pixels is coloured.
COLOUR_SHARE = 0.01


def to_grey(pixels: np.ndarray, top: float) -> tuple[np.ndarray, bool]:
    """One float32 plane from (rows, cols) or (rows, cols, channels) pixels.

    Parameters
    ----------
    pixels:
        Decoded pixels. With 2 channels the second is alpha (grey + alpha); with 4 the fourth
        is alpha. Alpha is ignored: radiographs are opaque.
    top:
        The largest value the bit depth allows (255 or 65535), for the colour test.

    Returns
    -------
    grey, is_color
        The plane and whether the image really is colour.
    """
    if pixels.ndim == 2:
        return pixels.astype(np.float32), False
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"unexpected pixel array shape {pixels.shape}")
    if pixels.shape[2] <= 2:
        return pixels[..., 0].astype(np.float32), False
    rgb = pixels[..., :3]
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    grey = r.astype(np.float32)
    coloured = (r != g) | (g != b)
    if not coloured.any():
        return grey, False
    # grey pixels keep their exact value; coloured ones become luminance
    grey[coloured] = rgb[coloured].astype(np.float32) @ BT601
    spread = rgb.max(axis=2).astype(np.float32) - rgb.min(axis=2).astype(np.float32)
    is_color = float(np.mean(spread > COLOUR_SPREAD * top)) > COLOUR_SHARE
    return grey, is_color
