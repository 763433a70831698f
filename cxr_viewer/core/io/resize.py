"""The one way a 2-D map (heat map, prior, saliency) changes size.

Explanation maps stay at the model's input size (or coarser) in the core; whoever shows or
writes one at another size (the viewer's screen copy, the PDF and PNG exports, batch outputs,
DICOM secondary captures, localisation) scales it with :func:`resize_map` at that moment.
"""

from __future__ import annotations

import cv2
import numpy as np


def resize_map(values: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """``values`` (2-D) as float32 (rows, columns).

    Enlarging (or mixed) is bilinear, which keeps a smooth map smooth and its mean; shrinking
    on both axes averages areas, so fine detail is not aliased. Same size: the values
    themselves (as float32, copied only if needed).
    """
    m = np.asarray(values, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"resize_map takes a 2-D map, got shape {m.shape}")
    rows, columns = int(rows), int(columns)
    if rows < 1 or columns < 1:
        raise ValueError(f"resize_map needs a positive size, got {rows}×{columns}")
    if m.shape == (rows, columns):
        return m
    shrink = rows <= m.shape[0] and columns <= m.shape[1]
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    out = cv2.resize(m, (columns, rows), interpolation=interpolation)
    return np.asarray(out, dtype=np.float32).reshape(rows, columns)
