"""Output heads, the decision rule in words, and the preprocessing conventions."""

from __future__ import annotations

import numpy as np
import pytest

from cxr_viewer.core.errors import BundleError
from cxr_viewer.core.model.heads import Head, propose_head
from cxr_viewer.core.model.inference import Prediction
from cxr_viewer.core.model.preprocess import PREPROCESSINGS, InputSpec, normalize


def test_head_probabilities_and_units():
    binary = Head("binary", 1, "sigmoid")
    np.testing.assert_allclose(binary.probabilities(np.array([[0.8]])), [[0.2, 0.8]], atol=1e-7)
    assert binary.unit_for(1) == (0, 1.0) and binary.unit_for(0) == (0, -1.0)
    logit = Head("binary", 1, "linear")
    np.testing.assert_allclose(logit.probabilities(np.array([[0.0]])), [[0.5, 0.5]])
    soft = Head("softmax", 3, "linear")
    p = soft.probabilities(np.array([[1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(p[0], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum(), rtol=1e-6)
    multi = Head("multilabel", 3, "sigmoid")
    np.testing.assert_allclose(multi.probabilities(np.array([[0.9, 0.1, 0.7]])), [[0.9, 0.1, 0.7]])
    assert multi.unit_for(2) == (2, 1.0) and multi.n_classes == 3
    # logits (a linear final activation) on every kind: only the link differs
    multi_logit = Head("multilabel", 3, "linear")
    z = np.array([[2.0, -2.0, 0.0]])
    np.testing.assert_allclose(multi_logit.probabilities(z), 1 / (1 + np.exp(-z)), rtol=1e-6)
    with pytest.raises(BundleError, match="not mutually exclusive"):
        Head("softmax", 2, "sigmoid")
    with pytest.raises(BundleError, match="one output unit"):
        Head("binary", 2, "sigmoid")


def test_proposed_heads():
    assert propose_head(1, "sigmoid") == "binary"
    assert propose_head(1, "linear") == "binary"
    assert propose_head(2, "softmax") == "softmax"
    assert propose_head(2, "sigmoid") == "multilabel"
    assert propose_head(14, "sigmoid") == "multilabel"
    assert propose_head(3, "linear") == "softmax"


def test_schema_1_metadata_is_a_softmax_head():
    head = Head.from_metadata({"output": {"activation": "sigmoid", "classes": 2}}, 2)
    assert head == Head("softmax", 2, "softmax")
    with pytest.raises(BundleError, match="do not match its output head"):
        Head.from_metadata(
            {"output": {"kind": "multilabel", "units": 3, "activation": "sigmoid"}}, 2
        )


def _pred(p, names, **kw) -> Prediction:
    return Prediction(np.asarray(p, np.float32), tuple(names), **kw)


def test_binary_rule_text():
    pred = _pred([0.09, 0.91], ["normal", "pneumonia"], threshold=0.62,
                 positive_class="pneumonia")  # fmt: skip
    assert pred.rule_text() == "PNEUMONIA — p 0.91 ≥ threshold 0.62"
    assert pred.predicted_class == "pneumonia" and not pred.is_near_threshold
    low = _pred([0.4, 0.6], ["normal", "pneumonia"], threshold=0.62, positive_class="pneumonia")
    assert low.rule_text() == "NORMAL — p(pneumonia) 0.60 < threshold 0.62"
    assert low.predicted_class == "normal" and low.is_near_threshold
    # a binary sigmoid head without a threshold decides at 0.5
    sig = _pred([0.45, 0.55], ["no nodule", "nodule"], kind="binary", positive_class="nodule")
    assert sig.rule_text() == "NODULE — p 0.55 ≥ threshold 0.50"


def test_softmax_rule_text_without_threshold():
    pred = _pred([0.2, 0.7, 0.1], ["normal", "bacterial", "viral"])
    assert pred.rule_text() == "BACTERIAL — p 0.70, the highest of 3 classes"
    assert pred.threshold_of(1) is None and not pred.is_near_threshold


def test_multilabel_findings():
    names = ["nodule", "effusion", "edema"]
    pred = _pred([0.9, 0.2, 0.58], names, kind="multilabel", thresholds=(0.5, 0.3, 0.6))
    assert pred.order() == [0, 2, 1]
    assert pred.positive_findings == [0]
    assert pred.predicted_class == "nodule"
    assert pred.predicted_index == 0  # the top finding above threshold is explained by default
    # edema is the most probable but below its threshold: effusion (above) is explained
    shifted = _pred([0.2, 0.35, 0.58], names, kind="multilabel", thresholds=(0.5, 0.3, 0.6))
    assert shifted.predicted_index == 1
    assert pred.rule_text() == "1 of 3 above threshold: nodule — p 0.90 ≥ threshold 0.50"
    assert pred.rule_text(2) == "edema — p 0.58 < threshold 0.60"
    assert pred.near_threshold(2) and not pred.near_threshold(0)
    none = _pred([0.1, 0.2, 0.3], names, kind="multilabel")
    assert none.predicted_class == "no finding above threshold"
    assert none.rule_text().startswith("No finding above threshold (highest: edema")


@pytest.mark.parametrize(
    "name,module",
    [
        ("symmetric", "mobilenet_v2"),
        ("caffe", "vgg16"),
        ("torch", "densenet"),
    ],
)
def test_conventions_match_keras_applications(name, module):
    """A grey image through each convention equals keras.applications' preprocess_input."""
    import importlib

    keras_app = importlib.import_module(f"keras.applications.{module}")
    img = np.random.default_rng(0).uniform(0, 1, (2, 8, 8)).astype(np.float32)
    ours = normalize(img, InputSpec(8, 8, 3, name))
    rgb = np.repeat(img[..., None], 3, axis=-1) * 255.0
    theirs = np.asarray(keras_app.preprocess_input(rgb.copy()))
    np.testing.assert_allclose(ours, theirs, atol=1e-3)


def test_raw_and_grey_channels():
    img = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    np.testing.assert_allclose(normalize(img, InputSpec(8, 8, 1, "raw"))[..., 0], img * 255)
    spec = InputSpec(8, 8, 3, "caffe")
    back = spec.to_unit(normalize(img, spec))
    np.testing.assert_allclose(back, np.repeat(img[..., None], 3, -1), atol=1e-5)
    assert set(PREPROCESSINGS) == {"unit", "symmetric", "raw", "caffe", "torch"}
    assert InputSpec(8, 8, 3, "torch").to_dict()["value_range"][0][0] == pytest.approx(
        -0.485 / 0.229
    )


def test_gradcam_default_is_the_last_convolution_past_pooling_and_dropout():
    keras = pytest.importorskip("keras")
    from cxr_viewer.core.explain.layers import default_gradcam_layer

    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="block5_conv3")(inp)
    x = keras.layers.MaxPooling2D(name="block5_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    vgg_like = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(x))
    assert default_gradcam_layer(vgg_like) == "block5_conv3"
    y = keras.layers.Conv2D(4, 3, name="conv")(inp)
    y = keras.layers.ReLU(name="relu")(y)
    y = keras.layers.SpatialDropout2D(0.2, name="drop")(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    dropped = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(y))
    assert default_gradcam_layer(dropped) == "relu"  # the convolution's activation
