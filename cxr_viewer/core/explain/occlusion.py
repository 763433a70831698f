"""Occlusion sensitivity: where hiding the image lowers the target's probability.

Zeiler & Fergus (ECCV 2014) slid a grey square over the input and recorded how the class score
changed. Here a ``patch`` × ``patch`` square of mid-grey (``fill`` on the [0, 1] display scale,
put through the model's own preprocessing) is slid over the model input with step ``stride``;
each position's value is the drop of the target class's probability, p(x) − p(x occluded), and
a pixel's map value is the mean drop over the positions that covered it. Positive: hiding the
pixel lowers the target (evidence for it); negative: hiding it raises the target. The last row
and column of positions sit flush with the image edge, so every pixel is covered.

The occluded images go through :meth:`Classifier.predict_inputs` (the compiled, batched predict
path) ``batch_size`` at a time; cancel is checked before every batch, and a partial map (mean
drop over the positions done so far) is reported after each. No randomness: the same input
gives the same map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from cxr_viewer.core.errors import ExplainError
from cxr_viewer.core.model.preprocess import normalize

from .base import DisplayDefaults, Explainer, ExplainerSettings, Heatmap, Run


def _positions(size: int, patch: int, stride: int) -> list[int]:
    """Top (or left) edges of the patch along one axis, the last one flush with the edge."""
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


@dataclass(frozen=True)
class OcclusionSettings(ExplainerSettings):
    """Occlusion sensitivity's settings.

    Attributes
    ----------
    patch:
        Side of the grey square in model-input pixels; None: a tenth of the shorter side
        (6 px at 64, 22 px at 224).
    stride:
        Step between positions (1..patch); None: half the patch (400 positions at 64 or 224
        px). A finer stride localises small findings better and costs (patch/stride)² more.
    fill:
        Grey level of the square on the [0, 1] display scale (0.5: mid-grey).
    batch_size:
        Occluded images per model call (None: the classifier's batch size).
    """

    label: ClassVar[str] = "Occlusion"
    patch: int | None = None
    stride: int | None = None
    fill: float = 0.5
    batch_size: int | None = None

    def check(self) -> None:
        self._at_least(patch=1, stride=1, batch_size=1)
        if not (np.isfinite(self.fill) and 0.0 <= self.fill <= 1.0):
            raise self._out_of_range("fill", "a grey level in [0, 1]")


class OcclusionExplainer(Explainer):
    """Occlusion sensitivity (Zeiler & Fergus 2014) through the classifier's predict path.

    Settings: :class:`OcclusionSettings`.
    """

    name: ClassVar[str] = "occlusion"
    label: ClassVar[str] = "Occlusion sensitivity"
    device_tolerance: ClassVar[float] = 0.02
    signed: ClassVar[bool] = True
    #: green/pink: apart from LIME's purple/orange and SHAP's red/blue when shown together
    display: ClassVar[DisplayDefaults] = DisplayDefaults("Occlusion", "PiYG_r", shortcut="O")
    batched: ClassVar[bool] = True
    settings_type: ClassVar[type[ExplainerSettings]] = OcclusionSettings
    settings: OcclusionSettings

    def _geometry(self) -> tuple[int, int, float, int]:
        spec = self.classifier.spec
        side = min(spec.height, spec.width)
        s = self.settings
        patch = s.patch or max(2, side // 10)
        stride = s.stride or max(1, patch // 2)
        batch = s.batch_size or self.classifier.batch_size
        if not 1 <= patch <= side:
            raise ExplainError(
                f"Occlusion patch {patch} does not fit the model input",
                f"the patch must be 1..{side} pixels (the input is {spec.height}×{spec.width}).",
                "Choose a smaller patch.",
            )
        if not 1 <= stride <= patch:
            raise ExplainError(
                f"Occlusion stride {stride} is not in 1..{patch}",
                "a stride larger than the patch would leave pixels never occluded.",
                "Choose a stride no larger than the patch.",
            )
        return patch, stride, s.fill, batch

    def compute(self, x: np.ndarray, run: Run) -> Heatmap:
        progress, cancel, partial = run.progress, run.cancel, run.partial
        t = run.target_class
        patch, stride, fill, batch = self._geometry()
        spec = self.classifier.spec
        h, w = spec.height, spec.width
        grey = normalize(np.full((h, w), fill, np.float32), spec)
        spots = [(r, c) for r in _positions(h, patch, stride) for c in _positions(w, patch, stride)]
        n = len(spots)
        progress(0.0, f"Occlusion: {n} positions of a {patch}-px patch")
        base = float(self.classifier.predict_inputs(x[None], cancel=cancel)[0, t])
        total = np.zeros((h, w), np.float64)
        count = np.zeros((h, w), np.float64)
        settings = {
            **self.settings.as_dict(),
            "patch": patch,
            "stride": stride,
            "batch_size": batch,
        }

        def heatmap(is_partial: bool) -> Heatmap:
            values = (total / np.maximum(count, 1.0)).astype(np.float32)
            return run.heatmap(
                values,
                settings={**settings, "occlusions": n, "base_score": base},
                seed=None,
                partial=is_partial,
            )

        for first in range(0, n, batch):
            if cancel is not None:
                cancel.raise_if_cancelled()
            chunk = spots[first : first + batch]
            images = np.repeat(x[None], len(chunk), axis=0)
            for i, (r, c) in enumerate(chunk):
                images[i, r : r + patch, c : c + patch] = grey[r : r + patch, c : c + patch]
            scores = self.classifier.predict_inputs(images, cancel=cancel)[:, t]
            for (r, c), score in zip(chunk, scores, strict=True):
                total[r : r + patch, c : c + patch] += base - float(score)
                count[r : r + patch, c : c + patch] += 1.0
            done = first + len(chunk)
            if done < n:
                progress(done / n, f"Occlusion: {done}/{n} positions")
                if partial is not None:
                    partial(heatmap(True))
        progress(1.0, "Occlusion done")
        return heatmap(False)
