"""`cxr-viewer batch` on a multi-label model: one probability column per finding."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from cxr_viewer.cli import main

FINDINGS = ["nodule", "effusion", "edema"]


@pytest.fixture(scope="module")
def multilabel_root(tmp_path_factory):
    keras = pytest.importorskip("keras")
    from cxr_viewer.core.model.bundle import write_bundle
    from cxr_viewer.core.model.heads import Head
    from cxr_viewer.core.model.preprocess import InputSpec

    keras.utils.set_random_seed(2)
    inp = keras.Input((32, 32, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", padding="same", name="conv")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(3, activation="sigmoid", name="findings")(x)
    root = tmp_path_factory.mktemp("ml") / "bundle"
    write_bundle(
        root, keras.Model(inp, out), name="ml", class_names=FINDINGS,
        input_spec=InputSpec(32, 32, 1, "unit"), gradcam_layer="conv", shap_layers=["conv"],
        background=np.zeros((2, 32, 32, 1), np.float32), head=Head("multilabel", 3, "sigmoid"),
        extra={"thresholds": {"nodule": 0.5, "effusion": 0.01, "edema": 0.99}},
    )  # fmt: skip
    return root


def test_batch_writes_one_column_per_finding(tmp_path, multilabel_root):
    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.model.bundle import open_bundle
    from cxr_viewer.core.model.inference import Classifier

    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 48)) * 255).astype(np.uint8)).save(src / "a.png")
    out = tmp_path / "out"
    args = ["batch", str(src), "--model", str(multilabel_root), "--out", str(out)]
    assert main([*args, "--explain", "gradcam", "--no-trust", "--quiet"]) == 0
    (row,) = list(csv.DictReader(open(out / "predictions.csv", encoding="utf-8")))
    assert row["status"] == "ok", row["error"]
    pred = Classifier(open_bundle(multilabel_root)).predict_study(load_study(src / "a.png"))
    for i, f in enumerate(FINDINGS):
        assert float(row[f"p_{f}"]) == pytest.approx(float(pred.probabilities[i]), abs=1e-6)
    # effusion's threshold 0.01 is always reached, edema's 0.99 never (sigmoid of a tiny net)
    assert "effusion" in row["predicted_class"].split("; ")
    assert "edema" not in row["predicted_class"]
    assert row["decision"] == pred.rule_text() and "above threshold" in row["decision"]
    # the most probable finding above threshold is explained by default
    assert row["explained_class"] == FINDINGS[pred.positive_findings[0]]
    assert (out / "a_gradcam.npy").is_file()
