"""Metrics: threshold chosen on validation, figures reported on test.

Binary tasks threshold the positive class's probability; the threshold is picked on the
*validation* set (Youden's J = TPR − FPR, Youden 1950, the F1-maximising point, or the highest
threshold reaching a target sensitivity) and then applied unchanged to the test set, so the test
set never informs any choice. Multi-class tasks take the arg-max. AUC is the positive class's
ROC AUC (binary) or the macro one-vs-rest AUC (Hand & Till 2001), with per-class one-vs-rest
AUCs; it is ``None`` when a split holds a single class.

Beside the model: sensitivity and specificity at the operating point (binary), sensitivity per
subtype of the positive class where the data records one (e.g. bacterial / viral pneumonia),
calibration (expected calibration error over 10 equal-width bins, Naeini et al. 2015; Guo et al.
2017), and a logistic-regression baseline on 32×32 pixels fitted on the same split — a model that
does not beat it has learnt little beyond global brightness and contrast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
        data.cache.images, data.rows(split), data.fit_labels(split), len(data.class_names),
        data.spec, batch_size=batch_size,
    )  # fmt: skip
    return np.asarray(model.predict(ds, verbose=0), dtype=np.float64)


def choose_threshold(
    y_true: np.ndarray, score: np.ndarray, rule: str = "youden", target_sensitivity: float = 0.95
) -> float:
    """Decision threshold on ``score`` for binary labels ``y_true`` (1 = positive)."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    y_true = np.asarray(y_true).astype(int)
    if len(np.unique(y_true)) < 2:
        return 0.5
    if rule == "sensitivity":
        fpr, tpr, thr = roc_curve(y_true, score, drop_intermediate=False)
        ok = np.flatnonzero(tpr[1:] >= target_sensitivity) + 1
        return float(min(thr[ok[0]], 1.0)) if len(ok) else float(thr[-1])
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
    auc_per_class: dict[str, float] = {}
    if len(np.unique(y_true)) == k:
        if k == 2:
            auc = float(roc_auc_score(y_true == pos, probs[:, pos]))
        else:
            auc = float(roc_auc_score(y_true, probs, multi_class="ovr", average="macro"))
        auc_per_class = {
            name: float(roc_auc_score(y_true == i, probs[:, i]))
            for i, name in enumerate(class_names)
        }
    extra: dict = {}
    if k == 2 and pos is not None:
        positive, predicted = y_true == pos, y_pred == pos
        extra = {
            "sensitivity": float(predicted[positive].mean()) if positive.any() else None,
            "specificity": float((~predicted[~positive]).mean()) if (~positive).any() else None,
        }
    return {
        **extra,
        "auc_per_class": auc_per_class,
        "ece": expected_calibration_error(y_true, probs, pos),
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


def expected_calibration_error(
    y_true: np.ndarray, probs: np.ndarray, pos: int | None, bins: int = 10
) -> float:
    """ECE over ``bins`` equal-width bins: Σ_b (n_b / n) · |accuracy_b − confidence_b|.

    Binary (``pos`` given): the positive class's probability against the positive rate per bin
    (the reliability diagram's gap). Multi-class: the top-class confidence against its accuracy.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if len(y_true) == 0:
        return float("nan")
    if pos is not None and probs.shape[1] == 2:
        conf, hit = probs[:, pos], (y_true == pos).astype(np.float64)
    else:
        conf, hit = probs.max(axis=1), (probs.argmax(axis=1) == y_true).astype(np.float64)
    which = np.minimum((conf * bins).astype(np.int64), bins - 1)
    ece = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            ece += inside.mean() * abs(hit[inside].mean() - conf[inside].mean())
    return float(ece)


def subtype_sensitivity(
    part, probs: np.ndarray, threshold: float | None, pos: int | None
) -> dict[str, dict]:
    """Sensitivity per subtype of the positive class (``subtype`` column), at the threshold."""
    if pos is None or threshold is None or "subtype" not in part.columns:
        return {}
    y = part["y"].to_numpy()
    predicted = probs[:, pos] >= threshold
    out = {}
    for sub in sorted(s for s in part.loc[y == pos, "subtype"].unique() if s):
        mask = (y == pos) & (part["subtype"].to_numpy() == sub)
        out[sub] = {"n": int(mask.sum()), "sensitivity": float(predicted[mask].mean())}
    return out


def pixel_baseline(data: PreparedData, pos: int | None, side: int = 32) -> dict:
    """Logistic regression on ``side``×``side`` pixels (area-downsampled display images),
    standardised, fitted on the training split; C chosen on validation AUC. Returns its
    validation and test AUC (macro one-vs-rest for more than two classes)."""
    import cv2
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def features(split: str) -> np.ndarray:
        imgs = data.cache.images[data.rows(split)]
        return np.stack(
            [
                cv2.resize(np.asarray(im, np.float32), (side, side), interpolation=cv2.INTER_AREA)
                for im in imgs
            ]
        ).reshape(len(imgs), -1)

    def auc(y, p):
        if len(np.unique(y)) < 2:
            return None
        if p.shape[1] == 2:
            return float(roc_auc_score(y == pos, p[:, pos]))
        return float(roc_auc_score(y, p, multi_class="ovr", average="macro"))

    x_tr, x_va, x_te = features("train"), features("val"), features("test")
    y_tr, y_va, y_te = data.labels("train"), data.labels("val"), data.labels("test")
    fits = []
    for c in (0.001, 0.01, 0.1, 1.0):
        clf = make_pipeline(
            StandardScaler(), LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
        )
        clf.fit(x_tr, y_tr)
        fits.append((c, auc(y_va, clf.predict_proba(x_va)), clf))
    # the best validation AUC (None counts as 0); the first C among equals
    c, val_auc, clf = max(fits, key=lambda f: f[1] or 0)
    return {
        "model": f"logistic regression on {side}×{side} pixels (standardised, C={c} on validation)",
        "C": c,
        "val_auc": val_auc,
        "test_auc": auc(y_te, clf.predict_proba(x_te)),
    }


def evaluate_model(
    model,
    data: PreparedData,
    *,
    positive_class: str = "",
    rule: str = "youden",
    target_sensitivity: float = 0.95,
    baseline: bool = False,
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
        threshold = choose_threshold(
            data.labels("val") == pos, probs["val"][:, pos], rule, target_sensitivity
        )
    out: dict[str, Any] = {
        "threshold": threshold,
        "positive_class": names[pos] if pos is not None else None,
        "threshold_rule": rule if pos is not None else "argmax",
        "probs": probs,
    }
    if rule == "sensitivity" and pos is not None:
        out["target_sensitivity"] = target_sensitivity
    for split in ("val", "test"):
        out[split] = compute_metrics(
            data.labels(split), probs[split], names, threshold=threshold, pos=pos
        )
        subtypes = subtype_sensitivity(data.part(split), probs[split], threshold, pos)
        if subtypes:
            out[split]["sensitivity_by_subtype"] = subtypes
    if baseline:
        out["pixel_baseline"] = pixel_baseline(data, pos)
    return out


def _centred(threshold: float, scores: np.ndarray) -> float:
    """The middle of the gap below ``threshold`` among the validation scores.

    Every threshold between the chosen one and the next lower validation score gives the same
    decisions on validation; the rules return the gap's top (a validation score itself), which
    for a confident, well-separated finding sits right under 1 and would put every certain
    positive "near threshold". The middle of the gap is the choice least tied to one image.
    """
    below = scores[scores < threshold]
    return float((threshold + below.max()) / 2.0) if below.size else float(threshold)


def evaluate_multilabel(model, data: PreparedData, *, rule: str = "youden") -> dict:
    """Per-finding thresholds chosen on validation, per-finding and mean AUC on both splits.

    Each finding is its own binary task: its threshold is picked on the validation set by
    ``rule`` (centred in its gap, :func:`_centred`) and applied unchanged to the test set. Returns the :func:`evaluate_model` layout
    (``val``/``test`` with ``auc`` = mean of the findings' AUCs and ``accuracy`` = mean
    per-finding accuracy) plus ``thresholds`` and ``per_finding``.
    """
    from sklearn.metrics import roc_auc_score

    names = data.class_names
    probs = {s: predict_split(model, data, s) for s in ("val", "test")}
    truth = {s: data.targets(s).astype(int) for s in ("val", "test")}
    thresholds = {
        f: _centred(
            choose_threshold(truth["val"][:, j], probs["val"][:, j], rule), probs["val"][:, j]
        )
        for j, f in enumerate(names)
    }
    per: dict[str, dict] = {f: {"threshold": thresholds[f]} for f in names}
    out: dict = {
        "threshold": None,
        "positive_class": None,
        "threshold_rule": rule,
        "thresholds": thresholds,
        "per_finding": per,
        "probs": probs,
    }
    for split in ("val", "test"):
        y, p = truth[split], probs[split]
        aucs, accs = [], []
        for j, f in enumerate(names):
            auc = float(roc_auc_score(y[:, j], p[:, j])) if len(np.unique(y[:, j])) == 2 else None
            pred = p[:, j] >= thresholds[f]
            acc = float(np.mean(pred == y[:, j].astype(bool)))
            pos, neg = y[:, j] == 1, y[:, j] == 0
            per[f][f"{split}_auc"] = auc
            per[f][f"{split}_accuracy"] = acc
            per[f][f"{split}_sensitivity"] = float(pred[pos].mean()) if pos.any() else None
            per[f][f"{split}_specificity"] = float((~pred[neg]).mean()) if neg.any() else None
            per[f][f"{split}_support"] = int(pos.sum())
            if auc is not None:
                aucs.append(auc)
            accs.append(acc)
        out[split] = {
            "n": int(len(y)),
            "auc": float(np.mean(aucs)) if aucs else None,
            "accuracy": float(np.mean(accs)),
        }
    return out
