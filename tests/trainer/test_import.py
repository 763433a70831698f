"""``cxr-train import``: Keras 2 .h5 (flat, nested backbone) and Keras 3 .keras into bundles.

The Keras 2 models are built and saved with ``tf_keras`` (Keras 2 itself), with randomised
weights *and* batch-norm statistics, so a weight loaded into the wrong place changes the
outputs and the importer's verification (and these tests) would see it.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest

from cxr_viewer.core.errors import BundleError
from cxr_viewer.core.model.bundle import open_bundle, sha256_file

pytest.importorskip("tf_keras")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SIZE = 32
CLASSES = ["normal", "lesion"]


# --- model builders ------------------------------------------------------------------------


def _randomize(model, seed: int = 0) -> None:
    """Random weights everywhere, including BN statistics (defaults would hide BN mix-ups)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if hasattr(layer, "layers"):  # a nested model
            _randomize(layer, seed + 1)
            continue
        ws = layer.get_weights()
        if not ws:
            continue
        if type(layer).__name__ == "BatchNormalization":
            new = [
                rng.uniform(0.5, 1.5, w.shape) if i in (0, 3) else rng.normal(0, 0.2, w.shape)
                for i, w in enumerate(ws)
            ]
        else:
            new = [rng.normal(0, 0.3, w.shape) for w in ws]
        layer.set_weights([n.astype(np.float32) for n in new])


def _backbone(k, channels: int = 1, name: str = "backbone"):
    """A small functional backbone: conv/BN stem, a residual block, depthwise conv."""
    i = k.Input((SIZE, SIZE, channels))
    x = k.layers.Conv2D(8, 3, padding="same", name="stem_conv")(i)
    x = k.layers.BatchNormalization(name="stem_bn")(x)
    x = k.layers.ReLU(name="stem_relu")(x)
    y = k.layers.Conv2D(8, 3, padding="same", activation="relu", name="block_conv1")(x)
    y = k.layers.Conv2D(8, 3, padding="same", name="block_conv2")(y)
    x = k.layers.Add(name="block_add")([x, y])
    x = k.layers.ReLU(name="block_out")(x)
    x = k.layers.MaxPooling2D(name="pool")(x)
    x = k.layers.DepthwiseConv2D(3, padding="same", name="dw_conv")(x)
    x = k.layers.Conv2D(16, 1, activation="relu", name="top_conv")(x)
    return k.Model(i, x, name=name)


def _nested(k, n_out: int = 2):
    inp = k.Input((SIZE, SIZE, 1), name="image")
    x = k.layers.Rescaling(2.0, offset=-1.0, name="to_symmetric")(inp)
    x = _backbone(k)(x)
    x = k.layers.GlobalAveragePooling2D(name="gap")(x)
    x = k.layers.Dropout(0.3, name="drop")(x)
    return k.Model(inp, k.layers.Dense(n_out, activation="softmax", name="head")(x))


def _seq_nested(k):
    head = [k.layers.GlobalAveragePooling2D(), k.layers.Dense(2, activation="softmax")]
    return k.Sequential([_backbone(k), *head])


def _flat(k, n_out: int = 2):
    inp = k.Input((SIZE, SIZE, 1), name="image")
    x = k.layers.Conv2D(6, 3, activation="relu", name="c1")(inp)
    x = k.layers.BatchNormalization(name="bn")(x)
    x = k.layers.Conv2D(8, 3, activation="relu", name="c2")(x)
    x = k.layers.GlobalAveragePooling2D(name="gap")(x)
    return k.Model(inp, k.layers.Dense(n_out, activation="softmax", name="head")(x))


def _save_k2(model, path: Path, seed: int = 0) -> Path:
    _randomize(model, seed)
    model.save(path, save_format="h5")
    return path


@pytest.fixture(scope="module")
def k2():
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    return tf_keras


