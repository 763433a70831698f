"""Model builders: flat backbones (every layer addressable), the head, fine-tuning, weights."""

from __future__ import annotations

import pytest

from cxr_viewer.core.errors import TrainingError
from cxr_viewer.core.model.preprocess import InputSpec
from trainer.config import ModelConfig
from trainer.models import build_model


def _head_ok(model, n_classes):
    names = [layer.name for layer in model.layers]
    assert names[-5:] == ["head_pool", "head_dropout", "head_dense", "head_leaky_relu", "output"]
    assert model.get_layer("output").activation.__name__ == "softmax"
    assert tuple(model.output.shape) == (None, n_classes)
    # flat: no layer is itself a model
    assert not any(hasattr(layer, "layers") for layer in model.layers)


def test_resnet50v2_is_flat_and_fine_tunes_from_layer_n():
    from cxr_viewer.core.explain.layers import default_gradcam_layer

    model = build_model(
        ModelConfig(architecture="resnet50v2", fine_tune_from=100), InputSpec(64, 64, 3), 3
    )
    _head_ok(model, 3)
    for name in ("conv1_conv", "conv3_block1_preact_relu", "post_relu"):
        model.get_layer(name)
    assert default_gradcam_layer(model) == "post_relu"
    assert not any(layer.trainable for layer in model.layers[:100] if layer.weights)
    assert all(layer.trainable for layer in model.layers[100:])


def test_mobilenetv2_and_dcnn_resnet(tmp_path):
    import keras

    mobile = build_model(ModelConfig(architecture="mobilenetv2", alpha=0.35), InputSpec(96, 96), 2)
    _head_ok(mobile, 2)
    mobile.get_layer("out_relu")
    dcnn = build_model(ModelConfig(blocks=3), InputSpec(224, 224, 1), 2)
    _head_ok(dcnn, 2)
    assert tuple(dcnn.get_layer("block3_out").output.shape[1:3]) == (7, 7)
    # names survive saving and safe-mode loading
    path = tmp_path / "m.keras"
    dcnn.save(path)
    again = keras.saving.load_model(path, safe_mode=True, compile=False)
    assert [layer.name for layer in again.layers] == [layer.name for layer in dcnn.layers]


def test_weights_file_errors_name_the_expected_file(tmp_path):
    with pytest.raises(TrainingError, match="not found") as err:
        build_model(
            ModelConfig(architecture="resnet50v2", weights=str(tmp_path / "none.h5")),
            InputSpec(64, 64),
            2,
        )
    assert "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5" in str(err.value)
    (tmp_path / "w.h5").write_bytes(b"x")  # not an HDF5 file
    with pytest.raises(TrainingError, match="Cannot build the mobilenetv2 backbone") as err:
        build_model(
            ModelConfig(architecture="mobilenetv2", weights=str(tmp_path / "w.h5")),
            InputSpec(64, 64, 1),
            2,
        )
    assert "no-top file" in str(err.value)


def test_fine_tune_from_past_the_end():
    with pytest.raises(TrainingError, match="past the last layer"):
        build_model(ModelConfig(blocks=1, fine_tune_from=10_000), InputSpec(32, 32), 2)


def test_two_class_cam_head_logits_are_one_evidence_map():
    """Two classes: head_cam is (-e/2, +e/2) of one evidence map e, so the softmax is
    sigmoid(mean e) and each class's logit map is exactly its share of the decision (no common
    mode per location that the softmax ignores but a one-class Grad-CAM would show)."""
    import keras
    import numpy as np

    model = build_model(
        ModelConfig(architecture="mobilenet", alpha=0.25, head="cam", dropout=0.0),
        InputSpec(64, 64, 1),
        2,
    )
    x = np.random.default_rng(0).uniform(-1, 1, (3, 64, 64, 1)).astype("float32")
    cam = np.asarray(keras.Model(model.input, model.get_layer("head_cam").output)(x))
    assert cam.shape == (3, 2, 2, 2)
    np.testing.assert_allclose(cam[..., 0], -cam[..., 1], atol=1e-6)
    e = cam[..., 1] - cam[..., 0]
    p = np.asarray(model(x))[:, 1]
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-e.mean(axis=(1, 2)))), atol=1e-5)


def test_softmax_weighted_cam_pool_sums_its_map_and_loads_in_safe_mode(tmp_path):
    """model.cam_pool = r: head_cam holds each location's share c = softmax(r e) * e of the
    decision (so Grad-CAM of it is the decision, as with the mean), the box loss still sees e
    itself, and the bundle's model loads in safe mode (standard layers only)."""
    import keras
    import numpy as np

    from trainer.models import cam_training_model

    model = build_model(
        ModelConfig(architecture="mobilenet", alpha=0.25, head="cam", dropout=0.0, cam_pool=3.0),
        InputSpec(64, 64, 1),
        2,
    )
    x = np.random.default_rng(0).uniform(-1, 1, (3, 64, 64, 1)).astype("float32")
    e = np.asarray(keras.Model(model.input, model.get_layer("head_evidence").output)(x))[..., 0]
    cam = np.asarray(keras.Model(model.input, model.get_layer("head_cam").output)(x))
    w = np.exp(3.0 * e.reshape(3, -1))
    w /= w.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(cam[..., 1].reshape(3, -1), (w * e.reshape(3, -1)) / 2, atol=1e-5)
    z = (w * e.reshape(3, -1)).sum(axis=1)
    p = np.asarray(model(x))[:, 1]
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-z)), atol=1e-5)
    pair = np.asarray(cam_training_model(model)(x)[1])
    np.testing.assert_allclose(pair[..., 1] - pair[..., 0], e, atol=1e-5)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True, compile=False)
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(model(x)), atol=1e-6)
    from cxr_viewer.core.explain.layers import default_gradcam_layer

    assert default_gradcam_layer(model) == "head_cam"
    with pytest.raises(TrainingError, match="needs two classes"):
        build_model(
            ModelConfig(architecture="mobilenet", alpha=0.25, head="cam", cam_pool=3.0),
            InputSpec(64, 64, 1),
            3,
        )


def test_feature_layer_reads_an_earlier_finer_backbone_layer():
    model = build_model(
        ModelConfig(
            architecture="mobilenet", alpha=0.25, head="cam", feature_layer="conv_pw_11_relu"
        ),
        InputSpec(64, 64, 1),
        2,
    )
    assert tuple(model.get_layer("head_cam").output.shape) == (None, 4, 4, 2)  # stride 16
    names = {layer.name for layer in model.layers}
    assert "conv_pw_11_relu" in names and "conv_pw_13_relu" not in names
    with pytest.raises(TrainingError, match="no layer 'conv_pw_99'") as err:
        build_model(
            ModelConfig(architecture="mobilenet", alpha=0.25, feature_layer="conv_pw_99"),
            InputSpec(64, 64, 1),
            2,
        )
    assert "conv_pw_13_relu" in str(err.value)


def test_feature_layer_is_refused_for_the_small_resnet():
    from trainer.config import load_config

    with pytest.raises(TrainingError, match="model.feature_layer"):
        load_config(None, {"model.feature_layer": "conv_pw_11_relu"})
