"""What the importer reads from a model configuration: head and preprocessing proposals."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from cxr_viewer.core.importer.inspect import summarize_config  # noqa: E402


def _summary(model):
    return summarize_config(keras.saving.serialize_keras_object(model))


def _head(x, units=2, activation="softmax"):
    x = keras.layers.Conv2D(4, 3, name="c")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.layers.Dense(units, activation=activation)(x)


@pytest.mark.parametrize(
    "scale,offset,expected",
    [(1 / 255, 0.0, "raw"), (1 / 127.5, -1.0, "raw"), (2.0, -1.0, "unit"), (1.0, 0.0, "unit")],
)
def test_rescaling_layer_tells_the_input_range(scale, offset, expected):
    inp = keras.Input((16, 16, 1))
    model = keras.Model(inp, _head(keras.layers.Rescaling(scale, offset=offset)(inp)))
    s = _summary(model)
    assert s.preprocessing == expected and "Rescaling" in s.preprocessing_reason


def test_normalization_layer():
    inp = keras.Input((16, 16, 1))
    norm = keras.layers.Normalization(mean=120.0, variance=400.0)
    s = _summary(keras.Model(inp, _head(norm(inp))))
    assert s.preprocessing == "raw" and "pixel units" in s.preprocessing_reason
    adapted = keras.layers.Normalization()
    adapted.adapt(np.random.default_rng(0).uniform(0, 1, (8, 16, 16, 1)).astype("float32"))
    model = keras.Model(inp, _head(adapted(inp)))
    s = _summary(model)
    assert "normalises itself" in s.preprocessing_reason  # the mean is in the weights…
    from cxr_viewer.core.importer.api import _refine_normalization

    refined = _refine_normalization(s, model)  # … and read from them after loading
    assert refined.preprocessing == "unit" and "[0, 1] units" in refined.preprocessing_reason


@pytest.mark.parametrize(
    "name,expected",
    [
        ("densenet121", "torch"),
        ("resnet50", "caffe"),
        ("vgg16", "caffe"),
        ("resnet50v2", "symmetric"),
        ("mobilenetv2_1.00_224", "symmetric"),
        ("efficientnetb0", "raw"),
        ("my_backbone", "unit"),
    ],
)
def test_backbone_name_gives_its_convention(name, expected):
    bi = keras.Input((16, 16, 3))
    backbone = keras.Model(bi, keras.layers.Conv2D(4, 3)(bi), name=name)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone(inp))
    s = _summary(keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x)))
    assert s.preprocessing == expected


@pytest.mark.parametrize(
    "units,activation,head",
    [(1, "sigmoid", "binary"), (2, "softmax", "softmax"), (14, "sigmoid", "multilabel"),
     (3, None, "softmax"), (1, None, "binary")],
)  # fmt: skip
def test_output_head_is_read(units, activation, head):
    inp = keras.Input((16, 16, 1))
    s = _summary(keras.Model(inp, _head(inp, units, activation)))
    assert s.units == units and s.head == head
    assert s.activation == (activation or "linear")


def test_separate_activation_layer_is_read():
    inp = keras.Input((16, 16, 1))
    x = _head(inp, 5, None)
    s = _summary(keras.Model(inp, keras.layers.Activation("sigmoid")(x)))
    assert (s.units, s.activation, s.head) == (5, "sigmoid", "multilabel")
