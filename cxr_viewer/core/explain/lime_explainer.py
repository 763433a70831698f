"""LIME on superpixels with progressive results and a convergence stopping rule.

LIME (Ribeiro et al., KDD 2016) switches superpixels off at random, asks the model about each
perturbed image, and fits a locally weighted linear model whose coefficients say how much each
superpixel pushes toward the target class. This uses the ``lime`` package itself:
``LimeImageExplainer.data_labels`` draws the perturbations and queries the model, and
``LimeBase.explain_instance_with_data`` fits the surrogate — exactly what
``explain_instance`` does, but in chunks of samples, so that:

* after every chunk the surrogate is refitted on all samples so far and a partial map is
  reported (``partial``), so the user sees a map within seconds;
* the run stops early once the superpixel ranking has converged: the surrogate is also fitted
  on two disjoint halves of the samples, and when those two fits agree (Spearman rank
  correlation and top-k overlap of the superpixel weights above thresholds, ``patience`` times
  in a row) an independent run would very likely agree with the full fit too;
* model calls are batched at the classifier's batch size through its compiled function;
* cancelling raises :class:`Cancelled` from inside ``classifier_fn`` (lime has no hook).

Defaults follow covid-cxr (kernel width 1.75, 1000 features, at most 1000 samples, lasso-path
feature selection); the segmentation is SLIC or quickshift (the seeds' choice).
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

import numpy as np

from cxr_viewer.core.errors import ExplainError
from cxr_viewer.core.progress import CancelToken, ProgressFn, no_progress

from ._common import check_input, check_target, to_unit
from .base import Explainer, Heatmap, PartialFn

SEGMENTATIONS = ("slic", "quickshift")
FEATURE_SELECTIONS = ("lasso_path", "highest_weights", "forward_selection", "none", "auto")


def _import_lime():
    """Import lime with its tqdm progress bar silenced (it writes to stderr)."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    from functools import partial

    import tqdm
    from lime import lime_image
    from lime.wrappers.scikit_image import SegmentationAlgorithm

    # TQDM_DISABLE is read when tqdm is imported; if it already was, disable lime's bar here
    if not getattr(lime_image, "_cxr_quiet", False):
        lime_image.tqdm = partial(tqdm.tqdm, disable=True)
        lime_image._cxr_quiet = True
    return lime_image, SegmentationAlgorithm


def segment(image01_rgb: np.ndarray, settings: dict[str, Any], seed: int) -> np.ndarray:
    """Superpixels (labels 0..n-1) of a [0, 1] RGB image with lime's skimage wrapper."""
    _, SegmentationAlgorithm = _import_lime()
    method = settings.get("segmentation", "slic")
    if method == "quickshift":
        algo = SegmentationAlgorithm(
            "quickshift",
            kernel_size=settings.get("quickshift_kernel_size", 4),
            max_dist=settings.get("quickshift_max_dist", 200),
            ratio=settings.get("quickshift_ratio", 0.2),
            random_seed=seed,
        )
    elif method == "slic":
        algo = SegmentationAlgorithm(
            "slic",
            n_segments=int(settings.get("n_segments", 64)),
            compactness=float(settings.get("compactness", 10.0)),
            sigma=float(settings.get("slic_sigma", 1.0)),
            start_label=0,
        )
    else:
        raise ExplainError(
            f"Unknown segmentation '{method}'", f"LIME offers {', '.join(SEGMENTATIONS)}."
        )
    seg = np.asarray(algo(image01_rgb.astype(np.float64)))
    # data_labels expects labels 0..n-1
    _, inverse = np.unique(seg, return_inverse=True)
    return inverse.reshape(seg.shape).astype(np.int64)


def hidden_image(image: np.ndarray, segments: np.ndarray, hide_color, spec) -> np.ndarray:
    """What a switched-off superpixel shows: a grey level ([0, 1] display units) or its mean."""
    if hide_color is None or hide_color == "mean":  # lime's hide_color=None
        n = int(segments.max()) + 1
        flat = segments.ravel()
        counts = np.bincount(flat, minlength=n).astype(np.float64)
        out = np.empty_like(image)
        for c in range(image.shape[2]):
            means = np.bincount(flat, weights=image[..., c].ravel(), minlength=n) / counts
            out[..., c] = means[segments]
        return out
    lo, hi = spec.value_range
    return np.full_like(image, lo + float(hide_color) * (hi - lo))


