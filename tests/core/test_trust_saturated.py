"""Faithfulness on a score that moves, and agreement between maps.

The model here is built by hand, not trained (fast, and its behaviour is known): a blob
detector (a zero-sum difference-of-Gaussians convolution, ReLU) whose global average feeds a
softmax with weights so large that a phantom with a lesion gets p = 1.0 in float32 — the
saturated films of the demo model, on phantoms. Blurring the pixels Grad-CAM points at (the
detector's response, which CAM equals for a GAP head) removes the blobs the score counts.
"""

from __future__ import annotations

import numpy as np
import pytest
from explain_support import _bundle

from cxr_viewer.core.evaluate.agreement import (
    agreement_layer,
    agreement_words,
    pairwise,
    spearman,
    top_mask,
    top_overlap,
)
from cxr_viewer.core.evaluate.trust import explain_with_trust, faithfulness_label, verdicts
from cxr_viewer.core.explain.base import Heatmap
from cxr_viewer.core.explain.registry import create_explainer
from cxr_viewer.testdata.phantoms import make_phantoms

SIZE = 64


def _dog_kernel(k: int = 9, s1: float = 1.2, s2: float = 3.0) -> np.ndarray:
    r = np.arange(k) - k // 2
    rr = r[:, None] ** 2 + r[None, :] ** 2
    g1 = np.exp(-rr / (2 * s1**2))
    g2 = np.exp(-rr / (2 * s2**2))
    kern = g1 / g1.sum() - g2 / g2.sum()
    return kern.astype(np.float32)


@pytest.fixture(scope="module")
def saturated():
    """(classifier, positive phantom input) with p(lesion) = 1.0 in float32."""
    pytest.importorskip("tensorflow")
    import keras
    from keras import layers

    from cxr_viewer.core.model.inference import Classifier

    ph = make_phantoms(4, SIZE, seed=3, positive_fraction=1.0)
    x = ph.images[0][..., None].astype(np.float32)
    inp = keras.Input((SIZE, SIZE, 1), name="image")
    h = layers.Conv2D(1, 9, padding="same", activation="relu", name="blob")(inp)
    g = layers.GlobalAveragePooling2D(name="gap")(h)
    out = layers.Dense(2, activation="softmax", name="predictions")(g)
    model = keras.Model(inp, out)
    model.get_layer("blob").set_weights([_dog_kernel()[:, :, None, None], np.zeros(1, np.float32)])
    gap = float(np.asarray(keras.Model(inp, g)(x[None]))[0, 0])
    w = 20.0 / gap  # logit difference 40 on this phantom: p rounds to 1.0 in float32
    model.get_layer("predictions").set_weights(
        [np.array([[-w, w]], np.float32), np.zeros(2, np.float32)]
    )
    bg = ph.images[1:][..., None].astype(np.float32)
    clf = Classifier(_bundle(model, "saturated", SIZE, bg), batch_size=16)
    assert float(clf.predict_inputs(x[None])[0, 1]) == 1.0
    return clf, x


def test_a_saturated_model_still_gets_a_measured_verdict(saturated):
    clf, x = saturated
    hm = explain_with_trust(create_explainer("gradcam", clf, {"layer": "blob"}), x, 1)
    t = hm.trust
    # on p nothing moves: the old test could only say "not measurable"
    assert t["p"] == pytest.approx(1.0) and abs(t["drop_top"]) < 1e-6
    assert abs(t["drop_random"]) < 1e-6
    # on the log-odds the map's removal drops the score far more than random removal
    assert t["logit"] == pytest.approx(40.0, rel=1e-3)
    assert t["logit_drop_top"] > 2 * t["logit_drop_random"] > 0
    assert t["margin_lo"] > 0
    v = verdicts("gradcam", t, hm.settings)
    assert v[0].level == "good" and v[0].text.startswith("faithful")
    assert faithfulness_label(t) == "faithful"


def test_a_map_whose_removal_raises_the_score_is_not_faithful(saturated):
    clf, x = saturated
    cam = explain_with_trust(create_explainer("gradcam", clf, {"layer": "blob"}), x, 1)
    # the lesion detector's map, read as evidence for "no lesion": removing it raises that score
    as_no_lesion = Heatmap(cam.values, "gradcam", 0, "no_lesion", False)
    from cxr_viewer.core.evaluate.trust import add_trust

    t = add_trust(as_no_lesion, clf, x).trust
    assert t["logit_drop_top"] < 0
    v = verdicts("gradcam", t)[0]
    assert v.level == "bad" and v.text.startswith("not faithful: removing its top 20 % raises")
    assert faithfulness_label(t) == "not faithful"


