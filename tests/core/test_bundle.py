"""The bundle contract: written by the trainer, read by the viewer, refused when tampered with."""

import json

import numpy as np
import pytest

from cxr_viewer.core.errors import BundleError
from cxr_viewer.core.model.bundle import open_bundle


def test_roundtrip_predicts(tiny_bundle):
    from cxr_viewer.core.model.inference import Classifier

    clf = Classifier(open_bundle(tiny_bundle))
    probs = clf.predict_inputs(np.random.default_rng(0).random((3, 32, 32, 1), dtype=np.float32))
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