@pytest.fixture(scope="module")
def models(tmp_path_factory, k2):
    """Keras 2 .h5 files (+ their own predictions on fixed inputs) shared by the tests."""
    root = tmp_path_factory.mktemp("k2models")
    x = np.random.default_rng(1).uniform(0, 1, (5, SIZE, SIZE, 1)).astype(np.float32)
    out = {"x": x}
    for name, build in [
        ("flat", lambda: _flat(k2)),
        ("nested", lambda: _nested(k2)),
        ("seq_nested", lambda: _seq_nested(k2)),
    ]:
        m = build()
        out[name] = _save_k2(m, root / f"{name}.h5")
        out[f"{name}_pred"] = m.predict(x, verbose=0)
    return out


def _import(path, out, **kw):
    from cxr_viewer.core.importer import import_model

    kw.setdefault("n_background", 6)
    return import_model(path, kw.pop("classes", CLASSES), out_dir=out, **kw)


def _bundle_predict(bundle, x):
    from cxr_viewer.core.model.inference import Classifier

    return Classifier(bundle).predict_inputs(x)


# --- Keras 2 .h5 ------------------------------------------------------------------------


def test_flat_keras2_h5_imports_with_identical_predictions(models, tmp_path):
    bundle = _import(models["flat"], tmp_path / "b", preprocessing="unit", positive_class="lesion")
    np.testing.assert_allclose(_bundle_predict(bundle, models["x"]), models["flat_pred"], atol=1e-5)
    meta = json.loads((bundle.root / "metadata.json").read_text())
    assert meta["imported"] is True
    assert meta["source_file"] == "flat.h5"
    assert meta["source_format"] == "keras2-h5"
    assert meta["source_sha256"] == sha256_file(models["flat"])
    assert meta["classes"] == CLASSES and bundle.class_names == CLASSES
    assert meta["preprocessing"] == "unit" and meta["preprocessing_given"] is True
    assert meta["background_source"] == "synthetic phantoms"
    assert meta["verification"]["reference"].startswith("tf_keras")
    assert meta["verification"]["max_abs_diff"] <= 1e-4
    assert meta["flattened_nested_models"] == []
    assert bundle.positive_class == "lesion"
    assert (bundle.input_spec.height, bundle.input_spec.width, bundle.input_spec.channels) == (
        SIZE,
        SIZE,
        1,
    )
    assert bundle.gradcam_layer == "c2"
    assert bundle.background().shape == (6, SIZE, SIZE, 1)


