"""The bundle contract: written by the trainer, read by the viewer, refused when tampered with."""

import json

import numpy as np
import pytest

from cxr_viewer.core.bundle import open_bundle, write_bundle
from cxr_viewer.core.errors import BundleError
from cxr_viewer.core.preprocess import InputSpec


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    import keras

    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv_a")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2, activation="softmax", name="output")(x)
    model = keras.Model(inp, out)
    root = tmp_path_factory.mktemp("b") / "bundle"
    write_bundle(
        root,
        model,
        name="tiny",
        class_names=["neg", "pos"],
        input_spec=InputSpec(32, 32, 3, "unit"),
        gradcam_layer="conv_a",
        shap_layers=["conv_a"],
        background=np.zeros((2, 32, 32, 3), np.float32),
    )
    return root


def test_roundtrip_predicts(tiny_bundle):
    from cxr_viewer.core.inference import Classifier

    clf = Classifier(open_bundle(tiny_bundle))
    probs = clf.predict_inputs(np.random.default_rng(0).random((3, 32, 32, 3), dtype=np.float32))
    assert probs.shape == (3, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert clf.device in ("CPU",) or clf.device.startswith("GPU")


def test_tampered_model_is_refused(tiny_bundle, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_bundle, copy)
    with open(copy / "model.keras", "ab") as f:
        f.write(b"tampered")
    with pytest.raises(BundleError, match="does not match"):
        open_bundle(copy).load_model()


def test_incomplete_metadata_is_refused(tiny_bundle, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_bundle, copy)
    meta = json.loads((copy / "metadata.json").read_text())
    del meta["class_names"]
    (copy / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="'class_names' is missing"):
        open_bundle(copy)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not a CXR Lens model bundle"):
        open_bundle(tmp_path)
