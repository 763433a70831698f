"""Operating point, calibration, per-subtype sensitivity, the model card's words."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxr_viewer.core.model.model_card import model_card_lines
from trainer.evaluate import (
    choose_threshold,
    compute_metrics,
    expected_calibration_error,
    subtype_sensitivity,
)


def test_ece_is_zero_for_calibrated_bins_and_the_gap_otherwise():
    # bin 0.25: 1 of 4 positive (rate 0.25); bin 0.75: 3 of 4 positive → perfectly calibrated
    p = np.array([0.25] * 4 + [0.75] * 4)
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    probs = np.stack([1 - p, p], axis=1)
    assert expected_calibration_error(y, probs, pos=1) == pytest.approx(0.0)
    # always 0.9 but only half positive: gap 0.4
    probs = np.stack([np.full(10, 0.1), np.full(10, 0.9)], axis=1)
    y = np.array([1, 0] * 5)
    assert expected_calibration_error(y, probs, pos=1) == pytest.approx(0.4)


def test_sensitivity_rule_reaches_the_target_on_validation():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    score = np.clip(y * 0.3 + rng.normal(0.4, 0.2, 400), 0, 1)
    thr = choose_threshold(y, score, "sensitivity", 0.95)
    assert (score[y == 1] >= thr).mean() >= 0.95
    # the highest such threshold: a hair higher misses the target
    assert (score[y == 1] >= np.nextafter(thr, 2)).mean() < 0.95


def test_metrics_report_sensitivity_specificity_and_per_class_auc():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    m = compute_metrics(np.array([0, 1, 1, 0]), probs, ["N", "P"], threshold=0.5, pos=1)
    assert m["sensitivity"] == pytest.approx(0.5) and m["specificity"] == pytest.approx(0.5)
    assert set(m["auc_per_class"]) == {"N", "P"} and 0 <= m["ece"] <= 1


def test_subtype_sensitivity_counts_only_positives_of_each_subtype():
    part = pd.DataFrame(
        {"y": [1, 1, 1, 1, 0], "subtype": ["bacteria"] * 2 + ["virus"] * 2 + ["normal"]}
    )
    probs = np.array([[0.1, 0.9], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7], [0.1, 0.9]])
    out = subtype_sensitivity(part, probs, 0.5, 1)
    assert out == {"bacteria": {"n": 2, "sensitivity": 0.5}, "virus": {"n": 2, "sensitivity": 1.0}}


def test_model_card_lines_put_test_auc_and_the_rule_first():
    meta = {
        "model_card": {
            "test_auc": 0.987, "test_images": 765, "test_patients": 402, "threshold": 0.62,
            "positive_class": "PNEUMONIA", "test_sensitivity": 0.96, "test_specificity": 0.9,
            "test_ece": 0.03, "training_population": "children aged 1-5",
            "intended_use": "demonstration", "not_for": "adults",
        }
    }  # fmt: skip
    lines = model_card_lines(meta)
    assert lines[0] == "Test AUC 0.987 on 765 held-out films of 402 patients not seen in training"
    assert (
        "PNEUMONIA when p ≥ 0.62" in lines[1] and "sensitivity 0.96, specificity 0.90" in lines[1]
    )
    assert any(line.startswith("Trained on: children") for line in lines)
    assert lines[-1] == "Not for: adults"
    short = model_card_lines(meta, short=True)
    assert short == [lines[0], lines[1], "Trained on: children aged 1-5", "Not for: adults"]
    # an old bundle: validation figure only, said as such
    old = model_card_lines({"metrics": {"auc": 0.63}, "intended_use": "research"})
    assert old[0].startswith("Validation AUC 0.630 (no held-out test figure")
