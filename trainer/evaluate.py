"""Metrics: threshold chosen on validation, figures reported on test.

Binary tasks threshold the positive class's probability; the threshold is picked on the
*validation* set (Youden's J = TPR − FPR, Youden 1950, or the F1-maximising point) and then
applied unchanged to the test set, so the test set never informs any choice. Multi-class tasks
take the arg-max. AUC is the positive class's ROC AUC (binary) or the macro one-vs-rest AUC
(Hand & Till 2001); it is ``None`` when a split holds a single class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cxr_viewer.core.errors import TrainingError

from .data import PreparedData
from .pipeline import make_dataset


def positive_index(class_names: Sequence[str], positive_class: str) -> int:
    """Index of the positive class (binary): the named one, else the last class."""
    if not positive_class:
        return len(class_names) - 1
    if positive_class not in class_names:
        raise TrainingError(
            f"evaluate.positive_class '{positive_class}' is not a class",
            f"classes: {list(class_names)}.",
        )
    return list(class_names).index(positive_class)


def predict_split(model, data: PreparedData, split: str, batch_size: int = 16) -> np.ndarray:
    """Softmax outputs (n, k) for one split."""
    ds = make_dataset(
        data.cache.images, data.rows(split), data.labels(split), len(data.class_names),
        data.spec, batch_size=batch_size,
    )  # fmt: skip
    return np.asarray(model.predict(ds, verbose=0), dtype=np.float64)


def choose_threshold(y_true: np.ndarray, score: np.ndarray, rule: str = "youden") -> float:
    """Decision threshold on ``score`` for binary labels ``y_true`` (1 = positive)."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    y_true = np.asarray(y_true).astype(int)
    if len(np.unique(y_true)) < 2:
        return 0.5
    if rule == "f1":
        precision, recall, thr = precision_recall_curve(y_true, score)
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        return float(thr[int(np.argmax(f1))])
    fpr, tpr, thr = roc_curve(y_true, score)
    j = tpr - fpr
    best = int(np.argmax(j[1:]) + 1)  # thr[0] is +inf by construction
    return float(min(thr[best], 1.0))


def predict_labels(probs: np.ndarray, threshold: float | None, pos: int | None) -> np.ndarray:
    """Class indices: binary → positive iff p(pos) ≥ threshold; else arg-max."""
    if probs.shape[1] == 2 and threshold is not None and pos is not None:
        return np.where(probs[:, pos] >= threshold, pos, 1 - pos)
    return probs.argmax(axis=1)


def compute_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    *,
    threshold: float | None = None,
    pos: int | None = None,
) -> dict:
    """Accuracy, AUC, per-class precision/recall/F1/support and the confusion matrix."""
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    y_true = np.asarray(y_true, dtype=np.int64)
    k = len(class_names)
    y_pred = predict_labels(probs, threshold, pos)
    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(k)), zero_division=0
    )
    auc = None
    if len(np.unique(y_true)) == k:
        if k == 2:
            auc = float(roc_auc_score(y_true == pos, probs[:, pos]))
        else:
            auc = float(roc_auc_score(y_true, probs, multi_class="ovr", average="macro"))
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "auc": auc,
        "threshold": threshold,
        "per_class": {
            name: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            for i, name in enumerate(class_names)
        },
        "macro_f1": float(np.mean(f)),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=list(range(k))).tolist(),
    }


def evaluate_model(
    model, data: PreparedData, *, positive_class: str = "", rule: str = "youden"
) -> dict:
    """Validation and test metrics; the binary threshold comes from validation only.

    Returns ``{"threshold", "positive_class", "val": {...}, "test": {...}, "probs": {...}}``
    (``probs`` holds the raw outputs per split for the figures; drop it before writing JSON).
    """
    names = data.class_names
    pos = positive_index(names, positive_class) if len(names) == 2 else None
    probs = {s: predict_split(model, data, s) for s in ("val", "test")}
    threshold = None
    if pos is not None:
        threshold = choose_threshold(data.labels("val") == pos, probs["val"][:, pos], rule)
    out = {
        "threshold": threshold,
        "positive_class": names[pos] if pos is not None else None,
        "threshold_rule": rule if pos is not None else "argmax",
        "probs": probs,
    }
    for split in ("val", "test"):
        out[split] = compute_metrics(
            data.labels(split), probs[split], names, threshold=threshold, pos=pos
        )
    return out