@pytest.fixture(scope="module")
def nested_bundle(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("nested") / "bundle"
    return _import(models["nested"], out, preprocessing="unit")


def test_nested_keras2_h5_is_flattened_with_identical_predictions(models, nested_bundle):
    model = nested_bundle.load_model()
    names = {layer.name for layer in model.layers}
    assert {"stem_conv", "block_add", "dw_conv", "top_conv", "head"} <= names
    assert not any(hasattr(layer, "layers") for layer in model.layers), "still nested"
    assert nested_bundle.metadata["flattened_nested_models"] == ["backbone"]
    np.testing.assert_allclose(
        _bundle_predict(nested_bundle, models["x"]), models["nested_pred"], atol=1e-5
    )
    # inner layers are addressable as tensors of the flat graph
    import keras

    sub = keras.Model(model.input, [model.get_layer("stem_relu").output, model.output])
    act, _ = sub(models["x"][:1])
    assert tuple(act.shape) == (1, SIZE, SIZE, 8)
    assert nested_bundle.gradcam_layer == "top_conv"
    assert nested_bundle.shap_layers and set(nested_bundle.shap_layers) <= names
    assert "block_conv1" not in nested_bundle.shap_layers  # bypassed by the skip connection


def test_sequential_with_nested_backbone_h5(models, tmp_path):
    bundle = _import(models["seq_nested"], tmp_path / "b")
    np.testing.assert_allclose(
        _bundle_predict(bundle, models["x"]), models["seq_nested_pred"], atol=1e-5
    )
    assert bundle.metadata["preprocessing_given"] is False  # assumed "unit", and said so
    assert "top_conv" in {layer.name for layer in bundle.load_model().layers}


def test_gradcam_lime_and_shap_run_on_imported_nested_bundle(nested_bundle, models):
    from cxr_viewer.core.explain.registry import create_explainer
    from cxr_viewer.core.model.inference import Classifier

    clf = Classifier(nested_bundle)
    x = models["x"][0]
    target = int(np.argmax(clf.predict_inputs(x[None])[0]))
    settings = {
        "gradcam": {},
        "lime": {"num_samples": 64, "n_segments": 16, "min_samples": 32, "chunk_size": 32},
        "shap": {"layer": nested_bundle.shap_layers[0], "nsamples": 8, "max_background": 4},
    }
    for method, s in settings.items():
        hm = create_explainer(method, clf, s).explain(x, target)
        assert hm.values.shape == (SIZE, SIZE), method
        assert np.all(np.isfinite(hm.values)), method
        assert np.abs(hm.values).max() > 0, f"{method} gave an all-zero map"
    gc = create_explainer("gradcam", clf).explain(x, target)
    assert gc.layer == nested_bundle.gradcam_layer


@pytest.mark.slow
def test_nested_mobilenetv2_h5(k2, tmp_path):
    base = k2.applications.MobileNetV2(
        input_shape=(SIZE, SIZE, 3), alpha=0.35, include_top=False, weights=None
    )
    inp = k2.Input((SIZE, SIZE, 3))
    x = k2.layers.GlobalAveragePooling2D()(base(inp, training=False))
    model = k2.Model(inp, k2.layers.Dense(3, activation="softmax")(x))
    path = _save_k2(model, tmp_path / "mnv2.h5", seed=3)
    x = np.random.default_rng(2).uniform(-1, 1, (3, SIZE, SIZE, 3)).astype(np.float32)
    bundle = _import(path, tmp_path / "b", classes=["a", "b", "c"], preprocessing="symmetric")
    flat = bundle.load_model()
    np.testing.assert_allclose(np.asarray(flat(x)), model.predict(x, verbose=0), atol=1e-5)
    names = {layer.name for layer in flat.layers}
    assert "Conv1" in names and "block_1_expand" in names
    assert bundle.input_spec.preprocessing == "symmetric"


# --- Keras 3 .keras -------------------------------------------------------------------------


def test_keras3_nested_keras_file_is_flattened(tmp_path):
    import keras

    model = _nested(keras)
    _randomize(model, 5)
    path = tmp_path / "nested.keras"
    model.save(path)
    x = np.random.default_rng(3).uniform(0, 1, (3, SIZE, SIZE, 1)).astype(np.float32)
    bundle = _import(path, tmp_path / "b")
    np.testing.assert_allclose(_bundle_predict(bundle, x), np.asarray(model(x)), atol=1e-5)
    assert bundle.metadata["source_format"] == "keras3"
    assert bundle.metadata["flattened_nested_models"] == ["backbone"]
    assert bundle.gradcam_layer == "top_conv"
    # the same model saved by Keras 3 in the legacy .h5 format
    model.save(tmp_path / "nested.h5")
    bundle = _import(tmp_path / "nested.h5", tmp_path / "b_h5")
    assert bundle.metadata["source_format"] == "keras3-h5"
    np.testing.assert_allclose(np.asarray(bundle.load_model()(x)), np.asarray(model(x)), atol=1e-5)


# --- refusals -------------------------------------------------------------------------------


def test_lambda_h5_is_refused_before_loading(k2, tmp_path, monkeypatch):
    inp = k2.Input((SIZE, SIZE, 1))
    x = k2.layers.Conv2D(4, 3, name="c")(inp)
    x = k2.layers.Lambda(lambda t: t * 2.0, name="double")(x)
    x = k2.layers.GlobalAveragePooling2D()(x)
    path = tmp_path / "lambda.h5"
    k2.Model(inp, k2.layers.Dense(2, activation="softmax")(x)).save(path, save_format="h5")

    def no_load(*a, **k):  # the file must never reach a loader
        raise AssertionError("a Lambda model reached tf_keras' loader")

    monkeypatch.setattr(k2.models, "load_model", no_load)
    with pytest.raises(BundleError) as err:
        _import(path, tmp_path / "b")
    assert "Lambda" in str(err.value) and "double" in str(err.value)
    assert "safe mode" in err.value.why
    assert not (tmp_path / "b").exists()


def test_tf_op_lambda_h5_is_refused(k2, tmp_path):
    inp = k2.Input((SIZE, SIZE, 1))
    x = k2.layers.Conv2D(4, 3)(inp / 127.5)  # stored as a TFOpLambda layer
    x = k2.layers.GlobalAveragePooling2D()(x)
    path = tmp_path / "tfop.h5"
    k2.Model(inp, k2.layers.Dense(2, activation="softmax")(x)).save(path, save_format="h5")
    with pytest.raises(BundleError, match="TFOpLambda"):
        _import(path, tmp_path / "b")


def test_lambda_keras3_file_is_refused(tmp_path):
    import keras

    inp = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Conv2D(4, 3)(inp)
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    path = tmp_path / "lambda.keras"
    keras.Model(inp, keras.layers.Dense(2, activation="softmax")(x)).save(path)
    with pytest.raises(BundleError, match="Lambda") as err:
        _import(path, tmp_path / "b")
    assert "double" in str(err.value)


def test_savedmodel_folder_is_refused_with_what_to_do(tmp_path):
    import keras

    inp = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(inp))
    folder = tmp_path / "exported"
    keras.Model(inp, keras.layers.Dense(2, activation="softmax")(x)).export(folder, verbose=False)
    assert (folder / "saved_model.pb").is_file()
    with pytest.raises(BundleError) as err:
        _import(folder, tmp_path / "b")
    assert "SavedModel" in err.value.what
    assert "TFSMLayer" in err.value.why and "inference-only" in err.value.why
    assert "model.save" in err.value.hint