def rank_agreement(a: np.ndarray, b: np.ndarray, k: int) -> tuple[float, float]:
    """Spearman rank correlation of two weight vectors and the overlap of their top ``k``."""
    from scipy.stats import spearmanr

    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        rho = 1.0 if np.allclose(a, b) else 0.0
    else:
        rho = float(spearmanr(a, b).statistic)
    k = max(1, min(k, a.size))
    top_a = set(np.argsort(-a, kind="stable")[:k].tolist())
    top_b = set(np.argsort(-b, kind="stable")[:k].tolist())
    return rho, len(top_a & top_b) / k


class LimeExplainer(Explainer):
    """LIME image explanations (Ribeiro et al. 2016), signed weight per superpixel.

    Settings
    --------
    num_samples: maximum perturbed samples (covid-cxr: 1000).
    kernel_width, num_features, feature_selection, distance_metric: as in ``lime``.
    hide_color: grey level in display units [0, 1] for switched-off superpixels, or "mean"
        (lime's default: each superpixel's mean).
    segmentation: "slic" (n_segments, compactness, slic_sigma) or "quickshift"
        (quickshift_kernel_size, quickshift_max_dist, quickshift_ratio; the seeds' choice).
    chunk_size: samples per progressive step (the first map comes after one chunk).
    early_stop, min_samples, stop_rho, stop_top_k, stop_overlap, patience: the stopping rule —
        stop when the fits on the two halves of the samples agree (Spearman ρ ≥ stop_rho and
        top-k overlap ≥ stop_overlap), ``patience`` times in a row, after ``min_samples``.
    batch_size: model batch (None: the classifier's, sized for the device).
    seed: random seed of the perturbations and of quickshift.
    """

    name: ClassVar[str] = "lime"
    label: ClassVar[str] = "LIME"
    needs_gradients: ClassVar[bool] = False
    signed: ClassVar[bool] = True
    uses_layer: ClassVar[bool] = False
    default_settings: ClassVar[dict[str, Any]] = {
        "num_samples": 1000,
        "kernel_width": 1.75,
        "num_features": 1000,
        "feature_selection": "lasso_path",
        "distance_metric": "cosine",
        "hide_color": "mean",
        "segmentation": "slic",
        "n_segments": 64,
        "compactness": 10.0,
        "slic_sigma": 1.0,
        "quickshift_kernel_size": 4,
        "quickshift_max_dist": 200,
        "quickshift_ratio": 0.2,
        "chunk_size": 48,
        "early_stop": True,
        "min_samples": 144,
        "stop_rho": 0.95,
        "stop_top_k": 5,
        "stop_overlap": 0.8,
        "patience": 2,
        "batch_size": None,
        "seed": 0,
    }

    def _check_settings(self) -> dict[str, Any]:
        s = dict(self.settings)
        if s["feature_selection"] not in FEATURE_SELECTIONS:
            raise ExplainError(
                f"Unknown LIME feature selection '{s['feature_selection']}'",
                f"lime offers {', '.join(FEATURE_SELECTIONS)}.",
            )
        if s["segmentation"] not in SEGMENTATIONS:
            raise ExplainError(
                f"Unknown segmentation '{s['segmentation']}'",
                f"LIME offers {', '.join(SEGMENTATIONS)}.",
            )
        if int(s["num_samples"]) < 2 or int(s["chunk_size"]) < 2:
            raise ExplainError(
                "LIME needs at least 2 samples",
                f"num_samples={s['num_samples']}, chunk_size={s['chunk_size']}.",
            )
        if float(s["kernel_width"]) <= 0:
            raise ExplainError("LIME's kernel width must be positive", f"got {s['kernel_width']}.")
        return s

    def explain(
        self,
        x: np.ndarray,
        target_class: int,
        *,
        progress: ProgressFn = no_progress,
        cancel: CancelToken | None = None,
        partial: PartialFn | None = None,
    ) -> Heatmap:
        start = time.perf_counter()
        s = self._check_settings()
        x = check_input(self.classifier, x)
        t = check_target(self.classifier, target_class)
        spec = self.classifier.spec
        seed = int(s["seed"])
        lime_image, _ = _import_lime()
        import sklearn.metrics

        if cancel is not None:
            cancel.raise_if_cancelled()
        progress(0.0, "LIME: segmenting")
        image = np.repeat(x, 3, axis=2) if x.shape[2] == 1 else x
        segments = segment(np.repeat(to_unit(x, spec), 3, axis=2)[..., :3], s, seed)
        n_seg = int(segments.max()) + 1
        fudged = hidden_image(image, segments, s["hide_color"], spec)

        total = int(s["num_samples"])
        done = [0]
        channels = spec.channels
        batch_size = int(s["batch_size"] or self.classifier.batch_size)

        def classifier_fn(batch: np.ndarray) -> np.ndarray:
            if cancel is not None:
                cancel.raise_if_cancelled()  # lime has no hook: raising here stops it
            b = np.asarray(batch, dtype=np.float32)
            if channels == 1:
                b = b[..., :1]
            probs = self.classifier.predict_inputs(b)
            done[0] += len(b)
            progress(min(0.99, done[0] / total), f"LIME: {done[0]} of ≤{total} samples")
            return probs

        explainer = lime_image.LimeImageExplainer(
            kernel_width=float(s["kernel_width"]),
            feature_selection=s["feature_selection"],
            random_state=seed,
        )
        data_parts: list[np.ndarray] = []
        label_parts: list[np.ndarray] = []
        n_have = 0
        w: np.ndarray | None = None
        streak = 0
        converged = False
        agreement = (float("nan"), float("nan"))
        fit: tuple = ()
        chunk = int(s["chunk_size"])

        def surrogate(d: np.ndarray, lab: np.ndarray) -> tuple[np.ndarray, tuple]:
            """lime's weighted linear fit on rows ``d`` (row 0: the unperturbed image)."""
            distances = sklearn.metrics.pairwise_distances(
                d, d[0].reshape(1, -1), metric=s["distance_metric"]
            ).ravel()
            res = explainer.base.explain_instance_with_data(
                d,
                lab,
                distances,
                t,
                int(s["num_features"]),
                model_regressor=None,
                feature_selection=s["feature_selection"],
            )
            weights = np.zeros(n_seg, np.float64)
            for f, v in res[1]:
                weights[int(f)] = v
            return weights, res

        while n_have < total:
            want = min(chunk, total - n_have)
            first = n_have == 0
            # every data_labels call makes its row 0 the unperturbed image; keep it once only
            data, labels = explainer.data_labels(
                image, fudged, segments, classifier_fn, want + (0 if first else 1), batch_size
            )
            if not first:
                data, labels = data[1:], labels[1:]
            data_parts.append(data)
            label_parts.append(labels)
            n_have += len(data)
            all_data = np.concatenate(data_parts)
            all_labels = np.concatenate(label_parts)
            w, fit = surrogate(all_data, all_labels)
            if s["early_stop"] and n_have >= int(s["min_samples"]):
                # split-half check: two fits on disjoint halves of the samples estimate how
                # much an independent run (another seed) would agree at half the samples
                even = np.arange(0, n_have, 2)
                odd = np.concatenate([[0], np.arange(1, n_have, 2)])
                wa, _ = surrogate(all_data[even], all_labels[even])
                wb, _ = surrogate(all_data[odd], all_labels[odd])
                agreement = rank_agreement(wa, wb, int(s["stop_top_k"]))
                ok = agreement[0] >= float(s["stop_rho"]) and agreement[1] >= float(
                    s["stop_overlap"]
                )
                streak = streak + 1 if ok else 0
                if streak >= int(s["patience"]):
                    converged = True
                    break
            if partial is not None and n_have < total:
                partial(self._heatmap(w, segments, t, s, seed, n_have, fit, start, partial=True))
        progress(1.0, f"LIME done ({n_have} samples)")
        assert w is not None
        hm = self._heatmap(w, segments, t, s, seed, n_have, fit, start, partial=False)
        hm.settings["converged"] = converged
        hm.trust["split_half_rho"] = float(agreement[0])
        hm.trust["split_half_top_overlap"] = float(agreement[1])
        self.last_segments = segments
        return hm

    def _heatmap(self, w, segments, t, s, seed, n, fit, start, *, partial: bool) -> Heatmap:
        values = w[segments].astype(np.float32)
        return Heatmap(
            values=values,
            method="lime",
            target_class=t,
            class_name=self.classifier.class_names[t],
            signed=True,
            layer=None,
            settings={**s, "samples_used": n, "n_superpixels": int(w.size)},
            seed=seed,
            runtime_s=time.perf_counter() - start,
            trust={"surrogate_r2": float(fit[2]), "samples": float(n)},
            partial=partial,
        )
