"""An explanation as the viewer keeps it: the model-size Heatmap plus a screen-size copy. No Qt.

Explanation maps are smooth (they come from a 224-pixel model input or coarser) and are kept at
the model's input size. The overlay on screen is drawn from a copy in the study's shape at most
:data:`PREVIEW_MAX_SIDE` pixels long, scaled up by the view; colourising that copy takes
milliseconds. Exports (PNG, PDF, DICOM) scale the model-size map to what they write.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxr_viewer.core.explain.base import Heatmap
from cxr_viewer.core.explain.overlay import colorize, robust_vmax
from cxr_viewer.core.io.resize import resize_map

PREVIEW_MAX_SIDE = 1024


def preview_size(rows: int, columns: int, max_side: int = PREVIEW_MAX_SIDE) -> tuple[int, int]:
    """(rows, columns) scaled so the longer side is at most ``max_side`` (never enlarged)."""
    scale = min(1.0, max_side / max(rows, columns, 1))
    return max(1, round(rows * scale)), max(1, round(columns * scale))


def downsample(values: np.ndarray, max_side: int = PREVIEW_MAX_SIDE) -> np.ndarray:
    """Area-averaged copy of a 2-D float map with its longer side at most ``max_side``."""
    rows, cols = values.shape[:2]
    r, c = preview_size(rows, cols, max_side)
    if (r, c) == (rows, cols):
        return np.ascontiguousarray(values, dtype=np.float32)
    return resize_map(values, r, c)


def value_scale(values: np.ndarray) -> float:
    """The colour scale's top (|value| drawn at full colour).

    Computed once per map (from the screen-size copy: the percentile of 1 M values instead of
    6.5 M) with the rule :func:`cxr_viewer.core.explain.overlay.colorize` uses by default; the screen
    overlay and the exported full-size overlay then share one scale.
    """
    return robust_vmax(values)


@dataclass
class OverlayResult:
    """A Heatmap (model input size) plus its screen-size copy and colour scale."""

    heatmap: Heatmap
    preview: np.ndarray
    vmax: float
    colormap: str | None = None
    rgba: np.ndarray | None = None  # preview colourised with ``colormap``
    cutoff: float = 0.0  # |value| / vmax drawn transparent

    @classmethod
    def from_heatmap(
        cls,
        heatmap,
        colormap: str | None = None,
        cutoff: float | None = None,
        size: tuple[int, int] | None = None,
    ) -> OverlayResult:
        """Screen-size copy, scale and (with ``colormap``) its colours, computed by the caller's
        thread — the model worker — so the GUI thread only wraps the pixels in a QImage.

        ``size``: the (rows, columns) of the study the map is drawn on; the screen copy takes
        that shape at most :data:`PREVIEW_MAX_SIDE` long (a model-size map is enlarged straight
        to it). None: the map's own shape, shrunk if longer.
        """
        rows, columns = size if size is not None else heatmap.values.shape[:2]
        preview = resize_map(heatmap.values, *preview_size(rows, columns))
        result = cls(heatmap=heatmap, preview=preview, vmax=value_scale(preview))
        if cutoff is None:
            from cxr_viewer.core.explain.registry import EXPLAINERS

            method = getattr(heatmap, "method", None)
            cutoff = EXPLAINERS[method].display.cutoff if method in EXPLAINERS else 0.0
        result.cutoff = float(cutoff)
        if colormap is not None:
            result.recolor(colormap)
        return result

    def recolor(self, colormap: str) -> np.ndarray:
        """RGBA of the preview in ``colormap`` (kept, so a later redraw reuses it)."""
        if self.rgba is None or self.colormap != colormap:
            self.rgba = colorize(
                self.preview,
                signed=self.signed,
                colormap=colormap,
                vmax=self.vmax,
                cutoff=self.cutoff,
            )
            self.colormap = colormap
        return self.rgba

    @property
    def partial(self) -> bool:
        return bool(getattr(self.heatmap, "partial", False))

    @property
    def signed(self) -> bool:
        return bool(getattr(self.heatmap, "signed", False))

    @property
    def nbytes(self) -> int:
        extra = self.rgba.nbytes if self.rgba is not None else 0
        return int(self.heatmap.values.nbytes + self.preview.nbytes + extra)
