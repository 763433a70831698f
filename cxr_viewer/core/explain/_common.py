"""Helpers shared by the explainers: class checks, layer lookup, input checks.

The per-model caches, the flattened model and the class score's tensor are the model layer's
(:mod:`cxr_viewer.core.model.graph`). Nothing here imports TensorFlow at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cxr_viewer.core.errors import ExplainError

if TYPE_CHECKING:
    from cxr_viewer.core.model.inference import Classifier
    from cxr_viewer.core.model.preprocess import InputSpec


def get_layer(model: Any, name: str) -> Any:
    """Layer ``name`` of the (flattened) model, or ExplainError listing what exists."""
    try:
        return model.get_layer(name)
    except ValueError as exc:
        raise ExplainError(
            f"The model has no layer '{name}'",
            "the layer name is not in the model (or hidden inside a nested backbone).",
            "Choose one of the layers the explainer offers.",
        ) from exc


def check_target(classifier: Classifier, target_class: int) -> int:
    """``target_class`` as an int within the classifier's classes."""
    n = len(classifier.class_names)
    t = int(target_class)
    if not 0 <= t < n:
        raise ExplainError(
            f"Class index {target_class} is out of range",
            f"the model has {n} classes ({', '.join(classifier.class_names)}).",
            "Choose one of the model's classes.",
        )
    return t


def target_unit(classifier: Classifier, target_class: int) -> tuple[int, float]:
    """(model output unit, sign) whose score explains class ``target_class``.

    Softmax and multi-label heads: the class's own unit. A single-sigmoid (binary) head has one
    unit z for both classes: the positive class is explained by z, the negative by −z.
    """
    head = getattr(classifier, "head", None)
    if head is None:
        return int(target_class), 1.0
    unit, sign = head.unit_for(int(target_class))
    return int(unit), float(sign)


def check_input(classifier: Classifier, x: np.ndarray) -> np.ndarray:
    """``x`` as float32 (h, w, c) matching the classifier's input spec."""
    spec = classifier.spec
    x = np.asarray(x, dtype=np.float32)
    if x.shape != (spec.height, spec.width, spec.channels):
        raise ExplainError(
            "The image does not match the model input",
            f"got {x.shape}, the model takes ({spec.height}, {spec.width}, {spec.channels}).",
            "Pass the output of cxr_viewer.core.model.preprocess.study_to_input.",
        )
    if not np.all(np.isfinite(x)):
        raise ExplainError("The model input contains NaN or infinite values")
    return x


def to_unit(x: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Model input back to the [0, 1] display scale (inverse of ``preprocess.normalize``)."""
    return np.asarray(np.clip(spec.to_unit(x), 0.0, 1.0), dtype=np.float32)
