"""Grad-CAM on real held-out films, measured: does the map point at what the model uses?

For each test image (at most ``limit``, a seeded sample), the exported bundle's classifier and
the viewer's own Grad-CAM explainer (:mod:`cxr_viewer.core.explain.gradcam`, the bundle's
default layer) explain the *predicted* class (threshold-aware). Then:

* **Deletion at 20 %.** The 20 % of pixels the map ranks highest are replaced with a blurred
  copy of the image (RISE's deletion baseline, :func:`cxr_viewer.core.evaluate.trust.baseline_image`) and
  the drop of the predicted class's probability is recorded, then again with the removed
  pixels set to the image mean and to black (:data:`FILLS`: a lead that holds under one fill
  only measures the fill). The reference is a **random map of the same resolution** as the
  Grad-CAM layer (uniform noise on its grid, upsampled the same way), so the removed region is
  as contiguous as Grad-CAM's. Scattered random pixels are another perturbation altogether:
  on one model they hardly change a blurred-in image and flatter any map, on another (the
  box-supervised adult model, README) they read as opacity and lower its "no opacity" score
  more than any contiguous fifth. A faithful map drops p more than random.
* **Centre mass.** The share of the map's mass inside the central 80 % of the image (10 %
  margins on every side). A uniform map puts 64 % there; a map that sits on the film border,
  burned-in markers or the collimation edge puts less.

The figures are descriptive (Petsiuk et al. 2018 discuss the pitfalls of deletion metrics); the
tests only check that Grad-CAM beats random on real data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import PreparedData
from .pipeline import gather_inputs

FRACTION = 0.2
CENTRE_MARGIN = 0.1


def centre_mass(saliency: np.ndarray, margin: float = CENTRE_MARGIN) -> float:
    """Share of the (non-negative) map's mass inside the central box with ``margin`` cut off."""
    s = np.clip(np.asarray(saliency, np.float64), 0, None)
    total = s.sum()
    if total <= 0:
        return float("nan")
    h, w = s.shape
    r0, r1 = int(round(h * margin)), int(round(h * (1 - margin)))
    c0, c1 = int(round(w * margin)), int(round(w * (1 - margin)))
    return float(s[r0:r1, c0:c1].sum() / total)


