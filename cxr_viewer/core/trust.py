"""How far to trust an explanation: deletion/insertion curves and SHAP completeness.

Deletion and insertion (Petsiuk, Das & Saenko, BMVC 2018, "RISE"): rank the pixels by the map,
then remove the most important first (replace them with a blurred copy of the image, see
:func:`perturbation_curve`) — a faithful map makes the class probability fall fast, so a *low*
deletion AUC is good — or insert them first into the blurred copy — a faithful map makes it rise fast, so a *high* insertion AUC is good. The AUC is
the trapezoidal area under probability vs. fraction of pixels, in [0, 1]. All perturbed images
of a curve go through the classifier's batched, compiled predict function.

Completeness (Lundberg & Lee 2017): expected-gradients attributions add up to
f(x) − E f(background); :func:`completeness_gap` is the relative miss.

:func:`verdicts` turns the figures into short sentences a reader can act on ("faithful:
removing its top 20 % drops p by 0.41 vs 0.05 at random", "LIME did not converge at 2,000
samples", "SHAP sums to the score within 0.4 %"), and :func:`figures_tooltip` says what each
figure means.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from cxr_viewer.core.errors import ExplainError
from cxr_viewer.core.progress import CancelToken
from cxr_viewer.core.resize import resize_map

if TYPE_CHECKING:  # types only: the inference and explanation modules import this one
    from cxr_viewer.core.explain.base import Heatmap
    from cxr_viewer.core.inference import Classifier
    from cxr_viewer.core.preprocess import InputSpec

BASELINES = ("black", "blur", "mean")


def completeness_gap(sum_attributions: float, f_x: float, f_background: float) -> float:
    """|Σφ − (f(x) − E f(bg))| / |f(x) − E f(bg)| (NaN if the difference is ~0)."""
    diff = float(f_x) - float(f_background)
    if abs(diff) < 1e-6:
        return float("nan")
    return abs(float(sum_attributions) - diff) / abs(diff)


def baseline_image(x: np.ndarray, spec: InputSpec, kind: str) -> np.ndarray:
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


def _check(
    classifier: Classifier, x: np.ndarray, saliency: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    spec = classifier.spec
    x = np.asarray(x, np.float32)
    if x.shape != (spec.height, spec.width, spec.channels):
        raise ExplainError(
            "The image does not match the model input",
            f"got {x.shape}, expected ({spec.height}, {spec.width}, {spec.channels}).",
        )
    sal = np.asarray(saliency, np.float32)
    if sal.shape != x.shape[:2]:
        sal = resize_map(sal, x.shape[0], x.shape[1])
    return x, sal


def perturbation_curve(
    classifier: Classifier,
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
    fractions, imgs = _curve_images(x, sal, base, mode, steps, seed)
    probs = classifier.predict_inputs(imgs, cancel=cancel)[:, int(target_class)]
    return fractions, probs.astype(np.float64)


def _curve_images(
    x: np.ndarray, sal: np.ndarray, base: np.ndarray, mode: str, steps: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The fractions and the ``steps + 1`` images of one deletion or insertion curve."""
    order = pixel_order(sal, seed)
    n = order.size
    fractions = np.linspace(0.0, 1.0, steps + 1)
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    rank_map = rank.reshape(sal.shape)
    imgs = np.empty((steps + 1, *x.shape), np.float32)
    for i, f in enumerate(fractions):
        top = (rank_map < int(round(f * n)))[..., None]
        if mode == "deletion":
            imgs[i] = np.where(top, base, x)
        else:
            imgs[i] = np.where(top, x, base)
    return fractions, imgs


def auc(fractions: np.ndarray, values: np.ndarray) -> float:
    """Trapezoidal area under a curve sampled at ``fractions`` in [0, 1]."""
    f = np.asarray(fractions, np.float64)
    v = np.asarray(values, np.float64)
    return float(np.sum((v[1:] + v[:-1]) * np.diff(f)) / 2.0)


