"""Explainer speed and stability on one model and one image, against baselines from the same run.

    python benchmarks/bench_explainers.py [--model BUNDLE | --resnet50v2] [--image PATH]
                                          [--seeds 3] [--repeats 5] [--no-seed-lime]
                                          [--no-shap] [--json OUT.json]

Model: ``--model``, else the demo bundle (resources/demo_bundle), else ``--resnet50v2``: a
ResNet50V2 built with ``weights=None`` (224×224×3, random weights: right for timing, not for
ranking stability, which needs a trained model). Image: ``--image``, else the first image of the
shared COVID subset, else the first real pneumonia film in resources/samples. Explained class: the predicted
one. Printed:

* Grad-CAM (default layer) time vs one plain compiled prediction (median of ``--repeats``);
* LIME as the seeds ran it — ``LimeImageExplainer(kernel_width=1.75,
  feature_selection="lasso_path").explain_instance(..., num_samples=1000, batch_size=10)``
  with lime's default quickshift and ``model.predict`` as classifier — against ours, each over
  ``--seeds`` seeds: seconds, samples, time to the first map, and ranking stability across
  seeds (mean pairwise Spearman ρ of the pixel maps, and the overlap of their top-10 % pixels;
  the lowest pair is printed too, as with few seeds one near-tie that flips between two
  superpixels moves the mean by a lot). Ours runs twice: (a) with the seeds'
  superpixels (``segmentation="quickshift"`` with lime's ``explain_instance`` parameters and the
  same ``random_seed``) — the like-for-like comparison, since pixel-map stability depends on
  how many and how large the superpixels are, so only the sampler, stopping rule and model
  calls differ; (b) with the viewer's defaults (SLIC, finer superpixels) — what the viewer
  shows. The speed ratio is seeds' median time / ours.
* SHAP seconds and completeness gap per offered layer (viewer defaults).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TQDM_DISABLE", "1")


def _image_path(arg: str | None) -> Path:
    from cxr_viewer.core.io import list_study_files
    from cxr_viewer.core.paths import shared_data_dir

    if arg:
        return Path(arg)
    shared = shared_data_dir()
    if shared and (shared / "covid-chestxray-subset").is_dir():
        files = list_study_files(shared / "covid-chestxray-subset")
        if files:
            return files[0]
    return sorted((ROOT / "resources" / "samples").glob("real-*_pneumonia_*"))[0]


def _resnet_bundle(tmp: Path):
    import keras

    from cxr_viewer.core.bundle import write_bundle
    from cxr_viewer.core.explain.layers import default_gradcam_layer, shap_layers
    from cxr_viewer.core.preprocess import InputSpec

    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50V2(weights=None, input_shape=(224, 224, 3), classes=2)
    bg = np.random.default_rng(0).uniform(-1, 1, (8, 224, 224, 3)).astype(np.float32)
    return write_bundle(
        tmp / "resnet50v2",
        model,
        name="ResNet50V2 (weights=None)",
        class_names=["negative", "positive"],
        input_spec=InputSpec(224, 224, 3, "symmetric"),
        gradcam_layer=default_gradcam_layer(model),
        shap_layers=shap_layers(model),
        background=bg,
    ).root


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _pairwise(maps: list[np.ndarray]) -> tuple[list[float], list[float]]:
    """Pairwise Spearman ρ and top-10 % overlaps of maps (at 56×56, area-averaged)."""
    import cv2
    from scipy.stats import spearmanr

    small = [cv2.resize(m.astype(np.float32), (56, 56), interpolation=cv2.INTER_AREA) for m in maps]
    rhos, overlaps = [], []
    for a, b in itertools.combinations(small, 2):
        rhos.append(float(spearmanr(a.ravel(), b.ravel()).statistic))
        k = a.size // 10
        ta = set(np.argsort(-a.ravel(), kind="stable")[:k])
        tb = set(np.argsort(-b.ravel(), kind="stable")[:k])
        overlaps.append(len(ta & tb) / k)
    return rhos, overlaps


def _stability(maps: list[np.ndarray]) -> tuple[float, float]:
    """Mean pairwise Spearman ρ and top-10 % overlap of maps (at 56×56, area-averaged)."""
    rhos, overlaps = _pairwise(maps)
    return float(np.mean(rhos)), float(np.mean(overlaps))


def _stability_figures(maps: list[np.ndarray]) -> dict:
    rhos, overlaps = _pairwise(maps)
    return {
        "stability_rho": float(np.mean(rhos)), "stability_top10": float(np.mean(overlaps)),
        "stability_rho_min": float(np.min(rhos)), "stability_top10_min": float(np.min(overlaps)),
        "pairs": len(rhos),
    }  # fmt: skip


def _stability_text(f: dict) -> str:
    return (
        f"stability rho={f['stability_rho']:.3f} (min {f['stability_rho_min']:.3f}), "
        f"top-10% overlap={f['stability_top10']:.3f} (min {f['stability_top10_min']:.3f}) "
        f"over {f['pairs']} pairs"
    )


#: lime's ``explain_instance`` segmentation, as the seeds ran it (``random_seed`` = the seed)
SEEDS_SEGMENTATION = {
    "segmentation": "quickshift",
    "quickshift_kernel_size": 4,
    "quickshift_max_dist": 200,
    "quickshift_ratio": 0.2,
}


def _ours_lime(clf, x: np.ndarray, target: int, seeds: int, settings: dict) -> dict:
    """Our LIME over ``seeds`` seeds: seconds, time to the first map, samples, stability."""
    from cxr_viewer.core.explain.registry import create_explainer

    maps, seconds, first_s, samples, converged = [], [], [], [], []
    for seed in range(seeds):
        start = time.perf_counter()
        first: list[float] = []

        def partial(_h, first=first, start=start) -> None:
            if not first:
                first.append(time.perf_counter() - start)

        hm = create_explainer("lime", clf, {**settings, "seed": seed}).explain(
            x, target, partial=partial
        )
        seconds.append(time.perf_counter() - start)
        first_s.append(first[0] if first else seconds[-1])
        samples.append(hm.settings["samples_used"])
        converged.append(bool(hm.settings["converged"]))
        maps.append(hm.values)
    return {
        "settings": settings, "seconds": seconds, "first_map_s": first_s, "samples": samples,
        "converged": converged, "n_superpixels": hm.settings["n_superpixels"],
        **_stability_figures(maps),
    }  # fmt: skip


def _ours_text(name: str, f: dict) -> str:
    return (
        f"LIME ours, {name}: {statistics.median(f['seconds']):.1f} s median "
        f"(max {max(f['seconds']):.1f}; first map {statistics.median(f['first_map_s']):.1f} s, "
        f"max {max(f['first_map_s']):.1f}; samples {f['samples']}, "
        f"{f['n_superpixels']} superpixels); {_stability_text(f)}"
    )


def _seeds_lime(clf, x: np.ndarray, target: int, seed: int) -> tuple[np.ndarray, float]:
    """LIME exactly as covid-cxr ran it (lime defaults: quickshift, batch 10, 1000 samples)."""
    from lime.lime_image import LimeImageExplainer

    model = clf.model
    channels = clf.spec.channels

    def predict(batch: np.ndarray) -> np.ndarray:
        b = batch[..., :1] if channels == 1 else batch
        return model.predict(b, verbose=0)

    image = np.repeat(x, 3, axis=2) if channels == 1 else x
    start = time.perf_counter()
    exp = LimeImageExplainer(
        kernel_width=1.75, feature_selection="lasso_path", random_state=seed
    ).explain_instance(
        image.astype(np.float64),
        predict,
        labels=(target,),
        top_labels=None,
        hide_color=None,
        num_features=1000,
        num_samples=1000,
        batch_size=10,
        random_seed=seed,
    )
    seconds = time.perf_counter() - start
    weights = dict(exp.local_exp[target])
    values = np.vectorize(lambda s: weights.get(s, 0.0))(exp.segments)
    return values.astype(np.float32), seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model bundle (default: resources/demo_bundle)")
    ap.add_argument("--resnet50v2", action="store_true", help="ResNet50V2, weights=None")
    ap.add_argument("--image", help="image file (PNG, JPEG, DICOM)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-seed-lime", action="store_true", help="skip the seeds' LIME (slow)")
    ap.add_argument("--no-shap", action="store_true", help="skip the per-layer SHAP timings")
    ap.add_argument("--json", help="also write the figures as JSON here")
    args = ap.parse_args(argv)

    from cxr_viewer.core.bundle import open_bundle
    from cxr_viewer.core.explain.registry import create_explainer
    from cxr_viewer.core.inference import Classifier
    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.paths import demo_bundle_dir
    from cxr_viewer.core.preprocess import study_to_input

    tmp = tempfile.TemporaryDirectory(prefix="bench-explainers-")
    if args.resnet50v2:
        root = _resnet_bundle(Path(tmp.name))
    else:
        root = Path(args.model) if args.model else demo_bundle_dir()
    clf = Classifier(open_bundle(root))
    clf.warm_up()
    image_path = _image_path(args.image)
    x = study_to_input(load_study(image_path), clf.spec)
    probs = clf.predict_inputs(x[None])[0]
    target = int(np.argmax(probs))
    out: dict = {
        "model": clf.bundle.name,
        "image": str(image_path),
        "device": clf.device,
        "target_class": clf.class_names[target],
        "probability": float(probs[target]),
    }
    print(
        f"model: {out['model']} ({clf.device}); image: {image_path.name}; "
        f"class {out['target_class']} p={out['probability']:.3f}"
    )

    # --- Grad-CAM vs one prediction ---------------------------------------------------------
    gc = create_explainer("gradcam", clf)
    gc.warm_up()
    t_pred = _median_time(lambda: clf.predict_inputs(x[None]), args.repeats)
    t_gc = _median_time(lambda: gc.explain(x, target), args.repeats)
    out["predict_s"], out["gradcam_s"] = t_pred, t_gc
    print(
        f"prediction {t_pred * 1000:.0f} ms; Grad-CAM at {gc.default_layer()} "
        f"{t_gc * 1000:.0f} ms = {t_gc / t_pred:.2f}x a prediction"
    )

    # --- LIME: ours vs the seeds' ----------------------------------------------------------
    runs = {
        "lime_ours_seeds_segmentation": ("seeds' quickshift superpixels", SEEDS_SEGMENTATION),
        "lime_ours": ("viewer defaults (SLIC)", {}),
    }
    for key, (name, settings) in runs.items():
        out[key] = _ours_lime(clf, x, target, args.seeds, settings)
        print(_ours_text(name, out[key]))
    if not args.no_seed_lime:
        theirs, theirs_s = [], []
        for seed in range(args.seeds):
            values, seconds = _seeds_lime(clf, x, target, seed)
            theirs.append(values)
            theirs_s.append(seconds)
        out["lime_seeds"] = {"seconds": theirs_s, **_stability_figures(theirs)}
        t_seeds = statistics.median(theirs_s)
        print(
            f"LIME seeds (quickshift, batch 10, 1000 samples): {t_seeds:.1f} s median; "
            f"{_stability_text(out['lime_seeds'])}"
        )
        for key, (name, _) in runs.items():
            ratio = t_seeds / statistics.median(out[key]["seconds"])
            out[key]["speed_ratio"] = ratio
            print(f"speed ratio seeds/ours ({name}) = {ratio:.1f}x")
        out["lime_seeds"]["speed_ratio"] = out["lime_ours"]["speed_ratio"]

    # --- SHAP per layer ---------------------------------------------------------------------
    out["shap"] = {}
    for layer in [] if args.no_shap else create_explainer("shap", clf).layers():
        explainer = create_explainer("shap", clf, {"layer": layer})
        start = time.perf_counter()
        hm = explainer.explain(x, target)
        seconds = time.perf_counter() - start
        out["shap"][layer] = {"seconds": seconds, **hm.trust}
        print(
            f"SHAP {layer}: {seconds:.1f} s (first call, incl. tracing), completeness gap "
            f"{hm.trust['completeness_gap']:.3%} (f(x)-E f(bg) = "
            f"{hm.trust['f_x'] - hm.trust['f_background']:.3f})"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2), encoding="utf-8")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
