"""Every head and preprocessing kind imports with nothing but class names, predicts like the
original and explains any output.

Keras 2 ``.h5`` files are written by ``tf_keras`` (Keras 2 itself), Keras 3 ``.keras`` files by
``keras``; weights (and batch-norm statistics) are randomised so a misplaced weight shows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from test_import import _randomize  # the same random-weights helper (BN statistics too)

from cxr_viewer.core.errors import BundleError

pytest.importorskip("tf_keras")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SIZE = 32
FINDINGS_14 = [
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening",
    "Hernia",
]  # fmt: skip
LIME_FAST = {"num_samples": 64, "n_segments": 16, "min_samples": 32, "chunk_size": 32}
SHAP_FAST = {"nsamples": 8, "max_background": 4}


def _features(k, x, prefix: str = ""):
    x = k.layers.Conv2D(6, 3, padding="same", name=f"{prefix}c1")(x)
    x = k.layers.BatchNormalization(name=f"{prefix}bn")(x)
    x = k.layers.ReLU(name=f"{prefix}relu1")(x)
    x = k.layers.MaxPooling2D(name=f"{prefix}pool")(x)
    return k.layers.Conv2D(8, 3, padding="same", activation="relu", name=f"{prefix}c2")(x)


def one_sigmoid(k, channels: int = 1):
    inp = k.Input((SIZE, SIZE, channels), name="image")
    x = k.layers.GlobalAveragePooling2D(name="gap")(_features(k, inp))
    x = k.layers.Dropout(0.2, name="drop")(x)
    return k.Model(inp, k.layers.Dense(1, activation="sigmoid", name="pneumonia")(x))


def two_sigmoid(k):
    """Two sigmoid units, as trained with binary cross-entropy on one-hot labels."""
    inp = k.Input((SIZE, SIZE, 3), name="image")
    x = k.layers.GlobalAveragePooling2D(name="gap")(_features(k, inp))
    return k.Model(inp, k.layers.Dense(2, activation="sigmoid", name="out")(x))


def chexnet_like(k, n: int = 14):
    """14 sigmoid findings on a backbone nested as one layer (named like keras.applications)."""
    bi = k.Input((SIZE, SIZE, 3))
    backbone = k.Model(bi, _features(k, bi, "bb_"), name="densenet121")
    inp = k.Input((SIZE, SIZE, 3), name="image")
    x = k.layers.GlobalAveragePooling2D(name="gap")(backbone(inp))
    return k.Model(inp, k.layers.Dense(n, activation="sigmoid", name="findings")(x))


def with_rescaling(k):
    """Raw [0, 255] pixels in, a Rescaling(1/255) layer first, softmax out."""
    inp = k.Input((SIZE, SIZE, 1), name="image")
    x = k.layers.Rescaling(1.0 / 255, name="rescale")(inp)
    x = k.layers.GlobalAveragePooling2D(name="gap")(_features(k, x))
    return k.Model(inp, k.layers.Dense(2, activation="softmax", name="out")(x))


def one_logit(k):
    """A single linear unit: the logit of the positive finding."""
    inp = k.Input((SIZE, SIZE, 1), name="image")
    x = k.layers.GlobalAveragePooling2D(name="gap")(_features(k, inp))
    return k.Model(inp, k.layers.Dense(1, name="logit")(x))


def sequential_sigmoid(k):
    return k.Sequential(
        [
            k.layers.Conv2D(6, 3, activation="relu", input_shape=(SIZE, SIZE, 1), name="sc1"),
            k.layers.Conv2D(8, 3, activation="relu", name="sc2"),
            k.layers.GlobalAveragePooling2D(name="sgap"),
            k.layers.Dense(1, activation="sigmoid", name="sout"),
        ]
    )


def _make_old_style(path: Path) -> None:
    """Rewrite an .h5's config the way Keras 2.2 wrote it: class "Model" instead of
    "Functional", a Sequential's first layer carrying batch_input_shape, no InputLayer."""
    import h5py

    with h5py.File(path, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        for obj in [cfg, *cfg["config"]["layers"]]:
            if obj["class_name"] == "Functional":
                obj["class_name"] = "Model"
        if cfg["class_name"] == "Sequential":
            layers = cfg["config"]["layers"]
            if layers and layers[0]["class_name"] == "InputLayer":
                shape = layers[0]["config"]["batch_input_shape"]
                layers.pop(0)
                layers[0]["config"]["batch_input_shape"] = shape
        f.attrs["model_config"] = json.dumps(cfg)
        f.attrs["keras_version"] = "2.2.4"


@pytest.fixture(scope="module")
def k2():
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    return tf_keras


KERAS2_CASES = {
    # name: (builder, class names given, expected head, expected preprocessing proposal)
    "one_sigmoid": (one_sigmoid, ["pneumonia"], "binary", "unit"),
    "two_sigmoid": (two_sigmoid, ["bacterial", "viral"], "multilabel", "unit"),
    "chexnet_14": (chexnet_like, FINDINGS_14, "multilabel", "torch"),  # written as Keras 2.2
    "rescaling": (with_rescaling, ["normal", "pneumonia"], "softmax", "raw"),
    "one_logit": (one_logit, ["normal", "pneumonia"], "binary", "unit"),
    "old_sequential": (sequential_sigmoid, ["nodule"], "binary", "unit"),
}


@pytest.fixture(scope="module")
def keras2_models(tmp_path_factory, k2):
    root = tmp_path_factory.mktemp("heads_k2")
    out = {}
    for i, (name, (build, *_)) in enumerate(KERAS2_CASES.items()):
        model = build(k2)
        _randomize(model, 10 + i)
        path = root / f"{name}.h5"
        model.save(path, save_format="h5")
        if name in ("old_sequential", "chexnet_14"):
            _make_old_style(path)
        out[name] = (path, model)
    return out


def _raw_inputs(model, n: int = 4, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """([0, 1] display images (n, S, S), the model's input for them under the bundle's rules)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, SIZE, SIZE)).astype(np.float32)


def _import(path, out, classes, **kw):
    from cxr_viewer.core.importer import import_model

    kw.setdefault("n_background", 4)
    return import_model(path, classes, out_dir=out, **kw)


def _expected_probabilities(model, kind: str, x: np.ndarray) -> np.ndarray:
    raw = np.asarray(model.predict(x, verbose=0), np.float64)
    last = model.layers[-1]
    if getattr(last, "activation", None) is not None and last.activation.__name__ == "linear":
        raw = 1.0 / (1.0 + np.exp(-raw)) if kind != "softmax" else raw
    if kind == "binary":
        return np.concatenate([1 - raw, raw], axis=1)
    return raw


@pytest.mark.parametrize("case", list(KERAS2_CASES))
def test_keras2_head_imports_with_class_names_only_and_predicts_like_the_original(
    case, keras2_models, tmp_path
):
    from cxr_viewer.core.model.inference import Classifier
    from cxr_viewer.core.model.preprocess import normalize

    _, given, kind, proposal = KERAS2_CASES[case]
    path, model = keras2_models[case]
    bundle = _import(path, tmp_path / "b", given)  # no flag beyond the class names
    assert bundle.head.kind == kind
    assert bundle.input_spec.preprocessing == proposal
    assert bundle.metadata["preprocessing_given"] is False
    assert bundle.metadata["preprocessing_reason"]
    images = _raw_inputs(model)
    x = normalize(images, bundle.input_spec)
    clf = Classifier(bundle)
    got = clf.predict_inputs(x)
    np.testing.assert_allclose(got, _expected_probabilities(model, kind, x), atol=1e-5)
    if kind == "binary":
        assert bundle.class_names[1] == (given[-1])
        assert bundle.positive_class == given[-1] and bundle.threshold == 0.5
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)
    if kind == "multilabel":
        assert bundle.class_names == given
        assert bundle.thresholds == {c: 0.5 for c in given}
        assert bundle.metadata["schema_version"] == 2


def test_binary_names_negative_by_default_or_as_given(keras2_models, tmp_path):
    path, _ = keras2_models["one_sigmoid"]
    bundle = _import(path, tmp_path / "a", ["pneumonia"])
    assert bundle.class_names == ["no pneumonia", "pneumonia"]
    bundle = _import(path, tmp_path / "b", ["normal", "pneumonia"], threshold=0.62)
    assert bundle.class_names == ["normal", "pneumonia"] and bundle.threshold == 0.62
    with pytest.raises(BundleError, match="cannot be the positive class"):
        _import(path, tmp_path / "c", ["normal", "pneumonia"], positive_class="normal")
    with pytest.raises(BundleError, match="one sigmoid output") as err:
        _import(path, tmp_path / "d", ["a", "b", "c"])
    assert "3 classes" in err.value.why


def test_linear_logit_head_records_its_link(keras2_models, tmp_path):
    path, _ = keras2_models["one_logit"]
    bundle = _import(path, tmp_path / "b", ["pneumonia"])
    out = bundle.metadata["output"]
    assert out == {"kind": "binary", "units": 1, "activation": "linear", "link": "sigmoid",
                   "classes": 2}  # fmt: skip


def test_multilabel_thresholds_and_wrong_counts(keras2_models, tmp_path):
    path, _ = keras2_models["two_sigmoid"]
    bundle = _import(path, tmp_path / "b", ["bacterial", "viral"], thresholds={"viral": 0.3})
    assert bundle.thresholds == {"bacterial": 0.5, "viral": 0.3}
    with pytest.raises(BundleError, match="do not match") as err:
        _import(path, tmp_path / "c", ["bacterial"])
    assert "2 outputs" in err.value.why and "1 findings" in err.value.why
    with pytest.raises(BundleError, match="binary head has one sigmoid output"):
        _import(path, tmp_path / "d", ["a", "b"], head="binary")


def _explain_all(bundle, targets: list[int], x: np.ndarray) -> dict:
    from cxr_viewer.core.explain.registry import create_explainer
    from cxr_viewer.core.model.inference import Classifier

    clf = Classifier(bundle)
    maps = {}
    for t in targets:
        for method, settings in (
            ("gradcam", {}),
            ("lime", LIME_FAST),
            ("shap", {**SHAP_FAST, "layer": bundle.shap_layers[-1]}),
        ):
            hm = create_explainer(method, clf, settings).explain(x, t)
            assert hm.values.shape == (SIZE, SIZE), (method, t)
            assert np.all(np.isfinite(hm.values)), (method, t)
            assert hm.class_name == clf.class_names[t]
            maps[method, t] = hm
    return maps


def test_binary_sigmoid_explains_both_classes_from_the_logit(keras2_models, tmp_path):
    from cxr_viewer.core.model.preprocess import normalize

    path, model = keras2_models["one_sigmoid"]
    bundle = _import(path, tmp_path / "b", ["pneumonia"])
    x = normalize(_raw_inputs(model, 1)[0], bundle.input_spec)
    maps = _explain_all(bundle, [0, 1], x)
    gc = maps["gradcam", 1]
    assert gc.settings["score"] == "dense_logit"  # the pre-sigmoid logit, not p
    assert gc.layer == "c2"  # the last convolution, not the dropout before the pooling
    # the negative class is explained by −z: SHAP attributions flip sign exactly
    np.testing.assert_allclose(maps["shap", 0].values, -maps["shap", 1].values, atol=1e-6)
    assert maps["shap", 1].trust["completeness_gap"] < 0.05
    assert np.abs(maps["gradcam", 0].values - gc.values).max() > 0


def test_fourteen_findings_explain_any_output(keras2_models, tmp_path):
    from cxr_viewer.core.explain.registry import create_explainer
    from cxr_viewer.core.model.inference import Classifier
    from cxr_viewer.core.model.preprocess import normalize

    path, model = keras2_models["chexnet_14"]
    bundle = _import(path, tmp_path / "b", FINDINGS_14)
    assert bundle.metadata["flattened_nested_models"] == ["densenet121"]
    assert bundle.gradcam_layer == "bb_c2"
    x = normalize(_raw_inputs(model, 1)[0], bundle.input_spec)
    clf = Classifier(bundle)
    cams = [create_explainer("gradcam", clf).explain(x, t).values for t in range(14)]
    assert len({np.round(c, 4).tobytes() for c in cams}) > 1  # each output its own map
    _explain_all(bundle, [0, 13], x)


def test_rescaling_model_gets_raw_pixels(keras2_models, tmp_path):
    from cxr_viewer.core.model.inference import Classifier
    from cxr_viewer.core.model.preprocess import normalize

    path, model = keras2_models["rescaling"]
    bundle = _import(path, tmp_path / "b", ["normal", "pneumonia"])
    assert bundle.input_spec.preprocessing == "raw"
    assert "Rescaling" in bundle.metadata["preprocessing_reason"]
    images = _raw_inputs(model)
    x = normalize(images, bundle.input_spec)
    assert x.max() > 200  # raw pixel values reach the model
    np.testing.assert_allclose(
        Classifier(bundle).predict_inputs(x), model.predict(images[..., None] * 255, verbose=0),
        atol=1e-5,
    )  # fmt: skip


def test_lambda_and_custom_layers_are_refused_clearly(k2, tmp_path):
    import h5py

    inp = k2.Input((SIZE, SIZE, 1))
    x = k2.layers.Conv2D(4, 3, name="c")(inp)
    x = k2.layers.GlobalAveragePooling2D()(x)
    path = tmp_path / "custom.h5"
    k2.Model(inp, k2.layers.Dense(1, activation="sigmoid")(x)).save(path, save_format="h5")
    with h5py.File(path, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        cfg["config"]["layers"][1]["class_name"] = "MyFancyConv"
        f.attrs["model_config"] = json.dumps(cfg)
    with pytest.raises(BundleError, match="custom class 'MyFancyConv'") as err:
        _import(path, tmp_path / "b", ["nodule"])
    assert "stores only its name" in err.value.why


# --- Keras 3 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build,given,kind",
    [
        (one_sigmoid, ["pneumonia"], "binary"),
        (chexnet_like, FINDINGS_14, "multilabel"),
        (with_rescaling, ["normal", "pneumonia"], "softmax"),
    ],
)
def test_keras3_heads(build, given, kind, tmp_path):
    import keras

    from cxr_viewer.core.model.inference import Classifier
    from cxr_viewer.core.model.preprocess import normalize

    model = build(keras)
    _randomize(model, 3)
    path = tmp_path / "m.keras"
    model.save(path)
    bundle = _import(path, tmp_path / "b", given)
    assert bundle.head.kind == kind
    x = normalize(_raw_inputs(model), bundle.input_spec)
    raw = np.asarray(model(x), np.float64)
    expected = np.concatenate([1 - raw, raw], axis=1) if kind == "binary" else raw
    np.testing.assert_allclose(Classifier(bundle).predict_inputs(x), expected, atol=1e-5)
    _explain_all(bundle, [0, bundle.head.n_classes - 1], x[0])


def test_preview_shows_each_preprocessing(keras2_models):
    from cxr_viewer.core.importer import CANDIDATES, prepare, preview_predictions

    path, model = keras2_models["rescaling"]
    prep = prepare(path)
    assert prep.summary.preprocessing == "raw"
    images = list(_raw_inputs(model, 3))
    table = preview_predictions(prep, images)
    assert list(table) == list(CANDIDATES)
    raw = model.predict(np.stack(images)[..., None] * 255, verbose=0)
    np.testing.assert_allclose(table["raw"], raw, atol=1e-5)
    assert all(t.shape == (3, 2) for t in table.values())


def test_cli_head_and_thresholds(keras2_models, tmp_path, capsys):
    import argparse

    from trainer.commands import import_model as cmd

    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    path, _ = keras2_models["two_sigmoid"]
    out = tmp_path / "b"
    argv = [
        str(path),
        "--classes",
        "bacterial",
        "viral",
        "--threshold",
        "viral=0.3",
        "-o",
        str(out),
    ]
    assert cmd.run(parser.parse_args([*argv, "--n-background", "2", "--near-band", "0.1"])) == 0
    printed = capsys.readouterr().out
    assert "head         multilabel: 2 sigmoid output(s), link identity" in printed
    assert "proposed:" in printed  # the preprocessing was proposed, and the user is told so
    from cxr_viewer.core.model.bundle import open_bundle

    assert open_bundle(out).thresholds == {"bacterial": 0.5, "viral": 0.3}
    assert open_bundle(out).near_band == 0.1
    bad = [str(path), "--classes", "a", "b", "--threshold", "x=high", "-o", str(tmp_path / "c")]
    assert cmd.run(parser.parse_args(bad)) == 2
    assert "not a number" in capsys.readouterr().err
