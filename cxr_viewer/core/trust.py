"""How far to trust an explanation: deletion/insertion curves and SHAP completeness.

Deletion and insertion (Petsiuk, Das & Saenko, BMVC 2018, "RISE"): rank the pixels by the map,
then remove the most important first (replace them with a blurred copy of the image, see
:func:`perturbation_curve`) — a faithful map makes the class probability fall fast, so a *low*
deletion AUC is good — or insert them first into the blurred copy — a faithful map makes it rise fast, so a *high* insertion AUC is good. The AUC is
the trapezoidal area under probability vs. fraction of pixels, in [0, 1]. All perturbed images
of a curve go through the classifier's batched, compiled predict function.

Completeness (Lundberg & Lee 2017): expected-gradients attributions add up to
f(x) − E f(background); :func:`completeness_gap` is the relative miss.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from cxr_viewer.core.errors import ExplainError
from cxr_viewer.core.progress import CancelToken

BASELINES = ("black", "blur", "mean")


def completeness_gap(sum_attributions: float, f_x: float, f_background: float) -> float:
    """|Σφ − (f(x) − E f(bg))| / |f(x) − E f(bg)| (NaN if the difference is ~0)."""
    diff = float(f_x) - float(f_background)
    if abs(diff) < 1e-6:
        return float("nan")
    return abs(float(sum_attributions) - diff) / abs(diff)


def baseline_image(x: np.ndarray, spec, kind: str) -> np.ndarray:
    """The image that deleted pixels show (or insertion starts from), in model units.

    "black": display value 0; "mean": the image mean; "blur": a Gaussian blur with sigma 2.5 %
    of the image side (RISE's insertion baseline).
    """
    x = np.asarray(x, np.float32)
    if kind == "black":
        return np.broadcast_to(spec.channel_range[0], x.shape).astype(np.float32)
    if kind == "mean":
        return np.full_like(x, float(x.mean()))
    if kind == "blur":
        sigma = 0.025 * max(x.shape[:2])
        out = cv2.GaussianBlur(x, (0, 0), sigmaX=sigma, sigmaY=sigma)
        return out.reshape(x.shape).astype(np.float32)
    raise ExplainError(f"Unknown baseline '{kind}'", f"choose one of {BASELINES}.")


def pixel_order(saliency: np.ndarray, seed: int = 0) -> np.ndarray:
    """Flat pixel indices, most important first; ties (flat superpixels) broken at random."""
    s = np.asarray(saliency, np.float64).ravel()
    s = np.where(np.isfinite(s), s, -np.inf)
    tie = np.random.default_rng(seed).random(s.size)
    return np.lexsort((tie, -s))


def _check(classifier, x: np.ndarray, saliency: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    spec = classifier.spec
    x = np.asarray(x, np.float32)
    if x.shape != (spec.height, spec.width, spec.channels):
        raise ExplainError(
            "The image does not match the model input",
            f"got {x.shape}, expected ({spec.height}, {spec.width}, {spec.channels}).",
        )
    sal = np.asarray(saliency, np.float32)
    if sal.shape != x.shape[:2]:
        sal = cv2.resize(sal, (x.shape[1], x.shape[0]), interpolation=cv2.INTER_LINEAR)
    return x, sal


def perturbation_curve(
    classifier,
    x: np.ndarray,
    saliency: np.ndarray,
    target_class: int,
    *,
    mode: str = "deletion",
    steps: int = 16,
    baseline: str | None = None,
    seed: int = 0,
    cancel: CancelToken | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(fraction of pixels changed, class probability) for a deletion or insertion curve.

    ``steps + 1`` images: fraction 0, 1/steps, …, 1. Deletion replaces the top pixels of
    ``x`` with the baseline; insertion copies them from ``x`` into the baseline. The default
    baseline for both is the blurred image: RISE deletes to black, but black patches on a
    chest X-ray are far from anything the model saw (on the phantom model they *raise* the
    lesion probability), whereas blurring removes the local evidence and keeps the anatomy.
    """
    if mode not in ("deletion", "insertion"):
        raise ExplainError(f"Unknown curve '{mode}'", "choose deletion or insertion.")
    if steps < 1:
        raise ExplainError("A curve needs at least one step", f"steps={steps}.")
    x, sal = _check(classifier, x, saliency)
    base = baseline_image(x, classifier.spec, baseline or "blur")
    order = pixel_order(sal, seed)
    n = order.size
    fractions = np.linspace(0.0, 1.0, steps + 1)
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    rank = rank.reshape(sal.shape)
    imgs = np.empty((steps + 1, *x.shape), np.float32)
    for i, f in enumerate(fractions):
        top = (rank < int(round(f * n)))[..., None]
        if mode == "deletion":
            imgs[i] = np.where(top, base, x)
        else:
            imgs[i] = np.where(top, x, base)
    probs = classifier.predict_inputs(imgs, cancel=cancel)[:, int(target_class)]
    return fractions, probs.astype(np.float64)


def auc(fractions: np.ndarray, values: np.ndarray) -> float:
    """Trapezoidal area under a curve sampled at ``fractions`` in [0, 1]."""
    f = np.asarray(fractions, np.float64)
    v = np.asarray(values, np.float64)
    return float(np.sum((v[1:] + v[:-1]) * np.diff(f)) / 2.0)


def deletion_insertion(
    classifier,
    x: np.ndarray,
    saliency: np.ndarray,
    target_class: int,
    *,
    steps: int = 16,
    seed: int = 0,
    cancel: CancelToken | None = None,
) -> dict[str, float]:
    """``{"deletion_auc", "insertion_auc"}`` of a map (Petsiuk et al. 2018).

    Signed maps are ranked by their value (evidence *for* the class first).
    """
    out = {}
    for mode in ("deletion", "insertion"):
        f, p = perturbation_curve(
            classifier, x, saliency, target_class, mode=mode, steps=steps, seed=seed, cancel=cancel
        )
        out[f"{mode}_auc"] = auc(f, p)
    return out


def add_trust(
    heatmap,
    classifier,
    x: np.ndarray,
    *,
    steps: int = 16,
    cancel: CancelToken | None = None,
):
    """A copy of ``heatmap`` with deletion/insertion AUCs added to its ``trust`` figures."""
    figs = deletion_insertion(
        classifier, x, heatmap.values, heatmap.target_class, steps=steps, cancel=cancel
    )
    return replace(heatmap, trust={**heatmap.trust, **figs})


def delete_top_fraction(
    classifier,
    x: np.ndarray,
    saliency: np.ndarray | None,
    target_class: int,
    fraction: float,
    *,
    baseline: str = "blur",
    seed: int = 0,
) -> float:
    """Class probability after deleting the top ``fraction`` of pixels (random if no map)."""
    x = np.asarray(x, np.float32)
    if saliency is None:
        saliency = np.random.default_rng(seed).random(x.shape[:2]).astype(np.float32)
    x, sal = _check(classifier, x, saliency)
    order = pixel_order(sal, seed)
    k = int(round(fraction * order.size))
    mask = np.zeros(order.size, bool)
    mask[order[:k]] = True
    mask = mask.reshape(sal.shape)[..., None]
    img = np.where(mask, baseline_image(x, classifier.spec, baseline), x)
    return float(classifier.predict_inputs(img[None])[0, int(target_class)])
