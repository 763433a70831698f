"""LIME's stopping rule: stop when two half-sample surrogates agree on the map, not before.

The end-to-end cases use a real (tiny, linear) Keras model whose effect per superpixel is set
by construction: either distinct for every superpixel (the ranking is resolvable, so the run
must stop early) or the same for all (a tie nothing can resolve, so it must use every sample).
"""

from __future__ import annotations

import numpy as np
import pytest

from cxr_viewer.core.explain.lime_explainer import (
    LimeExplainer,
    LimeSettings,
    SplitHalfRule,
    segment,
    top_area_overlap,
)

SIZE = 32
SETTINGS = {"n_segments": 16, "hide_color": 0.0, "chunk_size": 32, "min_samples": 128}


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


def _linear_classifier(tmp_path, per_superpixel: np.ndarray, segments: np.ndarray):
    """softmax([0, Σ_p c_p x_p + b]) with c spread evenly over each superpixel's pixels, so
    switching superpixel i off (to grey 0) lowers the logit by per_superpixel[i] × its mean
    grey level (≈ 0.5); b centres the logit when half the superpixels are off, keeping the
    model in its near-linear range."""
    pytest.importorskip("tensorflow")
    import keras

    from cxr_viewer.core.bundle import write_bundle
    from cxr_viewer.core.inference import Classifier
    from cxr_viewer.core.preprocess import InputSpec

    area = np.bincount(segments.ravel())
    coef = (per_superpixel / area)[segments].ravel()
    inp = keras.Input((SIZE, SIZE, 1))
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inp))
    model = keras.Model(inp, out)
    kernel = np.zeros((SIZE * SIZE, 2), np.float32)
    kernel[:, 1] = coef
    bias = -0.25 * float(per_superpixel.sum())
    model.layers[-1].set_weights([kernel, np.array([0.0, bias], np.float32)])
    bundle = write_bundle(
        tmp_path / "linear",
        model,
        name="linear",
        class_names=["a", "b"],
        input_spec=InputSpec(SIZE, SIZE, 1, "unit"),
        gradcam_layer=None,
        shap_layers=[],
        background=None,
    )
    return Classifier(bundle, batch_size=32)


@pytest.fixture(scope="module")
def image_and_segments():
    rng = np.random.default_rng(3)
    x = (0.5 + 0.05 * rng.standard_normal((SIZE, SIZE, 1))).astype(np.float32)
    settings = LimeSettings.from_mapping(SETTINGS).as_dict()
    return x, segment(np.repeat(x, 3, axis=2), settings, 0)


def test_resolvable_ranking_stops_early(tmp_path, image_and_segments):
    x, segments = image_and_segments
    n = int(segments.max()) + 1
    effects = 1.5 * (1 + np.random.default_rng(0).permutation(n)) / n  # distinct per superpixel
    clf = _linear_classifier(tmp_path, effects, segments)
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


def test_tied_superpixels_use_every_sample(tmp_path, image_and_segments):
    x, segments = image_and_segments
    n = int(segments.max()) + 1
    clf = _linear_classifier(tmp_path, np.full(n, 1.0), segments)  # all superpixels tie
    # odd caps: the image itself plus whole antithetic pairs reach them exactly
    hm = LimeExplainer(clf, {**SETTINGS, "num_samples": 401}).explain(x, 1)
    assert not hm.settings["converged"]
    assert hm.settings["samples_used"] == 401
    off = LimeExplainer(clf, {**SETTINGS, "num_samples": 201, "early_stop": False}).explain(x, 1)
    assert off.settings["samples_used"] == 201 and not off.settings["converged"]