def test_class_count_mismatch_is_refused(models, tmp_path):
    with pytest.raises(BundleError, match="do not match the class names") as err:
        _import(models["flat"], tmp_path / "b", classes=["a", "b", "c"])
    assert "3 classes" in err.value.why and "2 outputs" in err.value.why
    assert not (tmp_path / "b").exists()


def test_logit_outputs_import_as_a_softmax_head_through_its_link(k2, tmp_path):
    inp = k2.Input((SIZE, SIZE, 1))
    x = k2.layers.GlobalAveragePooling2D()(k2.layers.Conv2D(4, 3)(inp))
    head = k2.layers.Dense(2, bias_initializer=k2.initializers.Constant(5.0))  # no softmax
    path = tmp_path / "logits.h5"
    model = k2.Model(inp, head(x))
    _randomize(model, 4)
    model.save(path, save_format="h5")
    bundle = _import(path, tmp_path / "b")
    assert bundle.head.kind == "softmax" and bundle.head.activation == "linear"
    assert bundle.metadata["output"]["link"] == "softmax"
    assert bundle.metadata["schema_version"] == 2  # a schema-1 reader would show logits
    x = np.random.default_rng(0).uniform(0, 1, (3, SIZE, SIZE, 1)).astype(np.float32)
    logits = model.predict(x, verbose=0).astype(np.float64)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(_bundle_predict(bundle, x), expected, atol=1e-5)


def test_model_without_feature_maps_imports_with_the_methods_that_apply(k2, tmp_path):
    from cxr_viewer.core.explain.registry import method_unavailable

    inp = k2.Input((SIZE, SIZE, 1))
    x = k2.layers.Flatten()(inp)
    path = tmp_path / "mlp.h5"
    model = k2.Model(inp, k2.layers.Dense(2, activation="softmax")(x))
    _save_k2(model, path, seed=9)
    bundle = _import(path, tmp_path / "b")
    x = np.random.default_rng(4).uniform(0, 1, (3, SIZE, SIZE, 1)).astype(np.float32)
    np.testing.assert_allclose(_bundle_predict(bundle, x), model.predict(x, verbose=0), atol=1e-5)
    assert method_unavailable("lime", bundle) is None
    assert method_unavailable("occlusion", bundle) is None
    assert "no convolutional feature maps" in method_unavailable("gradcam", bundle)
    assert bundle.background() is None  # SHAP does not apply: no background set written


def test_weights_only_h5_and_unknown_suffix_are_refused(k2, tmp_path):
    model = _flat(k2)
    path = tmp_path / "only.weights.h5"
    model.save_weights(path)
    with pytest.raises(BundleError, match="weights only"):
        _import(path, tmp_path / "b")
    other = tmp_path / "model.onnx"
    other.write_bytes(b"\0" * 16)
    with pytest.raises(BundleError, match="not a Keras model format"):
        _import(other, tmp_path / "b")


