"""Which preprocessing reproduces the model's own training pipeline, checked on films.

A model trained elsewhere saw its films through that project's pipeline: an OpenCV or Keras
resize (``cv2.resize`` and ``image_dataset_from_directory`` are bilinear), maybe a contrast step
(``x * 1.3`` before the /255), then a value convention. CXR Lens can state the resize
interpolation and one linear intensity step (:class:`~cxr_viewer.core.model.preprocess.Intensity`)
besides the convention. Given the model's outputs on a few films *computed by the user's own
pipeline* (a CSV, :func:`read_reference`), :func:`match_pipeline` runs every candidate (each
convention × each interpolation × the stated intensity step or none) through the shared
preprocessing on the same films and ranks them by Spearman's rank correlation with the
reference (Spearman 1904) and the largest probability difference. A best match still below
:data:`GOOD_RHO` or above :data:`GOOD_DP` is a warning: the pipeline cannot be said in these
terms (a non-linear step such as CLAHE or gamma), and the explanations are of a model fed
slightly different input than it was trained on.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxr_viewer.core.errors import BundleError, CxrError
from cxr_viewer.core.model.preprocess import INTERPOLATIONS, InputSpec, Intensity, image01_to_input

#: a best match below this rank correlation is reported as poor
GOOD_RHO = 0.99
#: … or with a larger largest |Δp|
GOOD_DP = 0.01
#: interpolations tried (``auto`` last: CXR Lens' own default)
TRIED_INTERPOLATIONS = ("bilinear", "area", "cubic", "nearest", "auto")


@dataclass(frozen=True)
class Candidate:
    """One way to preprocess, and how well it reproduced the reference outputs."""

    preprocessing: str
    interpolation: str
    intensity: Intensity
    rho: float
    max_abs_dp: float

    def describe(self) -> str:
        step = "" if self.intensity.identity else f", intensity {self.intensity.describe()}"
        return f"{self.preprocessing}, {self.interpolation} resize{step}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "preprocessing": self.preprocessing,
            "interpolation": self.interpolation,
            "intensity": {
                "scale": self.intensity.scale,
                "offset": self.intensity.offset,
                "stage": self.intensity.stage,
            },
            "spearman_rho": round(self.rho, 6),
            "max_abs_dp": round(self.max_abs_dp, 6),
        }


def read_reference(csv_path: str | Path, units: int) -> tuple[list[np.ndarray], np.ndarray]:
    """(display images in [0, 1], reference outputs (n, units)) from a reference CSV.

    The CSV has a ``file`` column (an image path, relative to the CSV's folder) and ``units``
    more columns: the model's outputs on that image through the user's own pipeline, in output
    order (their names are free).
    """
    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.io.display import display_image

    path = Path(csv_path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"Cannot read the reference predictions {path.name}", str(exc)) from exc
    if len(rows) < 2 or "file" not in rows[0]:
        raise BundleError(
            f"{path.name} is not a reference-predictions CSV",
            "it needs a header with a 'file' column and one column per model output, and at "
            "least one row.",
            "Write file,<output 1>,… with your own pipeline's model outputs per film.",
        )
    header = rows[0]
    col = header.index("file")
    value_cols = [i for i in range(len(header)) if i != col]
    if len(value_cols) != units:
        raise BundleError(
            f"{path.name} has {len(value_cols)} output columns",
            f"the model has {units} outputs.",
            "Give one column per model output, in output order.",
        )
    images, values = [], []
    for n, row in enumerate(rows[1:], start=2):
        try:
            study = load_study(path.parent / row[col])
            values.append([float(row[i]) for i in value_cols])
        except (CxrError, ValueError, IndexError) as exc:
            raise BundleError(
                f"Cannot use line {n} of {path.name}", f"{exc}", "Fix or remove that line."
            ) from exc
        images.append(display_image(study))
    return images, np.asarray(values, dtype=np.float64)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 1.0 if np.allclose(a, b) else 0.0
    return float(spearmanr(a.ravel(), b.ravel()).statistic)


def match_pipeline(
    predict: Callable[[np.ndarray], np.ndarray],
    spec: InputSpec,
    images01: list[np.ndarray],
    reference: np.ndarray,
    *,
    conventions: tuple[str, ...],
    intensities: tuple[Intensity, ...] = (Intensity(),),
    interpolations: tuple[str, ...] = TRIED_INTERPOLATIONS,
) -> list[Candidate]:
    """Every candidate scored against ``reference`` on ``images01``, best first.

    ``predict`` maps model inputs (n, h, w, c) to the probabilities the reference holds.
    """
    out = []
    for pre in conventions:
        for interp in interpolations:
            if interp not in INTERPOLATIONS:
                raise BundleError(f"Unknown resize interpolation '{interp}'")
            for step in dict.fromkeys(intensities):
                cand = InputSpec(spec.height, spec.width, spec.channels, pre, interp, step)
                x = np.stack([image01_to_input(img, cand) for img in images01])
                p = np.asarray(predict(x), dtype=np.float64).reshape(reference.shape)
                rho = _spearman(p, reference)
                out.append(Candidate(pre, interp, step, rho, float(np.max(np.abs(p - reference)))))
    out.sort(key=lambda c: (-round(c.rho, 9), c.max_abs_dp))
    return out


def is_poor(candidate: Candidate) -> bool:
    return candidate.rho < GOOD_RHO or candidate.max_abs_dp > GOOD_DP


def warning_text(best: Candidate, n_images: int) -> str:
    """The warning for a poor best match (what, why, what to do), in one paragraph."""
    return (
        f"None of the preprocessings tried reproduces the model's own pipeline: the best match "
        f"({best.describe()}) rank-correlates {best.rho:.3f} with the reference outputs on "
        f"{n_images} film(s), with |Δp| up to {best.max_abs_dp:.3f}. The training pipeline has "
        "a step not tried: a contrast or brightness change (state it: --intensity SCALE "
        "OFFSET), or one CXR Lens cannot state (CLAHE, gamma, histogram equalisation, "
        "cropping). Explanations are of the model on different input than it was trained on; "
        "state the interpolation and intensity step if you know them, or retrain without that "
        "step."
    )
