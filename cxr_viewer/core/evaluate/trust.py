"""How far to trust an explanation: faithfulness on the log-odds, SHAP completeness.

Deletion and insertion (Petsiuk, Das & Saenko, BMVC 2018, "RISE"): rank the pixels by the map,
then remove the most important first (replace them with a blurred copy of the image, see
:func:`perturbation_curve`) — a faithful map makes the class score fall fast, so a *low*
deletion AUC is good — or insert them first into the blurred copy — a faithful map makes it
rise fast, so a *high* insertion AUC is good. The AUC is the trapezoidal area under the score
vs. fraction of pixels.

The score is the explained class's **log-odds** (:mod:`cxr_viewer.core.model.scores`), not its
probability: on held-out paediatric films the demo model gives p > 0.99 or p < 0.01 for most
films, where removing a fifth of the image leaves p at 1.00 and a test on p measures nothing.
:func:`add_trust` measures the curves on the log-odds (``logit_deletion_auc``,
``logit_insertion_auc``; the p curves are kept as ``deletion_auc``, ``insertion_auc``) and the
top-20 % test: how much more removing the map's top 20 % lowers the log-odds than removing 20 %
of pixels at random, drawn :data:`TRUST_RANDOM` times — the ``margin`` with its
:data:`CONFIDENCE` interval. All perturbed images of a map go through one batched call.

Completeness (Lundberg & Lee 2017): expected-gradients attributions add up to
f(x) − E f(background);
:func:`~cxr_viewer.core.explain.shap_explainer.completeness_gap` is the relative miss.

:func:`verdicts` turns the figures into short sentences a reader can act on ("faithful:
removing its top 20 % beats random by 1.31 log-odds (+0.92 to +1.70)", "not
faithful: removing its top 20 % raises the log-odds by 0.40", "LIME did not converge at 2,000
samples: …", "SHAP sums to the score within 0.4 %"); :func:`faithfulness_label` and
:func:`most_faithful` give the word and the best map for a CSV row or a pane's title, and
:func:`figures_tooltip` says what each figure means.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Unpack

import cv2
import numpy as np

from cxr_viewer.core.errors import ExplainError
from cxr_viewer.core.explain.base import NO_SIGNAL, Callbacks, Explainer, Heatmap, explain_map
from cxr_viewer.core.io.resize import resize_map
from cxr_viewer.core.progress import CancelToken

if TYPE_CHECKING:
    from cxr_viewer.core.model.inference import Classifier
    from cxr_viewer.core.model.preprocess import InputSpec

BASELINES = ("black", "blur", "mean")


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


#: the top-fraction drop: fraction of pixels, random removals of :func:`top_fraction_drop`
TOP_FRACTION, TOP_RANDOM = 0.2, 4
#: random removals drawn by :func:`add_trust` for the faithfulness margin and its interval
TRUST_RANDOM = 8
#: two-sided confidence of the margin's interval
CONFIDENCE = 0.95


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


def t_quantile(confidence: float, dof: int) -> float:
    """The two-sided Student-t quantile for ``confidence`` with ``dof`` degrees of freedom."""
    from scipy.stats import t as student_t

    return float(student_t.ppf(0.5 + confidence / 2.0, max(int(dof), 1)))


def margin_figures(
    z0: float, z_top: float, z_random: np.ndarray, confidence: float = CONFIDENCE
) -> dict[str, float]:
    """The faithfulness margin on the log-odds, with its interval over the random draws.

    ``logit_drop_top`` = z0 − z_top (how far removing the map's top pixels lowers the class
    log-odds), ``logit_drop_random`` the mean drop over the random removals, ``margin`` their
    difference, and ``margin_lo`` / ``margin_hi`` its two-sided ``confidence`` interval: the
    Student-t interval of the random drops' mean (the map's removal is one fixed image).
    """
    drops = float(z0) - np.asarray(z_random, np.float64)
    top = float(z0) - float(z_top)
    mean = float(drops.mean()) if drops.size else float("nan")
    margin = top - mean
    if drops.size > 1:
        half = (
            t_quantile(confidence, drops.size - 1)
            * float(drops.std(ddof=1))
            / math.sqrt(drops.size)
        )
    else:
        half = float("nan")
    return {
        "logit": float(z0),
        "logit_drop_top": top,
        "logit_drop_random": mean,
        "margin": margin,
        "margin_lo": margin - half,
        "margin_hi": margin + half,
        "n_random": float(drops.size),
        "confidence": float(confidence),
    }


def add_trust(
    heatmap: Heatmap,
    classifier: Classifier,
    x: np.ndarray,
    *,
    steps: int = 16,
    seed: int = 0,
    n_random: int = TRUST_RANDOM,
    cancel: CancelToken | None = None,
) -> Heatmap:
    """A copy of ``heatmap`` with its faithfulness figures added, measured on the log-odds.

    One batch (no image twice: the two curves' end points are the image and its blurred copy,
    and the image opens the top-20 % batch): the deletion and insertion curves, the image with
    the map's top 20 % blurred and ``n_random`` images with as many random pixels blurred,
    all scored by the explained class's log-odds (:func:`cxr_viewer.core.model.scores.class_log_odds`:
    pre-activation, so it keeps moving where p is saturated at 1.00). Figures:
    ``logit_deletion_auc`` / ``logit_insertion_auc`` (the curves on the log-odds), the margin
    of :func:`margin_figures` with its interval, and the same curves and drops on p
    (``deletion_auc``, ``insertion_auc``, ``p``, ``drop_top``, ``drop_random``) for the detail
    text. ``logit_exact`` is 1 when the log-odds come from the model's pre-activation output,
    0 when only its (possibly saturated) probabilities were available.
    """
    from cxr_viewer.core.model.scores import class_log_odds, score_kind, sigmoid

    t = int(heatmap.target_class)
    x, sal = _check(classifier, x, heatmap.values)
    base = baseline_image(x, classifier.spec, "blur")
    fractions, deletion = _curve_images(x, sal, base, "deletion", steps, seed)
    _, insertion = _curve_images(x, sal, base, "insertion", steps, seed)
    drops = _drop_images(x, sal, base, TOP_FRACTION, n_random, seed)
    # deletion[0] is x and deletion[-1] the baseline; insertion[0] / [-1] the same two
    imgs = np.concatenate([deletion, insertion[1:-1], drops[1:]])
    z = class_log_odds(classifier, imgs, cancel=cancel)[:, t]
    z_del = z[: steps + 1]
    z_ins = np.concatenate([z[steps : steps + 1], z[steps + 1 : 2 * steps], z[:1]])
    z_drop = np.concatenate([z[:1], z[2 * steps :]])
    p_del, p_ins, p_drop = sigmoid(z_del), sigmoid(z_ins), sigmoid(z_drop)
    figs: dict[str, float] = {
        "deletion_auc": auc(fractions, p_del),
        "insertion_auc": auc(fractions, p_ins),
        "logit_deletion_auc": auc(fractions, z_del),
        "logit_insertion_auc": auc(fractions, z_ins),
        "logit_exact": 1.0 if score_kind(classifier) == "logit" else 0.0,
    }
    figs.update(_drop_figures(p_drop, TOP_FRACTION, n_random))
    figs.update(margin_figures(float(z_drop[0]), float(z_drop[1]), z_drop[2:]))
    return replace(heatmap, trust={**heatmap.trust, **figs})


# ---------------------------------------------------------------------- in plain words
#: verdict levels, best first
LEVELS = ("good", "warn", "bad", "info")
#: the margin (log-odds) a map must beat random removal by, with its interval above zero, to
#: be called faithful: 0.2 is an odds ratio of 1.22 beyond what random removal does
FAITHFUL_MARGIN = 0.2
#: |drops| below this (log-odds) when only probabilities were available: p is saturated
SATURATED_DROP = 1e-6
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
    """The faithfulness verdict from the log-odds margin of :func:`add_trust` (None if absent).

    "not faithful" when removing the map's top pixels does not lower the class's log-odds, or
    lowers it less than random removal does; "faithful" only when it beats random removal by
    at least :data:`FAITHFUL_MARGIN` with the interval's lower end above zero; "inconclusive"
    in between ("faithfulness inconclusive").
    """
    z, top = _num(trust.get("logit")), _num(trust.get("logit_drop_top"))
    rnd, margin = _num(trust.get("logit_drop_random")), _num(trust.get("margin"))
    lo, hi = _num(trust.get("margin_lo")), _num(trust.get("margin_hi"))
    if not all(math.isfinite(v) for v in (z, top, rnd, margin)):
        return None
    pct = f"{_num(trust.get('drop_fraction', TOP_FRACTION)) * 100:.0f} %"
    p, p_top = _num(trust.get("p")), _num(trust.get("p")) - _num(trust.get("drop_top"))
    n = int(_num(trust.get("n_random", 0)) or 0)
    conf = f"{_num(trust.get('confidence', CONFIDENCE)) * 100:.0f} %"
    interval = f"{lo:+.2f} to {hi:+.2f}" if math.isfinite(lo) and math.isfinite(hi) else "n/a"
    detail = (
        f"The most important {pct} of the image by this map was blurred away and the model "
        f"asked again. The score compared is the explained class's log-odds, log(p / (1 − p)), "
        f"which keeps moving where p is saturated: it went from {z:.2f} to {z - top:.2f} "
        f"(p {p:.4f} → {p_top:.4f}). Blurring {pct} of pixels chosen at random ({n} draws) "
        f"lowered it by {rnd:.2f} on average. Margin: {margin:+.2f} log-odds, {conf} interval "
        f"{interval} over the random draws. Faithful means a margin of at least "
        f"{FAITHFUL_MARGIN} with the interval above zero."
    )
    if _num(trust.get("logit_exact", 1.0)) == 0.0 and max(abs(top), abs(rnd)) < SATURATED_DROP:
        return Verdict(
            "info",
            f"faithfulness not measurable: p stays {p:.2f} and the model gives no logit",
            detail + " This model's output activation could not be separated from its last "
            "layer, so only its probability was available, and that is saturated.",
        )
    if top <= 0.0:
        return Verdict(
            "bad",
            f"not faithful: removing its top {pct} raises the log-odds by {-top:.2f}",
            detail + " Removing what this map points at makes the model more sure, not less: "
            "it does not show what the model relies on for this class.",
        )
    if margin <= 0.0:
        return Verdict(
            "bad",
            f"not faithful: removing its top {pct} lowers the log-odds by {top:.2f}, "
            f"random removal by {rnd:.2f}",
            detail + " Random pixels matter as much as the ones this map points at.",
        )
    effect = f"beats random by {margin:.2f} log-odds ({interval})"
    if margin >= FAITHFUL_MARGIN and math.isfinite(lo) and lo > 0.0:
        return Verdict("good", f"faithful: removing its top {pct} {effect}", detail)
    return Verdict(
        "warn",
        f"faithfulness inconclusive: its top {pct} {effect}",
        detail + " The map beats random removal by too little, or not clearly enough, to "
        "call it faithful.",
    )


def faithfulness_label(trust: Mapping[str, Any]) -> str:
    """One word for a CSV column: faithful, inconclusive, not faithful, not measurable or ""."""
    v = _faithfulness(trust)
    if v is None:
        return ""
    return {"good": "faithful", "warn": "inconclusive", "bad": "not faithful"}.get(
        v.level, "not measurable"
    )


def most_faithful(trusts: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The method judged faithful with the highest interval lower end (None if none is)."""
    best, best_lo = None, -math.inf
    for method, trust in trusts.items():
        v = _faithfulness(trust)
        lo = _num(trust.get("margin_lo"))
        if v is not None and v.level == "good" and lo > best_lo:
            best, best_lo = method, lo
    return best