def top_mask(saliency: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean mask of the ``fraction`` of pixels ranked highest (ties broken at random)."""
    from cxr_viewer.core.evaluate.trust import pixel_order

    order = pixel_order(saliency, seed)
    mask = np.zeros(saliency.size, bool)
    mask[order[: int(round(fraction * saliency.size))]] = True
    return mask.reshape(saliency.shape)


def random_map(shape: tuple[int, int], grid: tuple[int, int], rng: np.random.Generator):
    """Uniform noise on a ``grid`` (the explained layer's resolution), upsampled to ``shape``
    the way the explainers upsample their maps."""
    from cxr_viewer.core.io.resize import resize_map

    return resize_map(rng.random(grid).astype(np.float32), *shape)


def gradcam_check(
    bundle_dir: str | Path, data: PreparedData, *, limit: int = 400, seed: int = 0
) -> dict:
    """Run the measurements above on (at most ``limit`` films of) the test split."""
    from cxr_viewer.core.model.bundle import open_bundle
    from cxr_viewer.core.model.inference import Classifier

    clf = Classifier(open_bundle(bundle_dir))
    clf.warm_up()
    rows = data.rows("test")
    if len(rows) > limit:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=limit, replace=False))
    return measure_gradcam(clf, gather_inputs(data.cache.images, rows, clf.spec), seed=seed)


#: the fills the deletion test is repeated with (the first is the headline's): RISE's blur, the
#: image mean and black (display value 0). Deletion results depend on what the removed pixels
#: become (Hooker et al., NeurIPS 2019; Rong et al., ICML 2022, "ROAD"): blur looks like an
#: opacity to some chest models, black like a collimated border. A map whose lead over random
#: holds under every fill is faithful; one that wins under one fill only measures the fill.
FILLS = ("blur", "mean", "black")
#: how the report names each fill
FILL_TEXT = {
    "blur": "blurred copy (RISE deletion baseline)",
    "mean": "the image's mean",
    "black": "black (display value 0)",
}


def measure_gradcam(clf, x: np.ndarray, *, seed: int = 0, fills: tuple[str, ...] = FILLS) -> dict:
    """Deletion at 20 % (Grad-CAM vs a random map of the layer's grid) and centre mass for
    model inputs ``x`` (n, h, w, c), explaining each film's predicted class.

    The top-level figures are those of ``fills[0]``; ``by_fill`` holds every fill's, with the
    paired figure ``median_log_odds_margin`` (the median over films of Grad-CAM's drop minus the
    random map's, in log-odds)."""
    from cxr_viewer.core.evaluate.trust import baseline_image
    from cxr_viewer.core.explain.gradcam import GradCamExplainer

    if not fills:
        raise ValueError("measure_gradcam needs at least one fill")
    explainer = GradCamExplainer(clf)
    layer = explainer.default_layer()
    shape = explainer.model.get_layer(layer).output.shape
    grid = (int(shape[1]), int(shape[2]))
    rng = np.random.default_rng(seed)
    probs = clf.predict_inputs(x)
    spec = clf.spec
    masks, targets, centre, base_p = [], [], [], []
    for i in range(len(x)):
        target = clf.make_prediction(probs[i]).predicted_index
        sal = explainer.explain(x[i], target).values
        masks.append(
            [
                top_mask(saliency, FRACTION, seed + i)[..., None]
                for saliency in (sal, random_map(sal.shape, grid, rng))
            ]
        )
        targets.append(target)
        centre.append(centre_mass(sal))
        base_p.append(float(probs[i, target]))
    t = np.asarray(targets)
    p0 = np.asarray(base_p)
    by_fill = {}
    for fill in fills:
        perturbed = []
        for i in range(len(x)):
            filled = baseline_image(x[i], spec, fill)  # once per film: both masks share it
            perturbed += [np.where(m, filled, x[i]) for m in masks[i]]
        after = clf.predict_inputs(np.stack(perturbed)) if perturbed else np.zeros((0, 1))
        by_fill[fill] = _deletion_figures(
            p0, after[0::2][np.arange(len(t)), t], after[1::2][np.arange(len(t)), t]
        )
    uniform = (1 - 2 * CENTRE_MARGIN) ** 2
    c = np.asarray(centre, np.float64)
    return {
        "images": int(len(t)),
        "layer": layer,
        "fraction_removed": FRACTION,
        "fill": FILL_TEXT.get(fills[0], fills[0]),
        "random_reference": f"top {FRACTION:.0%} of uniform noise on the {grid[0]}×{grid[1]} "
        "layer grid, upsampled",
        **by_fill[fills[0]],
        "by_fill": by_fill,
        # maps without mass (a flat film's Grad-CAM) have no centre share
        "median_centre_mass": _median(c[np.isfinite(c)]),
        "centre_mass_uniform_map": uniform,
        "share_centre_mass_below_uniform": float(np.mean(c[np.isfinite(c)] < uniform))
        if np.isfinite(c).any()
        else float("nan"),
    }


def _deletion_figures(p0: np.ndarray, p_cam: np.ndarray, p_rand: np.ndarray) -> dict:
    """Drops of the explained class's p and log-odds after Grad-CAM's and the random map's
    removal (one entry per film)."""
    drop_cam, drop_rand = p0 - p_cam, p0 - p_rand
    med_cam, med_rand = _median(drop_cam), _median(drop_rand)
    # the same drops in log-odds, the score the viewer's faithfulness figure uses: a confident
    # model's p moves little near 0 or 1 however much evidence is removed
    lo_cam, lo_rand = _log_odds(p0) - _log_odds(p_cam), _log_odds(p0) - _log_odds(p_rand)
    lo_med_cam, lo_med_rand = _median(lo_cam), _median(lo_rand)
    return {
        "median_drop_gradcam": med_cam,
        "median_drop_random": med_rand,
        "mean_drop_gradcam": float(drop_cam.mean()) if drop_cam.size else float("nan"),
        "mean_drop_random": float(drop_rand.mean()) if drop_rand.size else float("nan"),
        "ratio_median_drop": _ratio(med_cam, med_rand),
        "share_gradcam_beats_random": float(np.mean(drop_cam > drop_rand))
        if drop_cam.size
        else float("nan"),
        "median_log_odds_drop_gradcam": lo_med_cam,
        "median_log_odds_drop_random": lo_med_rand,
        "ratio_median_log_odds_drop": _ratio(lo_med_cam, lo_med_rand),
        "median_log_odds_margin": _median(lo_cam - lo_rand),
    }


def _median(v: np.ndarray) -> float:
    return float(np.median(v)) if np.size(v) else float("nan")


def _log_odds(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    return np.log(q / (1 - q))


def _ratio(a: float, b: float) -> float:
    return a / b if abs(b) > 1e-9 else float("inf")