def deletion_insertion(
    classifier: Classifier,
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
    out: dict[str, float] = {}
    for mode in ("deletion", "insertion"):
        f, p = perturbation_curve(
            classifier, x, saliency, target_class, mode=mode, steps=steps, seed=seed, cancel=cancel
        )
        out[f"{mode}_auc"] = auc(f, p)
    return out


#: the top-fraction drop of :func:`add_trust`: fraction of pixels, random removals
TOP_FRACTION, TOP_RANDOM = 0.2, 4


def top_fraction_drop(
    classifier: Classifier,
    x: np.ndarray,
    saliency: np.ndarray,
    target_class: int,
    *,
    fraction: float = TOP_FRACTION,
    n_random: int = TOP_RANDOM,
    seed: int = 0,
    cancel: CancelToken | None = None,
) -> dict[str, float]:
    """How much the class probability drops when the map's top ``fraction`` is removed.

    One batch: the image, the image with the map's top ``fraction`` of pixels replaced by the
    blurred copy, and ``n_random`` images with as many random pixels replaced. Returns
    ``p`` (the probability of the image), ``drop_top`` (p minus p after removing the top pixels)
    and ``drop_random`` (the mean drop over the random removals).
    """
    x, sal = _check(classifier, x, saliency)
    base = baseline_image(x, classifier.spec, "blur")
    imgs = _drop_images(x, sal, base, fraction, n_random, seed)
    probs = classifier.predict_inputs(imgs, cancel=cancel)
    return _drop_figures(probs[:, int(target_class)].astype(np.float64), fraction, n_random)


def _drop_images(
    x: np.ndarray, sal: np.ndarray, base: np.ndarray, fraction: float, n_random: int, seed: int
) -> np.ndarray:
    """The image, then it with the map's top ``fraction`` blurred, then ``n_random`` random."""
    n = sal.size
    k = int(round(float(fraction) * n))
    masks = []
    order = pixel_order(sal, seed)
    top = np.zeros(n, bool)
    top[order[:k]] = True
    masks.append(top)
    rng = np.random.default_rng(seed)
    for _ in range(int(n_random)):
        m = np.zeros(n, bool)
        m[rng.choice(n, size=k, replace=False)] = True
        masks.append(m)
    imgs = [x] + [np.where(m.reshape(sal.shape)[..., None], base, x) for m in masks]
    return np.stack(imgs).astype(np.float32)


def _drop_figures(p: np.ndarray, fraction: float, n_random: int) -> dict[str, float]:
    return {
        "p": float(p[0]),
        "drop_top": float(p[0] - p[1]),
        "drop_random": float(np.mean(p[0] - p[2:])) if n_random else float("nan"),
        "drop_fraction": float(fraction),
    }


def add_trust(
    heatmap: Heatmap,
    classifier: Classifier,
    x: np.ndarray,
    *,
    steps: int = 16,
    seed: int = 0,
    cancel: CancelToken | None = None,
) -> Heatmap:
    """A copy of ``heatmap`` with deletion/insertion AUCs and the top-20 % drop added.

    The same figures as :func:`deletion_insertion` and :func:`top_fraction_drop`, from one
    batched predict call with no image twice: the two curves' end points are the image and
    its blurred copy (deletion's first and last, insertion's last and first), and the image
    also opens the top-20 % batch (74 → 37 images at 16 steps; fewer, fuller batches).
    """
    t = int(heatmap.target_class)
    x, sal = _check(classifier, x, heatmap.values)
    base = baseline_image(x, classifier.spec, "blur")
    fractions, deletion = _curve_images(x, sal, base, "deletion", steps, seed)
    _, insertion = _curve_images(x, sal, base, "insertion", steps, seed)
    drops = _drop_images(x, sal, base, TOP_FRACTION, TOP_RANDOM, seed)
    # deletion[0] is x and deletion[-1] the baseline; insertion[0] / [-1] the same two
    imgs = np.concatenate([deletion, insertion[1:-1], drops[1:]])
    p = classifier.predict_inputs(imgs, cancel=cancel)[:, t].astype(np.float64)
    p_del = p[: steps + 1]
    p_ins = np.concatenate([p[steps : steps + 1], p[steps + 1 : 2 * steps], p[:1]])
    p_drop = np.concatenate([p[:1], p[2 * steps :]])
    figs: dict[str, float] = {
        "deletion_auc": auc(fractions, p_del),
        "insertion_auc": auc(fractions, p_ins),
    }
    figs.update(_drop_figures(p_drop, TOP_FRACTION, TOP_RANDOM))
    return replace(heatmap, trust={**heatmap.trust, **figs})


# ---------------------------------------------------------------------- in plain words
#: verdict levels, best first
LEVELS = ("good", "warn", "bad", "info")
#: drop_top − drop_random at which a map counts as faithful / weakly faithful
FAITHFUL_MARGIN, WEAK_MARGIN = 0.10, 0.03
#: p below which removing pixels cannot show much (the probability has nowhere to fall)
LOW_P = 0.15
#: both drops below this: p does not move at all (a saturated model), nothing to compare
SATURATED_DROP = 0.01
#: SHAP completeness gap (relative) for "sums to the score" / "roughly"
GAP_GOOD, GAP_WARN = 0.05, 0.20


@dataclass(frozen=True)
class Verdict:
    """One sentence about how far to trust a map.

    ``level`` is "good", "warn", "bad" or "info"; ``text`` the badge; ``detail`` the tooltip.
    """

    level: str
    text: str
    detail: str


def _num(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return f


def _faithfulness(trust: Mapping[str, Any]) -> Verdict | None:
    p, top, rnd = _num(trust.get("p")), _num(trust.get("drop_top")), _num(trust.get("drop_random"))
    if not (math.isfinite(p) and math.isfinite(top) and math.isfinite(rnd)):
        return None
    pct = f"{_num(trust.get('drop_fraction', 0.2)) * 100:.0f} %"
    detail = (
        f"The most important {pct} of the image by this map was blurred away and the model "
        f"asked again: p went from {p:.2f} to {p - top:.2f}. Blurring {pct} of pixels chosen "
        f"at random changed it by {-rnd:+.2f} on average. A map that points at what the model "
        "uses makes p fall much more than random removal does."
    )
    verb = "drops" if top >= 0 else "raises"
    if top >= 0 and rnd >= 0:
        effect = f"drops p by {top:.2f} vs {rnd:.2f} at random"
    else:
        effect = (
            f"{verb} p by {abs(top):.2f} vs a {'drop' if rnd >= 0 else 'rise'} of "
            f"{abs(rnd):.2f} at random"
        )
    if p < LOW_P:
        return Verdict(
            "info",
            f"faithfulness not measurable: p is only {p:.2f}",
            detail + " Here p is already low, so there is little to fall.",
        )
    if max(abs(top), abs(rnd)) < SATURATED_DROP:
        return Verdict(
            "info",
            f"faithfulness not measurable: p stays {p:.2f} with any {pct} removed",
            detail + " Removing a fifth of the image, chosen by the map or at random, hardly "
            "moves p (a model that is already sure, or one that does not use local detail), so "
            "this test cannot tell here. The deletion and insertion curves, which go on to "
            "remove everything, still can.",
        )
    margin = top - rnd
    if margin >= FAITHFUL_MARGIN:
        return Verdict("good", f"faithful: removing its top {pct} {effect}", detail)
    if margin >= WEAK_MARGIN:
        return Verdict("warn", f"weakly faithful: removing its top {pct} {effect}", detail)
    return Verdict(
        "bad",
        f"not faithful: removing its top {pct} {effect}",
        detail + " This map does not show what the model relies on; do not read it as such.",
    )


def _lime(trust: Mapping[str, Any], settings: Mapping[str, Any]) -> Verdict | None:
    n = settings.get("samples_used", trust.get("samples"))
    if n is None:
        return None
    n = int(_num(n))
    rho, overlap = _num(trust.get("split_half_rho")), _num(trust.get("split_half_top_overlap"))
    r2 = _num(trust.get("surrogate_r2"))
    agree = (
        f" Two fits on halves of the samples agree with Spearman ρ {rho:.2f} and share "
        f"{overlap * 100:.0f} % of their top-10 % area."
        if math.isfinite(rho) and math.isfinite(overlap)
        else ""
    )
    fit = (
        f" The linear surrogate explains {r2 * 100:.0f} % of the model's variation (R²)."
        if math.isfinite(r2)
        else ""
    )
    if settings.get("converged"):
        return Verdict(
            "good",
            f"LIME converged at {n:,} samples",
            "LIME stops when fits on two halves of its samples agree on the map." + agree + fit,
        )
    if settings.get("early_stop", True):
        return Verdict(
            "warn",
            f"LIME did not converge at {n:,} samples",
            "The fits on two halves of the samples still disagreed when the sample budget ran "
            "out, so another run may draw a different map." + agree + fit,
        )
    return Verdict(
        "info",
        f"LIME ran {n:,} samples without a convergence check",
        "Early stopping is off, so nothing measured whether the map had settled." + fit,
    )


def _shap(trust: Mapping[str, Any]) -> Verdict | None:
    if "completeness_gap" not in trust:
        return None
    gap = _num(trust.get("completeness_gap"))
    detail = (
        "Expected-gradients attributions should add up to the class score minus its average "
        f"over the background images ({_num(trust.get('f_x')):.3g} − "
        f"{_num(trust.get('f_background')):.3g}); they add up to "
        f"{_num(trust.get('sum_attributions')):.3g}. A large miss means too few samples."
    )
    if not math.isfinite(gap):
        return Verdict(
            "info", "SHAP completeness not measurable (score equals the background's)", detail
        )
    text = f"{gap * 100:.1f} %"
    if gap <= GAP_GOOD:
        return Verdict("good", f"SHAP sums to the score within {text}", detail)
    if gap <= GAP_WARN:
        return Verdict("warn", f"SHAP misses the score by {text}: more samples help", detail)
    return Verdict("bad", f"SHAP misses the score by {text}: too few samples", detail)


def verdicts(
    method: str, trust: Mapping[str, Any], settings: Mapping[str, Any] | None = None
) -> list[Verdict]:
    """Plain-word verdicts on a map from its ``trust`` figures and ``settings``.

    Faithfulness (top-20 % removal vs random) for every method, convergence for LIME,
    completeness for SHAP; figures that are absent give no verdict.
    """
    settings = settings or {}
    out = [_faithfulness(trust)]
    if method == "lime":
        out.append(_lime(trust, settings))
    elif method == "shap":
        out.append(_shap(trust))
    return [v for v in out if v is not None]


def figures_text(trust: Mapping[str, Any]) -> str:
    """The compact figures line ("del 0.21 / ins 0.64 · gap 0.4 %")."""
    parts = []
    if "deletion_auc" in trust and "insertion_auc" in trust:
        parts.append(
            f"del {_num(trust['deletion_auc']):.2f} / ins {_num(trust['insertion_auc']):.2f}"
        )
    if "completeness_gap" in trust and math.isfinite(_num(trust["completeness_gap"])):
        parts.append(f"gap {_num(trust['completeness_gap']) * 100:.1f} %")
    return " · ".join(parts)


def figures_tooltip(trust: Mapping[str, Any]) -> str:
    """What the figures of :func:`figures_text` mean, in plain words."""
    lines = []
    if "deletion_auc" in trust:
        lines.append(
            f"del {_num(trust['deletion_auc']):.2f}: deletion AUC — the image's pixels are blurred "
            "away most important first and the area under the probability curve is taken. Lower "
            "is better: a faithful map makes p fall fast."
        )
    if "insertion_auc" in trust:
        lines.append(
            f"ins {_num(trust['insertion_auc']):.2f}: insertion AUC — the pixels are put back into "
            "a blurred image most important first. Higher is better: p rises fast."
        )
    if "completeness_gap" in trust:
        gap = _num(trust["completeness_gap"])
        lines.append(
            f"gap {gap * 100:.1f} %: how far the SHAP values miss the score they explain "
            "(0 % = they add up exactly)."
            if math.isfinite(gap)
            else "gap: not measurable (the score equals the background's)."
        )
    return "\n".join(lines)


def delete_top_fraction(
    classifier: Classifier,
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