#: what to do when LIME did not converge, and why
LIME_ADVICE = (
    " What to do: raise the sample cap (the Samples control, or batch --lime-samples), or use "
    "fewer, larger superpixels (n_segments): the fewer superpixels, the fewer weights the "
    "surrogate has to pin down with the same samples. If LIME explains the probability "
    "(output = probability) of a confident model, switch it back to the log-odds: a saturated "
    "p barely changes when superpixels are hidden, which leaves the fits mostly noise."
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
            f"LIME did not converge at {n:,} samples: raise Samples or use fewer superpixels",
            "The fits on two halves of the samples still disagreed when the sample budget ran "
            "out, so another run may draw a different map." + agree + fit + LIME_ADVICE,
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
    """The compact figures line ("log-odds del 1.21 / ins 4.64 · margin +1.30 · gap 0.4 %")."""
    parts = []
    if "logit_deletion_auc" in trust and "logit_insertion_auc" in trust:
        parts.append(
            f"log-odds del {_num(trust['logit_deletion_auc']):.2f} / "
            f"ins {_num(trust['logit_insertion_auc']):.2f}"
        )
    elif "deletion_auc" in trust and "insertion_auc" in trust:
        parts.append(
            f"del {_num(trust['deletion_auc']):.2f} / ins {_num(trust['insertion_auc']):.2f}"
        )
    if "margin" in trust and math.isfinite(_num(trust["margin"])):
        parts.append(f"margin {_num(trust['margin']):+.2f}")
    if "completeness_gap" in trust and math.isfinite(_num(trust["completeness_gap"])):
        parts.append(f"gap {_num(trust['completeness_gap']) * 100:.1f} %")
    return " · ".join(parts)


def figures_tooltip(trust: Mapping[str, Any]) -> str:
    """What the figures of :func:`figures_text` mean, in plain words."""
    lines = []
    if "logit_deletion_auc" in trust:
        lines.append(
            f"log-odds del {_num(trust['logit_deletion_auc']):.2f}: deletion AUC on the class's "
            "log-odds — the image's pixels are blurred away most important first and the area "
            "under the log-odds curve is taken. Lower is better: a faithful map makes the score "
            f"fall fast (on p: {_num(trust.get('deletion_auc')):.2f})."
        )
    elif "deletion_auc" in trust:
        lines.append(
            f"del {_num(trust['deletion_auc']):.2f}: deletion AUC — the image's pixels are blurred "
            "away most important first and the area under the probability curve is taken. Lower "
            "is better: a faithful map makes p fall fast."
        )
    if "logit_insertion_auc" in trust:
        lines.append(
            f"ins {_num(trust['logit_insertion_auc']):.2f}: insertion AUC on the log-odds — the "
            "pixels are put back into a blurred image most important first. Higher is better: "
            f"the score rises fast (on p: {_num(trust.get('insertion_auc')):.2f})."
        )
    elif "insertion_auc" in trust:
        lines.append(
            f"ins {_num(trust['insertion_auc']):.2f}: insertion AUC — the pixels are put back into "
            "a blurred image most important first. Higher is better: p rises fast."
        )
    if "margin" in trust:
        lines.append(
            f"margin {_num(trust['margin']):+.2f}: how much more blurring the map's top 20 % "
            "lowers the log-odds than blurring 20 % of pixels at random "
            f"({_num(trust.get('margin_lo')):+.2f} to {_num(trust.get('margin_hi')):+.2f}, "
            f"{_num(trust.get('confidence', CONFIDENCE)) * 100:.0f} % interval)."
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


def explain_with_trust(
    explainer: Explainer,
    x: np.ndarray,
    target_class: int,
    *,
    trust: bool = True,
    seed: int = 0,
    **callbacks: Unpack[Callbacks],
) -> Heatmap:
    """Explain model input ``x`` and add the trust figures: the one path of the viewer and batch.

    The map comes from :func:`~cxr_viewer.core.explain.base.explain_map` (model input size, a
    map with no signal marked and given no figures); the trust figures (deletion / insertion
    AUC, top-20 % drop: :func:`add_trust`, seeded by ``seed``) are computed on it at the model's
    input size, as the model sees it; ``trust=False`` skips them.
    """
    hm = explain_map(explainer, x, target_class, **callbacks)
    if trust and hm.status != NO_SIGNAL:
        hm = add_trust(hm, explainer.classifier, x, seed=seed, cancel=callbacks.get("cancel"))
    return hm
