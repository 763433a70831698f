"""Issue 31, items 2 and 3: a method that does not apply, and a map with no signal, are said
per map (viewer status, batch CSV, PDF line, DICOM panel and report) and never stop a run."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from cxr_viewer.cli import main
from cxr_viewer.core.explain.base import NO_SIGNAL, Heatmap, no_signal_remedy, signal_problem

SIZE = 16


def test_signal_problem_tells_blank_maps_from_maps():
    assert signal_problem(np.zeros((4, 4))) == "the map is zero everywhere"
    assert "same value (0.25)" in signal_problem(np.full((4, 4), 0.25))
    ramp = np.linspace(0, 1, 16).reshape(4, 4)
    assert signal_problem(ramp) is None
    assert signal_problem(ramp * 1e-12) is None  # tiny but varying: still a map
    assert "earlier, larger layer" in no_signal_remedy("gradcam", "conv_last")
    assert "other class" in no_signal_remedy("occlusion", None)


def _bundle(model, root, background=True, gradcam_layer=None):
    from cxr_viewer.core.explain.layers import default_gradcam_layer, shap_layers
    from cxr_viewer.core.model.bundle import write_bundle
    from cxr_viewer.core.model.preprocess import InputSpec

    bg = np.random.default_rng(0).random((3, SIZE, SIZE, 1), dtype=np.float32)
    return write_bundle(
        root,
        model,
        name=root.name,
        class_names=["normal", "lesion"],
        input_spec=InputSpec(SIZE, SIZE, 1, "unit"),
        gradcam_layer=gradcam_layer or default_gradcam_layer(model),
        shap_layers=shap_layers(model),
        background=bg if background else None,
    )


@pytest.fixture(scope="module")
def dead_relu_bundle(tmp_path_factory):
    """Grad-CAM's layer ``dead`` is ReLU-dead on [0, 1] inputs (non-positive kernel, negative
    bias); the prediction still depends on the image through the other branch."""
    keras = pytest.importorskip("keras")
    inp = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inp)
    dead = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="dead")(x)
    pooled = [keras.layers.GlobalAveragePooling2D()(t) for t in (x, dead)]
    x = keras.layers.Concatenate()(pooled)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="head")(x))
    k, b = model.get_layer("c1").get_weights()
    model.get_layer("c1").set_weights([np.abs(k), np.abs(b)])  # c1 ≥ 0 on [0, 1] inputs
    k, b = model.get_layer("dead").get_weights()
    model.get_layer("dead").set_weights([-np.abs(k), b - 5.0])
    return _bundle(model, tmp_path_factory.mktemp("dead") / "bundle", gradcam_layer="dead")


def test_a_blank_gradcam_map_is_flagged_and_gets_no_trust_figures(dead_relu_bundle):
    from cxr_viewer.core.evaluate.trust import explain_with_trust
    from cxr_viewer.core.explain.registry import create_explainer
    from cxr_viewer.core.model.inference import Classifier

    clf = Classifier(dead_relu_bundle)
    x = np.random.default_rng(1).random((SIZE, SIZE, 1), dtype=np.float32)
    hm = explain_with_trust(create_explainer("gradcam", clf), x, 1)
    assert hm.layer == "dead"
    assert hm.status == NO_SIGNAL and hm.trust == {}
    assert hm.status_text.startswith("no signal: the map is zero everywhere; at layer 'dead'")
    ok = explain_with_trust(create_explainer("occlusion", clf, {"patch": 4, "stride": 4}), x, 1)
    assert ok.status == "ok" and "deletion_auc" in ok.trust


def test_a_cam_map_without_evidence_says_so_not_that_the_layer_is_dead():
    """The shipped adult model's map *is* its decision (a mean-pooled CAM head): on a film
    where no location scores for Lung Opacity, its Grad-CAM is zero because there is no
    evidence, which the note says instead of blaming the layer."""
    from cxr_viewer.core.explain.base import explain_map
    from cxr_viewer.core.explain.registry import create_explainer
    from cxr_viewer.core.model.inference import load_classifier
    from cxr_viewer.core.paths import resources_dir

    clf = load_classifier(resources_dir() / "adult_bundle")
    s = clf.spec
    lo, hi = s.channel_range
    flat = np.full((s.height, s.width, s.channels), (lo + hi) / 2, np.float32)
    pos = clf.class_names.index("lung_opacity")
    assert clf.predict_inputs(flat[None])[0, pos] < 0.5
    hm = explain_map(create_explainer("gradcam", clf), flat, pos)
    assert hm.status == NO_SIGNAL and hm.settings["no_evidence"] is True
    assert hm.status_text == (
        "no signal: the map is zero everywhere; no location at 'head_cam' adds evidence for "
        "lung_opacity: the model finds none on this film; explain the other class to see what "
        "the decision rests on"
    )
    other = explain_map(create_explainer("gradcam", clf), flat, 1 - pos)
    assert other.status == "ok" and "no_evidence" not in other.settings


def _images(folder, n=2):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((24, 24)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def _batch(bundle_root, src, out, methods):
    code = main(
        [
            "batch",
            str(src),
            "--model",
            str(bundle_root),
            "--explain",
            methods,
            "--out",
            str(out),
            "--quiet",
        ]
    )
    return code, list(csv.DictReader(open(out / "predictions.csv", encoding="utf-8")))


def test_batch_csv_says_no_signal_per_map_and_leaves_trust_empty(dead_relu_bundle, tmp_path):
    code, rows = _batch(
        dead_relu_bundle.root, _images(tmp_path / "in"), tmp_path / "out", "gradcam,occlusion"
    )
    assert code == 0 and len(rows) == 2
    for r in rows:
        assert r["status"] == "ok", r["error"]
        assert r["gradcam_status"].startswith("no signal: the map is zero everywhere")
        assert r["gradcam_deletion_auc"] == "" and r["gradcam_insertion_auc"] == ""
        assert r["occlusion_status"] == "ok" and float(r["occlusion_deletion_auc"]) >= 0


@pytest.fixture(scope="module")
def mlp_bundle(tmp_path_factory):
    """A Flatten → Dense model imported from a .keras file: LIME and occlusion only."""
    keras = pytest.importorskip("keras")
    from cxr_viewer.core.importer import import_model

    inp = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Flatten()(inp)
    x = keras.layers.Dense(8, activation="relu")(x)
    model = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(x))
    root = tmp_path_factory.mktemp("mlp")
    model.save(root / "mlp.keras")
    bundle = import_model(root / "mlp.keras", ["lesion"], out_dir=root / "bundle", n_background=3)
    return bundle, model


def test_a_model_without_feature_maps_imports_with_lime_and_occlusion(mlp_bundle):
    from cxr_viewer.core.explain.registry import EXPLAINERS, method_unavailable

    bundle, model = mlp_bundle
    x = np.random.default_rng(2).random((3, SIZE, SIZE, 1), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(bundle.load_model()(x)), np.asarray(model(x)), atol=1e-6)
    reasons = {m: method_unavailable(m, bundle) for m in EXPLAINERS}
    assert reasons["lime"] is None and reasons["occlusion"] is None
    assert "no convolutional feature maps" in reasons["gradcam"]
    assert "per-layer SHAP" in reasons["shap"]
    assert bundle.gradcam_layer is None and bundle.shap_layers == []
    assert set(bundle.metadata["methods_unavailable"]) == {"gradcam", "shap"}


def test_batch_runs_the_methods_that_apply_and_says_why_not_the_others(mlp_bundle, tmp_path):
    bundle, _ = mlp_bundle
    code, rows = _batch(
        bundle.root, _images(tmp_path / "in", 1), tmp_path / "out", "gradcam,shap,occlusion"
    )
    assert code == 0
    (row,) = rows
    assert row["status"] == "ok", row["error"]
    assert row["gradcam_status"].startswith("not applicable: the model has no convolutional")
    assert row["shap_status"].startswith("not applicable:")
    assert row["overlay_gradcam"] == "" and row["seconds_gradcam"] == ""
    assert row["occlusion_status"] == "ok" and row["overlay_occlusion"]


def test_dicom_panel_carries_the_status(tmp_path):
    from cxr_viewer.core.interop.dicom_export import ExplanationResult, ModelIdentity, panel_lines
    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.model.inference import Prediction

    hm = Heatmap(np.zeros((8, 8), np.float32), "gradcam", 1, "lesion", False, layer="dead")
    hm.status, hm.note = (
        NO_SIGNAL,
        "the map is zero everywhere; " + no_signal_remedy("gradcam", "dead"),
    )
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(tmp_path / "x.png")
    study = load_study(tmp_path / "x.png")
    result = ExplanationResult.from_heatmap(hm, study)
    assert result.status.startswith("no signal: the map is zero everywhere")
    pred = Prediction(np.array([0.4, 0.6]), ("normal", "lesion"))
    lines = [t for t, _ in panel_lines(result, pred, ModelIdentity("m", "1", ("normal", "lesion")))]
    assert "NO SIGNAL: the map is blank" in lines
    assert "the map is zero everywhere" in lines
    assert all(len(t) <= 60 for t in lines)
