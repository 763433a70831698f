"""Issue 31, item 4: a training pipeline's resize and linear intensity step can be stated, and
the import checks the candidates against the model's own pipeline on films.

The model's "own pipeline" is written here the way tutorials write it: ``cv2.imread`` →
``cv2.resize`` (bilinear by default) → ``cv2.convertScaleAbs(alpha=1.3)`` (a contrast step on
uint8 pixels, saturating) → /255; and Keras' way, ``tf.image.resize`` (bilinear, what
``image_dataset_from_directory`` uses).
"""

from __future__ import annotations

import csv
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from cxr_viewer.core.model.preprocess import InputSpec, Intensity, image01_to_input

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
SIZE = 32
N_FILMS = 6


@pytest.fixture(scope="module")
def films(tmp_path_factory):
    from cxr_viewer.testdata.phantoms import make_phantoms

    root = tmp_path_factory.mktemp("films")
    phantoms = make_phantoms(N_FILMS, 128, seed=3)
    paths = []
    for i, img in enumerate(phantoms.images):
        path = root / f"film{i}.png"
        Image.fromarray(np.clip(np.asarray(img) * 255, 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(2)
    inp = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="c1")(inp)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(8, activation="tanh")(x)
    model = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid", name="out")(x))
    for layer in model.layers:  # strong random weights: the outputs vary across films
        ws = layer.get_weights()
        if ws:
            rng = np.random.default_rng(len(layer.name))
            layer.set_weights([rng.normal(0, 1.0, w.shape).astype(np.float32) for w in ws])
    path = tmp_path_factory.mktemp("m") / "contrast.keras"
    model.save(path)
    return path, model


def _opencv_pipeline(path, alpha=1.3):
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    img = cv2.resize(img, (SIZE, SIZE))  # INTER_LINEAR
    img = cv2.convertScaleAbs(img, alpha=alpha, beta=0)
    return (img.astype(np.float32) / 255.0)[..., None]


def _keras_pipeline(path):
    import tensorflow as tf

    img = np.asarray(Image.open(path), dtype=np.float32)[None, ..., None]
    return (np.asarray(tf.image.resize(img, (SIZE, SIZE), method="bilinear"))[0]) / 255.0


def _reference_csv(films, model, pipeline, out):
    x = np.stack([pipeline(p) for p in films])
    p = np.asarray(model(x))
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "p_lesion"])
        for path, row in zip(films, p, strict=True):
            w.writerow([os.path.relpath(path, out.parent), f"{float(row[0]):.8f}"])
    return out, p


def test_stated_pipeline_reproduces_a_bilinear_contrast_pipeline(films, model_file, tmp_path):
    from cxr_viewer.core.importer import import_model

    path, model = model_file
    ref, expected = _reference_csv(films, model, _opencv_pipeline, tmp_path / "ref.csv")
    bundle = import_model(
        path,
        ["lesion"],
        out_dir=tmp_path / "b",
        preprocessing="unit",
        intensity=Intensity(1.3, 0.0, "pixels"),
        reference_predictions=ref,
        n_background=3,
    )
    check = bundle.metadata["preprocessing_check"]
    assert check["checked"] and check["films"] == N_FILMS
    assert check["best"]["interpolation"] == "bilinear"  # found, not stated
    assert check["best"]["spearman_rho"] >= 0.99 and check["best"]["max_abs_dp"] <= 0.01
    assert "warning" not in check
    spec = bundle.input_spec
    assert spec.interpolation == "bilinear" and spec.intensity == Intensity(1.3, 0.0, "pixels")
    # the bundle's own preprocessing now feeds the model what its pipeline fed it
    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.io.display import display_image

    x = np.stack([image01_to_input(display_image(load_study(f)), spec) for f in films])
    got = np.asarray(bundle.load_model()(x))
    assert np.max(np.abs(got - expected)) <= 0.01


def test_unstated_contrast_step_is_warned_about(films, model_file, tmp_path, capsys):
    from trainer.cli import main

    path, model = model_file
    ref, _ = _reference_csv(films, model, _opencv_pipeline, tmp_path / "ref.csv")
    code = main(
        [
            "import",
            str(path),
            "--classes",
            "lesion",
            "--preprocess",
            "unit",
            "--reference-predictions",
            str(ref),
            "--n-background",
            "3",
            "-o",
            str(tmp_path / "b"),
        ]
    )
    assert code == 0  # a warning, not a refusal
    err = capsys.readouterr().err
    assert "warning: None of the preprocessings tried reproduces" in err
    assert "--intensity SCALE OFFSET" in err
    from cxr_viewer.core.model.bundle import open_bundle

    check = open_bundle(tmp_path / "b").metadata["preprocessing_check"]
    assert check["best"]["spearman_rho"] < 0.99 or check["best"]["max_abs_dp"] > 0.01
    assert "CLAHE" in check["warning"]


def test_keras_bilinear_resize_is_matched_by_the_bilinear_interpolation(films, model_file):
    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.io.display import display_image

    _, model = model_file
    expected = np.asarray(model(np.stack([_keras_pipeline(f) for f in films])))
    images = [display_image(load_study(f)) for f in films]

    def fed(interp):
        spec = InputSpec(SIZE, SIZE, 1, "unit", interp)
        return np.asarray(model(np.stack([image01_to_input(i, spec) for i in images])))

    bilinear = float(np.max(np.abs(fed("bilinear") - expected)))
    area = float(np.max(np.abs(fed("auto") - expected)))
    assert bilinear <= 1e-4 < area  # CXR Lens' default (area) is not what Keras fed


def test_intensity_and_interpolation_round_trip_through_the_bundle_metadata():
    spec = InputSpec(32, 32, 1, "symmetric", "nearest", Intensity(1.2, -10.0, "pixels"))
    d = spec.to_dict()
    assert InputSpec.from_dict(d) == spec
    assert "interpolation" not in InputSpec(32, 32).to_dict()  # defaults stay unwritten
    x = np.full((32, 32), 0.9, np.float32)
    # 0.9 * 255 * 1.2 - 10 = 265.4 → saturates at 255 → 1.0 → symmetric 1.0
    assert float(image01_to_input(x, spec).max()) == pytest.approx(1.0)
    unit = InputSpec(32, 32, 1, "unit", "auto", Intensity(2.0, 0.1, "unit"))
    assert float(image01_to_input(x, unit).max()) == pytest.approx(1.9)
