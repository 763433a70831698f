"""The LIME tests' shared parts: a tiny linear Keras model whose effect per superpixel is set by
construction, the settings it is explained with, and a flat 32-px test image."""

from __future__ import annotations

import numpy as np
import pytest

from cxr_viewer.core.explain.lime_explainer import LimeSettings, segment

SIZE = 32
#: the sampling and stopping tests fit the probability (its sigmoid curvature is what the designs
#: and the split-half rule have to cope with); on this model the log-odds are exactly linear in
#: the masks (test_lime_sampling.py::test_log_odds_of_a_linear_logit_are_recovered_exactly)
SETTINGS = {
    "n_segments": 16,
    "hide_color": 0.0,
    "chunk_size": 32,
    "min_samples": 128,
    "output": "probability",
}


def flat_image_and_segments() -> tuple[np.ndarray, np.ndarray]:
    """A near-flat grey image (a little noise) and its SLIC superpixels under SETTINGS."""
    rng = np.random.default_rng(3)
    x = (0.5 + 0.05 * rng.standard_normal((SIZE, SIZE, 1))).astype(np.float32)
    settings = LimeSettings.from_mapping(SETTINGS).as_dict()
    return x, segment(np.repeat(x, 3, axis=2), settings, 0)


def linear_classifier(tmp_path, per_superpixel: np.ndarray, segments: np.ndarray):
    """softmax([0, Σ_p c_p x_p + b]) with c spread evenly over each superpixel's pixels, so
    switching superpixel i off (to grey 0) lowers the logit by per_superpixel[i] × its mean
    grey level (≈ 0.5); b centres the logit when half the superpixels are off, keeping the
    model in its near-linear range."""
    pytest.importorskip("tensorflow")
    import keras

    from cxr_viewer.core.model.bundle import write_bundle
    from cxr_viewer.core.model.inference import Classifier
    from cxr_viewer.core.model.preprocess import InputSpec

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
