"""Issue 31: a Lambda wrapping keras.applications' preprocess_input is recognised from the
configuration and replaced by the equivalent convention; its stored code is never run (nor
unmarshalled); every other Lambda stays refused with a clear message."""

from __future__ import annotations

import marshal
import os

import numpy as np
import pytest

from cxr_viewer.core.errors import BundleError
from cxr_viewer.core.model.preprocess import normalize

pytest.importorskip("tf_keras")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
SIZE = 32


def _small(k, fn=None, where="input"):
    inp = k.Input((SIZE, SIZE, 3), name="image")
    x = k.layers.Lambda(fn, name="pre")(inp) if fn is not None and where == "input" else inp
    x = k.layers.Conv2D(6, 3, activation="relu", name="c1")(x)
    if fn is not None and where == "middle":
        x = k.layers.Lambda(fn, name="pre")(x)
    x = k.layers.Conv2D(6, 3, activation="relu", name="c2")(x)
    x = k.layers.GlobalAveragePooling2D(name="gap")(x)
    return k.Model(inp, k.layers.Dense(2, activation="softmax", name="head")(x))


def _grey_pixels(n=3, seed=0):
    grey = np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 1))
    return np.repeat(grey, 3, axis=-1).astype(np.float32)


def _import(path, out, **kw):
    from cxr_viewer.core.importer import import_model

    return import_model(path, ["normal", "lesion"], out_dir=out, n_background=3, **kw)


def test_keras2_densenet_preprocess_lambda_becomes_the_torch_convention(tmp_path, monkeypatch):
    import tf_keras

    model = _small(tf_keras, tf_keras.applications.densenet.preprocess_input)
    path = tmp_path / "m.h5"
    model.save(path, save_format="h5")

    def no_unmarshal(*a, **k):  # the Lambda's stored byte code must never be read as code
        raise AssertionError("stored code was unmarshalled")

    monkeypatch.setattr(marshal, "loads", no_unmarshal)
    bundle = _import(path, tmp_path / "b")
    info = bundle.metadata["preprocess_lambda"]
    assert info["application"] == "densenet" and info["convention"] == "torch"
    assert "tf_keras.src.applications.densenet" in info["evidence"]
    assert bundle.input_spec.preprocessing == "torch"
    assert "preprocess_input" in bundle.metadata["preprocessing_reason"]
    monkeypatch.undo()
    x = _grey_pixels()
    fed = normalize(x[..., 0] / 255.0, bundle.input_spec)
    np.testing.assert_allclose(
        np.asarray(bundle.load_model()(fed)), model.predict(x, verbose=0), atol=1e-5
    )


def test_keras3_preprocess_lambda_is_told_by_its_backbone_and_never_deserialized(
    tmp_path, monkeypatch
):
    import keras

    base = keras.applications.MobileNetV2(
        input_shape=(SIZE, SIZE, 3), alpha=0.35, include_top=False, weights=None
    )
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Lambda(keras.applications.mobilenet_v2.preprocess_input, name="pre")(inp)
    x = keras.layers.GlobalAveragePooling2D()(base(x))
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(x))
    path = tmp_path / "m.keras"
    model.save(path)

    def no_lambda(*a, **k):
        raise AssertionError("a Lambda layer was deserialized")

    monkeypatch.setattr(keras.layers.Lambda, "from_config", classmethod(no_lambda))
    bundle = _import(path, tmp_path / "b")
    monkeypatch.undo()
    info = bundle.metadata["preprocess_lambda"]
    assert info["convention"] == "symmetric" and "mobilenetv2" in info["evidence"]
    x = _grey_pixels()
    fed = normalize(x[..., 0] / 255.0, bundle.input_spec)
    np.testing.assert_allclose(
        np.asarray(bundle.load_model()(fed)), np.asarray(model(x)), atol=1e-5
    )


def test_keras3_preprocess_lambda_without_a_backbone_is_refused(tmp_path):
    import keras

    model = _small(keras, keras.applications.resnet50.preprocess_input)
    path = tmp_path / "m.keras"
    model.save(path)
    with pytest.raises(BundleError) as err:
        _import(path, tmp_path / "b")
    assert "layer 'pre' is a Lambda" in err.value.what
    assert "no keras.applications backbone" in err.value.why
    assert "Rescaling" in err.value.hint


def test_preprocess_lambda_inside_the_model_is_refused(tmp_path):
    import tf_keras

    model = _small(tf_keras, tf_keras.applications.mobilenet_v2.preprocess_input, where="middle")
    path = tmp_path / "m.h5"
    model.save(path, save_format="h5")
    with pytest.raises(BundleError, match="not the model's first step") as err:
        _import(path, tmp_path / "b")
    assert "c1" in err.value.why


def test_an_explicit_preprocessing_contradicting_the_lambda_is_refused(tmp_path):
    import tf_keras

    model = _small(tf_keras, tf_keras.applications.vgg16.preprocess_input)
    path = tmp_path / "m.h5"
    model.save(path, save_format="h5")
    with pytest.raises(BundleError, match="does its own preprocessing"):
        _import(path, tmp_path / "b", preprocessing="unit")


def test_any_other_lambda_stays_refused(tmp_path):
    import tf_keras

    model = _small(tf_keras, lambda t: t / 255.0)
    path = tmp_path / "m.h5"
    model.save(path, save_format="h5")
    with pytest.raises(BundleError) as err:
        _import(path, tmp_path / "b")
    assert "/pre' is a Lambda" in str(err.value)
    assert "safe mode" in err.value.why
