"""Which layers Grad-CAM and per-layer SHAP are offered at; nested backbones made addressable."""

from __future__ import annotations

import numpy as np
import pytest
from explain_support import build_small_cnn

from cxr_viewer.core.explain.layers import (
    default_gradcam_layer,
    gradcam_layers,
    is_cut_layer,
    shap_layers,
)
from cxr_viewer.core.model.graph import flatten_model

keras = pytest.importorskip("keras")


def test_small_residual_cnn():
    m = build_small_cnn(32, width=4)
    assert default_gradcam_layer(m) == "c4"
    assert {"stem", "b1_conv1", "b1_out", "c3", "c4"} <= set(gradcam_layers(m))
    # inside the residual block the skip connection bypasses a single layer: not a cut
    assert not is_cut_layer(m, "b1_conv1") and not is_cut_layer(m, "b1_conv2")
    assert all(is_cut_layer(m, n) for n in ("pool1", "b1_add", "b1_out", "c3", "c4"))
    offered = shap_layers(m)
    assert all(is_cut_layer(m, n) or n == "stem_conv" for n in offered) and offered[-1] == "c4"
    assert is_cut_layer(m, "b1_out") and not is_cut_layer(m, "b1_conv2")
    assert not is_cut_layer(m, "no_such_layer")
    assert len(shap_layers(m, max_layers=2)) == 2


def test_resnet50v2_offers_the_seeds_layers_and_deeper_blocks():
    m = keras.applications.ResNet50V2(weights=None, input_shape=(64, 64, 3), classes=2)
    assert default_gradcam_layer(m) == "post_relu"
    offered = shap_layers(m)
    # the seeds' choice: the inputs of conv1_conv (conv1_pad's output) and of
    # conv2_block1_1_conv / conv2_block1_0_conv (conv2_block1_preact_relu's output)
    assert offered[:2] == ["conv1_pad", "conv2_block1_preact_relu"]
    assert {"conv3_block1_preact_relu", "conv4_block1_preact_relu", "post_relu"} <= set(offered)
    assert not is_cut_layer(m, "conv2_block1_1_conv")


def test_nested_backbone_is_flattened_with_identical_outputs():
    inner = build_small_cnn(32, width=4)
    backbone = keras.Model(inner.inputs, inner.get_layer("c4").output, name="backbone")
    inp = keras.Input((32, 32, 1))
    x = backbone(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2, activation="softmax")(x)
    nested = keras.Model(inp, out)
    assert "c4" not in [layer.name for layer in nested.layers]
    flat = flatten_model(nested)
    x = np.random.default_rng(0).random((2, 32, 32, 1), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(flat(x)), np.asarray(nested(x)), atol=1e-6)
    assert default_gradcam_layer(nested) == "c4"
    assert is_cut_layer(nested, "b1_out")
    assert flatten_model(inner) is inner  # already flat: untouched


def test_gradcam_on_a_nested_bundle(tmp_path):
    from cxr_viewer.core.explain.registry import create_explainer
    from cxr_viewer.core.model.bundle import write_bundle
    from cxr_viewer.core.model.inference import Classifier
    from cxr_viewer.core.model.preprocess import InputSpec

    inner = build_small_cnn(32, width=4)
    backbone = keras.Model(inner.inputs, inner.get_layer("c4").output, name="backbone")
    inp = keras.Input((32, 32, 1))
    out = keras.layers.Dense(2, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(backbone(inp))
    )
    bundle = write_bundle(
        tmp_path / "nested",
        keras.Model(inp, out),
        name="nested",
        class_names=["a", "b"],
        input_spec=InputSpec(32, 32, 1),
        gradcam_layer=None,
        shap_layers=[],
        background=np.zeros((2, 32, 32, 1), np.float32),
    )
    clf = Classifier(bundle)
    hm = create_explainer("gradcam", clf).explain(np.ones((32, 32, 1), np.float32), 1)
    assert hm.layer == "c4" and hm.values.shape == (32, 32)
    assert "c4" in create_explainer("shap", clf).layers()
