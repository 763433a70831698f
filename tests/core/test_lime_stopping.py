"""LIME's stopping rule: stop when two half-sample surrogates agree on the map, not before.

The end-to-end cases use a real (tiny, linear) Keras model whose effect per superpixel is set
by construction: either distinct for every superpixel (the ranking is resolvable, so the run
must stop early) or the same for all (a tie nothing can resolve, so it must use every sample).
"""

from __future__ import annotations

import numpy as np
import pytest
from lime_support import SETTINGS, linear_classifier

from cxr_viewer.core.explain.lime_explainer import (
    LimeExplainer,
    LimeSettings,
    SplitHalfRule,
    top_area_overlap,
)


def test_top_area_overlap_counts_pixels_of_the_hot_region():
    segments = np.repeat(np.arange(10), 10).reshape(10, 10)  # ten rows of 10 px each
    a = np.arange(10, dtype=float)  # row 9 hottest, then row 8
    assert top_area_overlap(a, a.copy(), segments, 0.1) == 1.0
    b = a.copy()
    b[[8, 9]] = b[[9, 8]]  # the two hottest rows swap
    assert top_area_overlap(a, b, segments, 0.1) == 0.0
    assert top_area_overlap(a, b, segments, 0.2) == 1.0  # same top-2 set
    c = a.copy()
    c[[7, 8]] = c[[8, 7]]  # the 2nd and 3rd swap: half of the top 20 % changes
    assert top_area_overlap(a, c, segments, 0.2) == pytest.approx(0.5)


def test_rule_waits_for_min_samples_and_patience_and_resets():
    segments = np.repeat(np.arange(10), 10).reshape(10, 10)
    a = np.arange(10, dtype=float)
    swapped = a.copy()
    swapped[[8, 9]] = swapped[[9, 8]]
    rule = SplitHalfRule(
        min_samples=100, stop_rho=0.975, stop_overlap=0.95, top_fraction=0.1, patience=2
    )
    assert not rule.check(50, a, a, segments)  # below min_samples: never, and not counted
    assert rule.streak == 0
    assert not rule.check(100, a, a, segments)  # one agreeing check is not enough
    assert not rule.check(150, a, swapped, segments)  # the hot region differs: reset
    assert rule.streak == 0 and rule.agreement[1] == 0.0
    assert not rule.check(200, a, a, segments)
    assert rule.check(250, a, a, segments)
    assert rule.agreement == (pytest.approx(1.0), 1.0)


def test_resolvable_ranking_stops_early(tmp_path, image_and_segments):
    x, segments = image_and_segments
    n = int(segments.max()) + 1
    effects = 1.5 * (1 + np.random.default_rng(0).permutation(n)) / n  # distinct per superpixel
    clf = linear_classifier(tmp_path, effects, segments)
    partials = []
    explainer = LimeExplainer(clf, {**SETTINGS, "num_samples": 2000})
    hm = explainer.explain(x, 1, partial=partials.append)
    np.testing.assert_array_equal(explainer.last_segments, segments)
    assert hm.settings["converged"]
    assert hm.settings["samples_used"] < 1000  # stops after ~128-250 on this model
    stop = LimeSettings().as_dict()
    assert hm.trust["split_half_rho"] >= stop["stop_rho"]
    assert hm.trust["split_half_top_overlap"] >= stop["stop_overlap"]
    assert partials and all(p.partial for p in partials)
    # the map ranks the superpixels as the model does
    weights = np.array([hm.values[segments == i][0] for i in range(n)])
    assert np.argmax(weights) == np.argmax(effects)
    assert np.corrcoef(np.argsort(np.argsort(weights)), effects)[0, 1] > 0.95


def test_default_floor_holds_on_a_clean_model(tmp_path, image_and_segments):
    """With the default ``min_samples`` a model whose ranking resolves at once still runs to
    the first stop the floor allows (the split-half check is optimistic on clean models: the
    floor is what keeps the seed-to-seed agreement at lime's 1000-sample level)."""
    x, segments = image_and_segments
    n = int(segments.max()) + 1
    effects = 1.5 * (1 + np.random.default_rng(1).permutation(n)) / n
    clf = linear_classifier(tmp_path, effects, segments)
    settings = {k: v for k, v in SETTINGS.items() if k != "min_samples"}
    hm = LimeExplainer(clf, {**settings, "chunk_size": 48}).explain(x, 1)
    assert LimeSettings().min_samples == 500
    assert hm.settings["converged"]
    # 48-sample first chunk growing by 25 %: checks from 589 on, two agreeing in a row
    assert hm.settings["samples_used"] == 737


def test_tied_superpixels_use_every_sample(tmp_path, image_and_segments):
    x, segments = image_and_segments
    n = int(segments.max()) + 1
    clf = linear_classifier(tmp_path, np.full(n, 1.0), segments)  # all superpixels tie
    # odd caps: the image itself plus whole antithetic pairs reach them exactly
    hm = LimeExplainer(clf, {**SETTINGS, "num_samples": 401}).explain(x, 1)
    assert not hm.settings["converged"]
    assert hm.settings["samples_used"] == 401
    off = LimeExplainer(clf, {**SETTINGS, "num_samples": 201, "early_stop": False}).explain(x, 1)
    assert off.settings["samples_used"] == 201 and not off.settings["converged"]
