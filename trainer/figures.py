"""Evaluation figures with matplotlib's Agg backend (no display needed): ROC, precision-recall,
confusion matrix, reliability diagram and learning curves, each saved as a PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd


def _figure(figsize=(4.5, 4.0)):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=110)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    return path


def _curves(y_true, probs, class_names, pos, kind):
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    k = len(class_names)
    targets = [pos] if k == 2 and pos is not None else list(range(k))
    for c in targets:
        truth = np.asarray(y_true) == c
        if truth.all() or not truth.any():
            continue
        if kind == "roc":
            x, y, _ = roc_curve(truth, probs[:, c])
        else:
            y, x, _ = precision_recall_curve(truth, probs[:, c])
        yield class_names[c], x, y, auc(x, y)


#: per kind of curve: a class's legend entry, the axes, where the legend goes
_CURVE_STYLES: dict[str, tuple[str, dict, str]] = {
    "roc": (
        "{name} (AUC {area:.3f})",
        {"xlabel": "false positive rate", "ylabel": "true positive rate"},
        "lower right",
    ),
    "pr": (
        "{name} (AP≈{area:.3f})",
        {"xlabel": "recall", "ylabel": "precision", "ylim": (0, 1.02)},
        "lower left",
    ),
}


def _curve_figure(
    kind: str, y_true, probs, class_names: Sequence[str], pos: int | None, path: Path, title: str
) -> Path:
    """One curve per class (only ``pos`` for a binary model) of ``kind`` "roc" or "pr"."""
    label, axes, legend = _CURVE_STYLES[kind]
    fig = _figure()
    ax = fig.add_subplot()
    for name, x, y, area in _curves(y_true, probs, class_names, pos, kind):
        ax.plot(x, y, label=label.format(name=name, area=area))
    if kind == "roc":  # the chance diagonal
        ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    ax.set(**axes, title=title)
    ax.legend(loc=legend, fontsize=8)
    return _save(fig, path)


def roc_figure(
    y_true, probs, class_names: Sequence[str], pos: int | None, path: Path, title: str
) -> Path:
    return _curve_figure("roc", y_true, probs, class_names, pos, path, title)


def pr_figure(
    y_true, probs, class_names: Sequence[str], pos: int | None, path: Path, title: str
) -> Path:
    return _curve_figure("pr", y_true, probs, class_names, pos, path, title)


def confusion_figure(cm, class_names: Sequence[str], path: Path, title: str) -> Path:
    cm = np.asarray(cm)
    fig = _figure()
    ax = fig.add_subplot()
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        color = "white" if v > cm.max() / 2 else "black"
        ax.text(j, i, str(v), ha="center", va="center", color=color)
    ax.set_xticks(range(len(class_names)), class_names, rotation=20, fontsize=8)
    ax.set_yticks(range(len(class_names)), class_names, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return _save(fig, path)


def learning_curves_figure(history: pd.DataFrame, path: Path) -> Path | None:
    if history.empty:
        return None
    metrics = [m for m in ("loss", "auc", "accuracy") if m in history]
    fig = _figure(figsize=(4.0 * len(metrics), 3.4))
    for i, m in enumerate(metrics, start=1):
        ax = fig.add_subplot(1, len(metrics), i)
        ax.plot(history["epoch"] + 1, history[m], label="train")
        if f"val_{m}" in history:
            ax.plot(history["epoch"] + 1, history[f"val_{m}"], label="validation")
        ax.set(xlabel="epoch", title=m)
        ax.legend(fontsize=8)
    return _save(fig, path)


def reliability_figure(
    y_true, probs, class_names: Sequence[str], pos: int | None, ece: float, path: Path, title: str
) -> Path:
    """Reliability diagram (10 equal-width bins): the observed positive rate (binary) or
    top-class accuracy (multi-class) against the predicted probability, with each bin's count."""
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if pos is not None and probs.shape[1] == 2:
        conf, hit = probs[:, pos], (y_true == pos).astype(float)
        xlabel, ylabel = f"predicted p({class_names[pos]})", f"observed share {class_names[pos]}"
    else:
        conf, hit = probs.max(axis=1), (probs.argmax(axis=1) == y_true).astype(float)
        xlabel, ylabel = "top-class confidence", "accuracy"
    edges = np.linspace(0, 1, 11)
    which = np.minimum((conf * 10).astype(int), 9)
    centres, observed, counts = [], [], []
    for b in range(10):
        inside = which == b
        if inside.any():
            centres.append(conf[inside].mean())
            observed.append(hit[inside].mean())
            counts.append(int(inside.sum()))
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfect calibration")
    ax.bar(edges[:-1], [0] * 10, width=0.1)  # keeps the axis at the bins
    ax.plot(centres, observed, "o-", c="tab:red", label=f"model (ECE {ece:.3f})")
    for c, o, n in zip(centres, observed, counts, strict=True):
        ax.annotate(str(n), (c, o), textcoords="offset points", xytext=(0, 6), fontsize=7,
                    ha="center")  # fmt: skip
    ax.set(xlim=(0, 1), ylim=(0, 1.05), xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def write_figures(
    out_dir: Path, evaluation: dict, labels: dict, class_names, history: pd.DataFrame
) -> list[Path]:
    """All figures for a run; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pos = class_names.index(evaluation["positive_class"]) if evaluation["positive_class"] else None
    files = []
    for split in ("val", "test"):
        probs, y = evaluation["probs"][split], labels[split]
        name = "validation" if split == "val" else "test"
        files.append(
            roc_figure(y, probs, class_names, pos, out_dir / f"roc_{split}.png", f"ROC ({name})")
        )
        files.append(
            pr_figure(
                y,
                probs,
                class_names,
                pos,
                out_dir / f"pr_{split}.png",
                f"Precision-recall ({name})",
            )
        )
        files.append(
            confusion_figure(
                evaluation[split]["confusion_matrix"], class_names,
                out_dir / f"confusion_{split}.png", f"Confusion matrix ({name})",
            )
        )  # fmt: skip
    files.append(
        reliability_figure(
            labels["test"], evaluation["probs"]["test"], class_names, pos,
            evaluation["test"]["ece"], out_dir / "reliability_test.png",
            "Reliability (test)",
        )
    )  # fmt: skip
    curves = learning_curves_figure(history, out_dir / "learning_curves.png")
    if curves:
        files.append(curves)
    return files
