"""Metrics, threshold choice on validation, and the figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxr_viewer.core.errors import TrainingError
from trainer.evaluate import choose_threshold, compute_metrics, positive_index, predict_labels
from trainer.figures import write_figures


def test_youden_and_f1_thresholds_separate_separable_scores():
    y = np.array([0, 0, 0, 0, 1, 1, 1])
    score = np.array([0.1, 0.2, 0.3, 0.35, 0.6, 0.7, 0.9])
    for rule in ("youden", "f1"):
        t = choose_threshold(y, score, rule)
        assert 0.35 < t <= 0.6
        assert np.array_equal(score >= t, y == 1)
    assert choose_threshold(np.ones(3), np.array([0.2, 0.5, 0.9])) == 0.5  # single class


def test_compute_metrics_binary_known_values():
    y = np.array([0, 0, 1, 1, 1])
    p1 = np.array([0.2, 0.6, 0.7, 0.4, 0.9])
    probs = np.stack([1 - p1, p1], axis=1)
    m = compute_metrics(y, probs, ["neg", "pos"], threshold=0.5, pos=1)
    # predictions: 0, 1, 1, 0, 1
    assert m["confusion_matrix"] == [[1, 1], [1, 2]]
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["per_class"]["pos"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["pos"]["recall"] == pytest.approx(2 / 3)
    assert m["per_class"]["neg"]["support"] == 2
    assert m["auc"] == pytest.approx(5 / 6)  # 5 of the 6 (pos, neg) pairs ranked right
    # a different threshold changes the decisions but not the AUC
    m2 = compute_metrics(y, probs, ["neg", "pos"], threshold=0.35, pos=1)
    assert m2["confusion_matrix"] == [[1, 1], [0, 3]] and m2["auc"] == m["auc"]


def test_compute_metrics_multiclass_and_single_class_auc():
    y = np.array([0, 1, 2, 2])
    probs = np.eye(3)[[0, 1, 2, 1]] * 0.8 + 0.2 / 3
    m = compute_metrics(y, probs, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(0.75) and m["auc"] is not None
    single = compute_metrics(np.array([1, 1]), np.array([[0.3, 0.7], [0.6, 0.4]]), ["a", "b"],
                             threshold=0.5, pos=1)  # fmt: skip
    assert single["auc"] is None


def test_positive_index_and_labels():
    assert positive_index(["a", "b"], "") == 1 and positive_index(["a", "b"], "a") == 0
    with pytest.raises(TrainingError):
        positive_index(["a", "b"], "c")
    probs = np.array([[0.7, 0.3], [0.4, 0.6]])
    assert list(predict_labels(probs, 0.25, 1)) == [1, 1]
    assert list(predict_labels(probs, 0.65, 0)) == [0, 1]


def test_figures_are_written(tmp_path):
    rng = np.random.default_rng(0)
    y = {"val": np.array([0, 1] * 10), "test": np.array([0, 1] * 8)}
    probs = {}
    for s, labels in y.items():
        p = np.clip(labels * 0.5 + rng.uniform(0, 0.5, len(labels)), 0, 1)
        probs[s] = np.stack([1 - p, p], axis=1)
    evaluation = {"positive_class": "pos", "probs": probs}
    for s in y:
        evaluation[s] = compute_metrics(y[s], probs[s], ["neg", "pos"], threshold=0.5, pos=1)
    hist = pd.DataFrame({"epoch": [0, 1], "loss": [1.0, 0.5], "val_loss": [1.1, 0.7],
                         "auc": [0.6, 0.9], "val_auc": [0.5, 0.8]})  # fmt: skip
    files = write_figures(tmp_path, evaluation, y, ["neg", "pos"], hist)
    assert len(files) == 8 and all(f.stat().st_size > 1000 for f in files)
