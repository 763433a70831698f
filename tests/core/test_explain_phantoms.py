"""Explainers on a small model trained on phantoms, whose lesion masks say where to look.

The model (tests/core/explain_support.py) is trained once per test process (~30–70 s on two
cores). Findings these tests pin down:

* Grad-CAM (Selvaraju et al. 2017) finds the lesion, but its peak sits just *outside* the
  lesion's rim (1–3 px), not inside: the argmax is strictly in the mask on 3–23 % of positives
  over training seeds 0–2 (10–50 % with the earlier 3×3-block model), within 4 px on 97–100 %
  (figures and the variants tried in explain_support's docstring). The class map (= CAM, GAP
  head) is a near-flat disc out to ~2 lesion radii with its maximum beyond the rim; a map
  computed at full resolution peaks outside too, and the upsampling is centre-aligned (checked
  below), so this is where the model's lesion-detecting units sit, not an artefact. The test
  therefore uses the pointing game of Zhang et al. (2018), which counts a hit within 15 px of
  the object at 224 px — 4 px at 64 px — and reports the strict rate alongside.
* LIME's top superpixel (Ribeiro et al. 2016) overlaps the lesion.
* Randomizing the weights changes the maps (Adebayo et al. 2018, model randomization test).
* Expected-gradients SHAP is complete at each offered layer with the viewer's defaults.
* Deleting the top 20 % Grad-CAM pixels hurts the lesion probability more than a random 20 %.
"""

from __future__ import annotations

import numpy as np
import pytest
from explain_support import _bundle
from scipy.ndimage import distance_transform_edt
from scipy.stats import spearmanr

from cxr_viewer.core.evaluate.trust import delete_top_fraction
from cxr_viewer.core.explain.registry import create_explainer

pytestmark = pytest.mark.slow

#: Zhang et al. 2018 pointing-game tolerance (15 px at 224) scaled to the 64-px phantoms
POINTING_TOLERANCE_PX = 4.0
LESION = 1


@pytest.fixture(scope="module")
def case(phantom_case):
    c = phantom_case
    assert c.val_accuracy >= 0.9, "the phantom model failed to train"
    return c


def _rank_corr(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a.ravel(), b.ravel()).statistic)


def test_gradcam_points_at_the_lesion(case):
    explainer = create_explainer("gradcam", case.classifier)
    assert explainer.default_layer() == "c4"
    dist = []
    for i in case.positives:
        v = explainer.explain(case.images[i], LESION).values
        r, c = np.unravel_index(np.argmax(v), v.shape)
        dist.append(distance_transform_edt(~case.masks[i])[r, c])
    dist = np.array(dist)
    hits = np.mean(dist <= POINTING_TOLERANCE_PX)
    strict = np.mean(dist == 0)  # the argmax pixel itself is in the mask
    assert hits >= 0.9, f"pointing-game hit rate {hits:.2f} (strictly inside: {strict:.2f})"


def test_gradcam_upsampling_is_centre_aligned():
    """A feature cell j at stride 2 (2×2 max pool) covers input pixels 2j and 2j+1; the
    bilinear upsampling must put its weight's centre at 2j + 0.5 (no half-cell shift)."""
    from cxr_viewer.core.io.resize import resize_map

    cam = np.zeros((32, 32), np.float32)
    cam[10, 13] = 1.0
    v = resize_map(cam, 64, 64)
    rows, cols = np.mgrid[:64, :64]
    assert np.isclose((v * rows).sum() / v.sum(), 20.5)
    assert np.isclose((v * cols).sum() / v.sum(), 26.5)
    assert v[20, 26] == v[21, 27] == v.max()


def test_lime_top_superpixel_is_on_the_lesion(case):
    hits = []
    for i in case.positives[:15]:
        # at most 300 samples (the viewer allows 1000) keeps the test short
        explainer = create_explainer("lime", case.classifier, {"num_samples": 300})
        v = explainer.explain(case.images[i], LESION).values
        segments = explainer.last_segments
        top = segments == segments.flat[np.argmax(v)]
        hits.append(bool((top & case.masks[i]).any()))
    assert np.mean(hits) >= 0.8, f"top superpixel on the lesion for {np.mean(hits):.2f}"


def test_model_randomization_changes_the_maps(case, tmp_path):
    import keras

    from cxr_viewer.core.model.inference import Classifier

    keras.utils.set_random_seed(123)
    random_model = keras.models.clone_model(case.classifier.model)  # fresh initial weights
    random_clf = Classifier(_bundle(random_model, "randomized", 64, case.images[:4]))
    idx = case.positives[:6]
    for method, settings in (("gradcam", {}), ("lime", {"num_samples": 200})):
        rhos = []
        for i in idx:
            a = create_explainer(method, case.classifier, settings).explain(case.images[i], 1)
            b = create_explainer(method, random_clf, settings).explain(case.images[i], 1)
            if method == "gradcam":
                assert np.ptp(b.values) > 0  # the randomized model still gives a map
            rhos.append(_rank_corr(a.values, b.values))
        assert np.mean(np.abs(rhos)) < 0.4, f"{method}: rank correlation {np.mean(rhos):.2f}"


def test_shap_is_complete_at_every_offered_layer(case):
    """|Σφ − (f(x) − E f(bg))| / |f(x) − E f(bg)| ≤ 5 % with the viewer's default settings.

    The relative gap is ill-conditioned when f(x) ≈ E f(bg), so images whose class score
    differs from the background mean by less than 0.5 (logit units) are left out.
    """
    layers = create_explainer("shap", case.classifier).layers()
    assert layers == case.classifier.bundle.shap_layers and len(layers) >= 3
    checked = 0
    for layer in layers:
        gaps = []
        for i in case.positives[:12]:
            hm = create_explainer("shap", case.classifier, {"layer": layer}).explain(
                case.images[i], LESION
            )
            if abs(hm.trust["f_x"] - hm.trust["f_background"]) >= 0.5:
                gaps.append(hm.trust["completeness_gap"])
        assert len(gaps) >= 5
        checked += len(gaps)
        assert max(gaps) <= 0.05, f"{layer}: completeness gaps {np.round(gaps, 3)}"
    assert checked >= 15


def test_deleting_gradcam_pixels_hurts_more_than_random(case):
    explainer = create_explainer("gradcam", case.classifier)
    drop_map, drop_random = [], []
    for i in case.positives:
        x = case.images[i]
        p0 = float(case.classifier.predict_inputs(x[None])[0, LESION])
        sal = explainer.explain(x, LESION).values
        drop_map.append(p0 - delete_top_fraction(case.classifier, x, sal, LESION, 0.2))
        drop_random.append(
            np.mean(
                [
                    p0 - delete_top_fraction(case.classifier, x, None, LESION, 0.2, seed=s)
                    for s in range(3)
                ]
            )
        )
    assert np.mean(drop_map) > np.mean(drop_random) + 0.1
