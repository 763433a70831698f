"""Issue 31, item 5: models built the way tutorials build them import, predict, and explain.

Each model is built in the test with random weights (``weights=None``, no download), saved in
one format, imported, compared with plain Keras on the same inputs (|Δp| ≤ 1e-5), and every
explanation method the bundle offers runs on it. Not the full cross product (six backbones ×
four heads × two formats × preprocessing would take most of an hour); the chosen matrix covers
each backbone, each head, each format and each preprocessing variant at least once
(:func:`test_the_matrix_covers_every_variant` checks it):

=============  ======  =================  ==========================  ====
backbone       format  head               preprocessing in the model  px
=============  ======  =================  ==========================  ====
DenseNet121    .h5     14 sigmoid (CheXNet)  none (torch, by name)       32
ResNet50       .keras  2 softmax          Rescaling(1/255)            32
VGG16          .h5     1 sigmoid          Lambda(vgg16.preprocess_input)  32
EfficientNetB0 .keras  3 softmax          Lambda(efficientnet.preprocess_input)  32
MobileNetV2    .h5     2 softmax          Rescaling(1/127.5, -1)      32
InceptionV3    .keras  14 sigmoid         none (symmetric, by name)   75
CNN            .h5*    2 softmax          Conv2D(activation=LeakyReLU/PReLU/ELU objects)  32
MLP            .keras  1 sigmoid          Flatten → Dense (no feature maps)  32
=============  ======  =================  ==========================  ====

``.h5`` is Keras 2 (tf_keras; ``*`` rewritten as Keras 2.10 wrote it), ``.keras`` Keras 3.
All probes are grey (R = G = B), as radiographs are. A model with a ``Lambda(preprocess_input)``
is compared on raw pixels (the original runs the real function, in memory) against the bundle
fed the same pixels through its convention — what the viewer does.
Each backbone is built once per module (each appears in one row). Run alone: 4 min 0 s on
the shared 2-core machine at load average ~7 (`pytest tests/trainer/test_import_zoo.py -n 0`);
all `slow`: `-m "not slow"` skips them while iterating.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from zoo_support import as_keras_2_10, randomize, spread_head

pytest.importorskip("tf_keras")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CHEXNET = [
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening",
    "Hernia",
]  # fmt: skip
HEADS = {
    "sigmoid1": (1, "sigmoid", ["pneumonia"]),
    "softmax2": (2, "softmax", ["normal", "pneumonia"]),
    "softmax3": (3, "softmax", ["normal", "pneumonia", "covid"]),
    "sigmoid14": (14, "sigmoid", CHEXNET),
}
BACKBONES = ("DenseNet121", "ResNet50", "VGG16", "EfficientNetB0", "MobileNetV2", "InceptionV3")
FORMATS = ("keras2-h5", "keras3")
PREPROCESSING = ("none", "rescale_unit", "rescale_symmetric", "activation_objects", "lambda")


@dataclass(frozen=True)
class Case:
    id: str
    backbone: str
    format: str
    head: str
    pre: str
    size: int = 32


MATRIX = [
    Case("densenet121-h5-chexnet", "DenseNet121", "keras2-h5", "sigmoid14", "none"),
    Case("resnet50-keras-softmax2-rescale", "ResNet50", "keras3", "softmax2", "rescale_unit"),
    Case("vgg16-h5-sigmoid1-lambda", "VGG16", "keras2-h5", "sigmoid1", "lambda"),
    Case("efficientnetb0-keras-softmax3-lambda", "EfficientNetB0", "keras3", "softmax3", "lambda"),
    Case(
        "mobilenetv2-h5-softmax2-rescale",
        "MobileNetV2",
        "keras2-h5",
        "softmax2",
        "rescale_symmetric",
    ),
    Case("inceptionv3-keras-sigmoid14", "InceptionV3", "keras3", "sigmoid14", "none", 75),
    Case("cnn-h5-210-activation-objects", "CNN", "keras2-h5", "softmax2", "activation_objects"),
    Case("mlp-keras-sigmoid1-flatten", "MLP", "keras3", "sigmoid1", "none"),
]

#: tiny settings that still run each method end to end
QUICK = {
    "gradcam": {},
    "lime": {"num_samples": 48, "n_segments": 12, "min_samples": 32, "chunk_size": 24},
    "shap": {"nsamples": 6, "max_background": 3},
    "occlusion": {"patch": 8, "stride": 8},
}

#: filled by the tests: case id → what the report table shows
RESULTS: dict[str, dict[str, Any]] = {}


def _keras(fmt: str):
    if fmt == "keras2-h5":
        import tf_keras

        return tf_keras
    import keras

    return keras


def _backbone(k, name: str, size: int):
    kwargs: dict[str, Any] = {"include_top": False, "weights": None}
    kwargs["input_shape"] = (size, size, 3)
    if name == "MobileNetV2":
        kwargs["alpha"] = 0.35
    return getattr(k.applications, name)(**kwargs)


def _cnn_with_activation_objects(k, size: int):
    inp = k.Input((size, size, 3), name="image")
    x = k.layers.Conv2D(8, 3, activation=k.layers.LeakyReLU(0.1), name="c1")(inp)
    x = k.layers.Conv2D(8, 3, activation=k.layers.PReLU(), name="c2")(x)
    x = k.layers.Conv2D(8, 3, activation=k.layers.ELU(), name="c3")(x)
    return k.Model(inp, k.layers.Activation(k.layers.ReLU(max_value=6.0), name="feat")(x))


def _build(case: Case):
    k = _keras(case.format)
    k.utils.set_random_seed(0)
    if case.backbone == "MLP":  # a model without feature maps: LIME and occlusion only
        inp = k.Input((case.size, case.size, 3), name="image")
        x = k.layers.Flatten(name="flatten")(inp)
        x = k.layers.Dense(16, activation="relu", name="hidden")(x)
        units, act, _ = HEADS[case.head]
        model = k.Model(inp, k.layers.Dense(units, activation=act, name="predictions")(x))
        randomize(model, seed=len(case.id))
        spread_head(model, "hidden", "predictions", _probe(case, *_range(case)))
        return model
    if case.backbone == "CNN":
        base = _cnn_with_activation_objects(k, case.size)
    else:
        base = _backbone(k, case.backbone, case.size)
    inp = k.Input((case.size, case.size, 3), name="image")
    x = inp
    if case.pre == "rescale_unit":
        x = k.layers.Rescaling(1 / 255.0, name="rescale")(x)
    elif case.pre == "rescale_symmetric":
        x = k.layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(x)
    elif case.pre == "lambda":
        module = {"VGG16": "vgg16", "EfficientNetB0": "efficientnet"}[case.backbone]
        fn = getattr(k.applications, module).preprocess_input
        x = k.layers.Lambda(fn, name="preprocess")(x)
    x = base(x, training=False)
    x = k.layers.GlobalAveragePooling2D(name="gap")(x)
    x = k.layers.Dropout(0.2, name="drop")(x)
    units, act, _ = HEADS[case.head]
    model = k.Model(inp, k.layers.Dense(units, activation=act, name="predictions")(x))
    randomize(model, seed=len(case.id))
    spread_head(model, "gap", "predictions", _probe(case, *_range(case)))
    return model


def _range(case: Case) -> tuple[float, float]:
    """Pixel values the model is fed in the test: raw pixels unless it takes [0, 1] (CNN)."""
    return (0.0, 1.0) if case.pre == "activation_objects" else (0.0, 255.0)


def _probe(case: Case, lo: float, hi: float, n: int = 4, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grey = lo + (hi - lo) * rng.uniform(0, 1, (n, case.size, case.size, 1))
    return np.repeat(grey, 3, axis=-1).astype(np.float32)


def _save(model, case: Case, folder: Path) -> Path:
    if case.format == "keras3":
        path = folder / f"{case.id}.keras"
        model.save(path)
        return path
    path = folder / f"{case.id}.h5"
    model.save(path, save_format="h5")
    return as_keras_2_10(path) if case.pre == "activation_objects" else path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("zoo")


def _explain_all(clf, x) -> dict[str, str]:
    """Every method the bundle offers, run on ``x``: method → "ok" or why it is not offered.

    SHAP runs at the last layer it is offered at (the smallest remainder of the model to
    trace: the test checks that it runs, not where it is best)."""
    from cxr_viewer.core.explain.registry import EXPLAINERS, create_explainer, method_unavailable

    bundle = clf.bundle
    target = int(np.argmax(clf.predict_inputs(x[None])[0]))
    done: dict[str, str] = {}
    for method in EXPLAINERS:
        reason = method_unavailable(method, bundle)
        if reason:
            done[method] = f"n/a: {reason}"
            continue
        settings = dict(QUICK[method])
        if method == "shap":
            settings["layer"] = bundle.shap_layers[-1]
        heat = create_explainer(method, clf, settings).explain(x, target)
        assert heat.values.shape == x.shape[:2], method
        assert np.all(np.isfinite(heat.values)), method
        done[method] = "ok"
    return done


@pytest.mark.slow
@pytest.mark.parametrize("case", MATRIX, ids=[c.id for c in MATRIX])
def test_model_imports_predicts_like_keras_and_explains(case, folder):
    from cxr_viewer.core.importer import import_model
    from cxr_viewer.core.model.inference import Classifier

    model = _build(case)
    path = _save(model, case, folder)
    _, _, classes = HEADS[case.head]
    bundle = import_model(path, classes, out_dir=folder / f"{case.id}-bundle", n_background=4)
    x = _probe(case, *_range(case))
    expected = np.asarray(model(x, training=False))
    clf = Classifier(bundle)  # loads the bundle's model once, for the comparison and methods
    if case.pre == "lambda":  # the bundle is fed the same pixels through its convention
        from cxr_viewer.core.model.preprocess import normalize

        assert bundle.metadata["preprocess_lambda"]["layer"] == "preprocess"
        x = normalize(x[..., 0] / 255.0, bundle.input_spec)
    got = np.asarray(clf.model(x, training=False))
    delta = float(np.max(np.abs(expected - got)))
    assert delta <= 1e-5, f"{case.id}: |Δp| {delta:.3g}"
    assert 0.01 < float(np.median(expected)) < 0.99, "the random model must not saturate"
    methods = _explain_all(clf, x[0])
    assert methods["lime"] == "ok" and methods["occlusion"] == "ok"
    if case.backbone == "MLP":
        assert methods["gradcam"].startswith("n/a: the model has no convolutional feature maps")
        assert methods["shap"].startswith("n/a:")
    else:
        assert methods["gradcam"] == "ok" and methods["shap"] == "ok"
    RESULTS[case.id] = {
        "import": f"ok ({bundle.head.kind}, {bundle.input_spec.preprocessing})",
        "methods": methods,
        "delta": delta,
    }
    print(f"\nZOO {case.id} | {RESULTS[case.id]}")


def test_the_matrix_covers_every_variant():
    assert {c.backbone for c in MATRIX} >= set(BACKBONES)
    assert {c.head for c in MATRIX} == set(HEADS)
    assert {c.format for c in MATRIX} == set(FORMATS)
    assert {c.pre for c in MATRIX} >= set(PREPROCESSING)