def test_a_map_agrees_with_itself_and_not_with_its_opposite():
    rng = np.random.default_rng(0)
    m = rng.random((32, 32))
    assert spearman(m, m) == pytest.approx(1.0)
    assert top_overlap(m, m) == 1.0
    assert spearman(m, -m) == pytest.approx(-1.0)
    assert top_overlap(m, -m) == 0.0
    (pair,) = pairwise({"gradcam": m, "lime": m})
    assert pair.rho == pytest.approx(1.0) and pair.overlap == 1.0 and pair.agree
    # a map at another size is resized to the first one's
    (pair,) = pairwise({"a": m, "b": np.kron(m, np.ones((2, 2)))})
    assert pair.rho > 0.9


def test_agreement_in_plain_words_and_the_agreement_layer():
    rng = np.random.default_rng(1)
    a = rng.random((40, 40))
    b = a + 0.05 * rng.random((40, 40))  # nearly the same map
    c = rng.random((40, 40))  # unrelated
    maps = {"gradcam": a, "occlusion": b, "lime": c}
    pairs = pairwise(maps)
    labels = {"gradcam": "Grad-CAM", "occlusion": "occlusion", "lime": "LIME"}
    assert agreement_words(pairs, list(maps), labels) == (
        "Grad-CAM and occlusion agree; LIME points elsewhere"
    )
    assert agreement_words(pairwise({"a": a, "c": c}), ["a", "c"]) == "a and c disagree"
    assert agreement_words(pairwise({"a": a, "b": b, "a2": a}), ["a", "b", "a2"]) == (
        "All 3 maps agree"
    )
    assert agreement_words([], ["a"]) == ""
    layer = agreement_layer(maps, k=2)
    both = top_mask(a) & top_mask(b)
    # where Grad-CAM and occlusion both put their top 10 %, at least 2 of 3 methods agree
    assert np.all(layer[both] >= 2 / 3)
    assert set(np.unique(layer)) <= {0.0, np.float32(2 / 3), np.float32(1.0)}
    assert np.all(agreement_layer(maps, k=1) >= layer)


def test_batch_csv_and_dicom_sr_say_what_the_viewer_says(tmp_path, saturated):
    import csv

    import pydicom
    from PIL import Image

    from cxr_viewer.cli import main

    pytest.importorskip("highdicom")
    clf, x = saturated
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray((x[..., 0] * 255).astype(np.uint8)).save(src / "lesion.png")
    out = tmp_path / "out"
    argv = ["batch", str(src), "--model", str(clf.bundle.root), "--out", str(out)]
    argv += ["--explain", "gradcam,lime,occlusion", "--gradcam-layer", "blob", "--quiet"]
    assert main([*argv, "--dicom-out", str(tmp_path / "dicom")]) == 0
    (row,) = list(csv.DictReader(open(out / "predictions.csv", encoding="utf-8")))
    assert row["status"] == "ok", row["error"]
    for m in ("gradcam", "lime"):
        assert row[f"{m}_faithfulness"] in ("faithful", "inconclusive", "not faithful"), (
            m,
            row[f"{m}_status"],
        )
        assert row[f"{m}_verdict"].startswith(("faithful", "faithfulness inconclusive", "not"))
        assert float(row[f"{m}_margin_lo"]) <= float(row[f"{m}_margin"])
        assert row[f"{m}_logit_deletion_auc"] != ""
    # occlusion's map is the drop of p, which is exactly 1.0 here wherever the square goes: the
    # map is flagged as having no signal (with a remedy) and gets no trust figures, not a verdict
    # made up from a blank map; otherwise it gets a measured verdict like the others
    if row["occlusion_status"].startswith("no signal"):
        assert row["occlusion_faithfulness"] == "" and row["occlusion_verdict"] == ""
    else:
        assert row["occlusion_faithfulness"] in ("faithful", "inconclusive", "not faithful")
    assert row["gradcam_faithfulness"] == "faithful"
    assert row["most_faithful"] in ("gradcam", "lime", "occlusion")
    assert (
        row["agreement"].endswith(("agree", "disagree")) or "points elsewhere" in row["agreement"]
    )
    assert "gradcam~lime rho" in row["agreement_pairs"]
    (sr_path,) = list((tmp_path / "dicom").glob("*_SR.dcm"))

    def walk(ds):
        for item in ds.get("ContentSequence", []):
            yield item
            yield from walk(item)

    texts = [str(i.TextValue) for i in walk(pydicom.dcmread(sr_path)) if "TextValue" in i]
    assert any(t.startswith("faithful: removing its top 20 %") for t in texts)
    assert f"Agreement: {row['agreement']}" in texts
    assert "most faithful on this film" in texts