def test_wrong_weights_fail_verification(models, tmp_path, monkeypatch):
    """The check against the original is real: a perturbed weight makes the import fail."""
    from cxr_viewer.core.importer import api

    real = api.load_weights

    def perturbed(flat, source):
        n = real(flat, source)
        var = flat.model.get_layer("c2").weights[0]
        var.assign(var.numpy() * 1.01)
        return n

    monkeypatch.setattr(api, "load_weights", perturbed)
    with pytest.raises(BundleError, match="does not reproduce"):
        _import(models["flat"], tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_cancel_stops_the_import_and_leaves_nothing(models, tmp_path):
    from cxr_viewer.core.errors import Cancelled
    from cxr_viewer.core.progress import CancelToken

    token = CancelToken()

    def progress(fraction: float, message: str) -> None:
        if "weights" in message:
            token.cancel()

    with pytest.raises(Cancelled):
        _import(models["nested"], tmp_path / "b", progress=progress, cancel=token)
    assert not (tmp_path / "b").exists()


def test_input_size_is_required_for_any_size_models_and_checked(k2, tmp_path):
    inp = k2.Input((None, None, 1))
    x = k2.layers.GlobalAveragePooling2D()(k2.layers.Conv2D(4, 3, name="c")(inp))
    path = _save_k2(k2.Model(inp, k2.layers.Dense(2, activation="softmax")(x)), tmp_path / "a.h5")
    with pytest.raises(BundleError, match="any input size"):
        _import(path, tmp_path / "b")
    bundle = _import(path, tmp_path / "b", input_size=(24, 40))
    assert (bundle.input_spec.height, bundle.input_spec.width) == (24, 40)


def test_fixed_size_mismatch_is_refused(models, tmp_path):
    with pytest.raises(BundleError, match="not 64×64"):
        _import(models["flat"], tmp_path / "b", input_size=(64, 64))


def test_background_from_a_folder_of_images(models, tmp_path):
    import cv2

    folder = tmp_path / "bg"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(folder / f"cxr{i}.png"), rng.integers(0, 255, (48, 40), dtype=np.uint8))
    (folder / "notes.png").write_text("not an image")
    bundle = _import(models["flat"], tmp_path / "b", background_dir=folder)
    assert bundle.background().shape == (3, SIZE, SIZE, 1)
    assert bundle.metadata["background_source"].startswith("3 images from bg")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BundleError, match="No readable images"):
        _import(models["flat"], tmp_path / "c", background_dir=empty)


@pytest.mark.integration
def test_background_from_real_radiographs(models, tmp_path, shared_data):
    folder = shared_data / "cxr-samples"
    bundle = _import(models["flat"], tmp_path / "b", background_dir=folder, n_background=4)
    bg = bundle.background()
    assert bg.shape == (4, SIZE, SIZE, 1)
    assert 0.0 <= bg.min() and bg.max() <= 1.0 and bg.std() > 0.05
    assert bundle.metadata["background_source"].startswith("4 images from cxr-samples")


# --- command line ---------------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    from trainer.commands import import_model as cmd

    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    return cmd.run(parser.parse_args(argv))


def test_cli_imports_and_reports(models, tmp_path, capsys):
    out = tmp_path / "cli_bundle"
    argv = [str(models["flat"]), "--classes", *CLASSES, "--preprocess", "unit", "-o", str(out)]
    assert _cli(argv + ["--positive-class", "lesion", "--n-background", "4"]) == 0
    printed = capsys.readouterr().out
    assert "Grad-CAM at  c2" in printed and "verified" in printed
    assert open_bundle(out).positive_class == "lesion"
    # an existing bundle is not overwritten without --overwrite; errors exit with 2
    assert _cli(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert _cli([str(models["flat"]), "--classes", "only", "-o", str(tmp_path / "x")]) == 2


def test_cli_is_registered():
    from trainer.cli import COMMANDS

    assert COMMANDS["import"][0] == "import_model"
