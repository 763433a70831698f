"""Explainer speed and stability on three models, against baselines from the same run.

    python benchmarks/bench_explainers.py [--models demo,cnn,resnet50v2] [--model BUNDLE]
                                          [--image PATH] [--seeds 5] [--repeats 5]
                                          [--like-for-like] [--fixed-samples N,N,...]
                                          [--no-seed-lime] [--shap] [--quick] [--json OUT.json]

Models (``--models``, default all three): ``demo`` — the demo bundle (resources/demo_bundle,
or ``--model BUNDLE``); ``cnn`` — a small public-style chest X-ray CNN built here (128×128×1
input, a flat stack of three conv + max-pool blocks, dense layer, one sigmoid unit) and trained
for a few epochs on 128-px phantoms (cxr_viewer.testdata.phantoms), as users bring them;
``resnet50v2`` — keras.applications.ResNet50V2 with ``weights=None`` (224×224×3, random
weights: there are no local ImageNet weights and no internet at run time; right for timing,
and its stability figures describe LIME on a random network, not a trained one). Image:
``--image``, else the first image of the shared COVID subset, else the first real pneumonia
film in resources/samples. Explained class: the predicted one. Printed per model:

* the forward path the classifier chose (its ``forward_path`` attribute when the faster
  forward path is present, else "tf.function") and its batch size, with the images/s each
  path measured at load (why it was chosen; nothing when the choice was remembered);
* Grad-CAM (default layer) time vs one plain compiled prediction (median of ``--repeats``);
* LIME as the seeds ran it — ``LimeImageExplainer(kernel_width=1.75,
  feature_selection="lasso_path").explain_instance(..., num_samples=1000, batch_size=10)``
  with lime's default quickshift and ``model.predict`` as classifier — against ours with the
  viewer's defaults, each over ``--seeds`` seeds (seed s for both): median seconds, samples,
  time to the first map, and ranking stability across seeds (mean pairwise Spearman ρ of the
  pixel maps, and the overlap of their top-10 % pixels, at 56×56 area-averaged; the lowest
  pair is printed too). ``--like-for-like`` also runs ours with the seeds' superpixels
  (quickshift with lime's ``explain_instance`` parameters and the same ``random_seed``), where
  only the sampler, stopping rule and model calls differ. The speed ratio is seeds' median
  time / ours, and a verdict line says whether ours is ≥ 5× faster with equal or better
  stability on both measures.
* ``--fixed-samples 200,300,500``: ours again at each of these sample counts with the stopping
  rule off (viewer defaults, and the seeds' superpixels with ``--like-for-like``), over the
  same seeds: the stability each count buys and its time, and the fewest samples at which
  ours is as stable as the seeds' usage on both measures. For a model whose LIME time is its
  model calls, that count bounds the speed-up at equal stability: about 1000 / count times
  the forward path's own gain.
* ``--shap``: SHAP seconds and completeness gap per offered layer (viewer defaults).

``--quick`` (a smoke test): 2 seeds, the demo and the CNN (at 64 px) only unless ``--models``
says otherwise, 1 repeat.
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

    from cxr_viewer.core.explain.layers import default_gradcam_layer, shap_layers
    from cxr_viewer.core.model.bundle import write_bundle
    from cxr_viewer.core.model.preprocess import InputSpec

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
        p = model.predict(b, verbose=0)
        # a single sigmoid unit: lime explains a column per class, so give it [1 - p, p]
        return np.hstack([1.0 - p, p]) if p.shape[1] == 1 else p

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


def _cnn_bundle(tmp: Path, size: int):
    """A public-style CNN (flat conv stack, sigmoid head), trained briefly on phantoms."""
    import keras
    from keras import layers

    from cxr_viewer.core.explain.layers import default_gradcam_layer, shap_layers
    from cxr_viewer.core.model.bundle import write_bundle
    from cxr_viewer.core.model.heads import Head
    from cxr_viewer.core.model.preprocess import InputSpec
    from cxr_viewer.testdata.phantoms import make_phantoms

    keras.utils.set_random_seed(0)
    inp = keras.Input((size, size, 1))
    h = inp
    for i, filters in enumerate((16, 32, 64)):
        h = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i + 1}")(h)
        h = layers.MaxPooling2D(name=f"pool{i + 1}")(h)
    h = layers.Dense(64, activation="relu", name="fc")(layers.Flatten()(h))
    out = layers.Dense(1, activation="sigmoid", name="pneumonia")(layers.Dropout(0.3)(h))
    model = keras.Model(inp, out, name="public_style_cnn")
    train = make_phantoms(320, size, seed=11)
    model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
    model.fit(train.images[..., None], train.labels, epochs=4, batch_size=32, verbose=0)
    bg = make_phantoms(8, size, seed=12).images[..., None].astype(np.float32)
    return write_bundle(
        tmp / "public_cnn",
        model,
        name=f"public-style CNN ({size} px, flat, sigmoid; 4 epochs on phantoms)",
        class_names=["NORMAL", "PNEUMONIA"],
        input_spec=InputSpec(size, size, 1, "unit"),
        gradcam_layer=default_gradcam_layer(model),
        shap_layers=shap_layers(model),
        background=bg,
        head=Head("binary", 1, "sigmoid"),
    ).root


def _forward_path(clf) -> str:
    """The forward path the classifier chose (the faster-forward attribute when present)."""
    for attr in ("forward_path", "forward_backend", "backend"):
        value = getattr(clf, attr, None)
        if value is not None:
            return str(getattr(value, "name", value))
    return "tf.function"


def _verdict(ours: dict, seeds: dict, target: float = 5.0) -> str:
    ratio = ours["speed_ratio"]
    rho_ok = ours["stability_rho"] >= seeds["stability_rho"]
    top_ok = ours["stability_top10"] >= seeds["stability_top10"]
    ok = ratio >= target and rho_ok and top_ok
    return (
        f"{'MET' if ok else 'NOT MET'}: {ratio:.1f}x (target {target:.0f}x), "
        f"rho {ours['stability_rho']:.3f} vs {seeds['stability_rho']:.3f} "
        f"({'>=' if rho_ok else '<'}), top-10% {ours['stability_top10']:.3f} vs "
        f"{seeds['stability_top10']:.3f} ({'>=' if top_ok else '<'})"
    )


def _bench_model(name: str, root: Path, args, image_path: Path) -> dict:
    from cxr_viewer.core.explain.registry import create_explainer
    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.model.bundle import open_bundle
    from cxr_viewer.core.model.inference import Classifier
    from cxr_viewer.core.model.preprocess import study_to_input

    clf = Classifier(open_bundle(root))
    clf.warm_up()
    x = study_to_input(load_study(image_path), clf.spec)
    probs = clf.predict_inputs(x[None])[0]
    target = int(np.argmax(probs))
    out: dict = {
        "model": clf.bundle.name,
        "input": list(x.shape),
        "device": clf.device,
        "forward_path": _forward_path(clf),
        "batch_size": clf.batch_size,
        "target_class": clf.class_names[target],
        "probability": float(probs[target]),
    }
    choice = getattr(clf, "forward_choice", None)
    if choice is not None and choice.throughput:
        out["forward_throughput"] = choice.as_dict()["throughput"]
    print(
        f"\n=== {name}: {out['model']} ({clf.device}, input {x.shape[0]}x{x.shape[1]}x"
        f"{x.shape[2]})\nforward path: {out['forward_path']}"
        f"{'' if 'batch' in out['forward_path'] else f', batch {clf.batch_size}'}; "
        f"class {out['target_class']} p={out['probability']:.3f}",
        flush=True,
    )
    if "forward_throughput" in out:
        # why this path: images/s per path and batch as measured at load (a path other than
        # tf.function must be 1.1x faster to be chosen)
        rates = "; ".join(
            f"{path} " + ", ".join(f"b{b} {r:.0f}" for b, r in per.items())
            for path, per in out["forward_throughput"].items()
        )
        print(f"forward paths measured at load (images/s): {rates}", flush=True)

    # --- Grad-CAM vs one prediction ---------------------------------------------------------
    gc = create_explainer("gradcam", clf)
    gc.warm_up()
    t_pred = _median_time(lambda: clf.predict_inputs(x[None]), args.repeats)
    t_gc = _median_time(lambda: gc.explain(x, target), args.repeats)
    out["predict_s"], out["gradcam_s"] = t_pred, t_gc
    print(
        f"prediction {t_pred * 1000:.0f} ms; Grad-CAM at {gc.default_layer()} "
        f"{t_gc * 1000:.0f} ms = {t_gc / t_pred:.2f}x a prediction",
        flush=True,
    )

    # --- LIME: ours vs the seeds' ----------------------------------------------------------
    runs = {"lime_ours": ("viewer defaults (SLIC)", {})}
    if args.like_for_like:
        runs["lime_ours_seeds_segmentation"] = ("seeds' quickshift superpixels", SEEDS_SEGMENTATION)
    for key, (label, settings) in runs.items():
        out[key] = _ours_lime(clf, x, target, args.seeds, settings)
        print(_ours_text(label, out[key]), flush=True)
    for n in args.fixed_samples:
        for key, (label, settings) in list(runs.items()):
            fixed = {**settings, "num_samples": n, "early_stop": False}
            out[f"{key}_fixed_{n}"] = _ours_lime(clf, x, target, args.seeds, fixed)
            print(_ours_text(f"{label}, fixed {n} samples", out[f"{key}_fixed_{n}"]), flush=True)
    if not args.no_seed_lime:
        theirs, theirs_s = [], []
        for seed in range(args.seeds):
            values, seconds = _seeds_lime(clf, x, target, seed)
            theirs.append(values)
            theirs_s.append(seconds)
        out["lime_seeds"] = {"seconds": theirs_s, "samples": 1000, **_stability_figures(theirs)}
        t_seeds = statistics.median(theirs_s)
        print(
            f"LIME seeds (quickshift, batch 10, 1000 samples): {t_seeds:.1f} s median; "
            f"{_stability_text(out['lime_seeds'])}",
            flush=True,
        )
        for key, (label, _) in runs.items():
            out[key]["speed_ratio"] = t_seeds / statistics.median(out[key]["seconds"])
            out[key]["verdict"] = _verdict(out[key], out["lime_seeds"])
            print(f"ours ({label}) vs seeds: {out[key]['verdict']}", flush=True)
            fixed_keys = [f"{key}_fixed_{n}" for n in args.fixed_samples]
            for fk in fixed_keys:
                out[fk]["speed_ratio"] = t_seeds / statistics.median(out[fk]["seconds"])
                out[fk]["verdict"] = _verdict(out[fk], out["lime_seeds"])
            enough = [
                n
                for n, fk in zip(args.fixed_samples, fixed_keys, strict=True)
                if out[fk]["stability_rho"] >= out["lime_seeds"]["stability_rho"]
                and out[fk]["stability_top10"] >= out["lime_seeds"]["stability_top10"]
            ]
            if fixed_keys:
                out[key]["fewest_samples_as_stable"] = min(enough) if enough else None
                print(
                    f"ours ({label}), fixed counts: "
                    + "; ".join(
                        f"{n}: {out[fk]['speed_ratio']:.1f}x, rho {out[fk]['stability_rho']:.3f},"
                        f" top-10% {out[fk]['stability_top10']:.3f}"
                        for n, fk in zip(args.fixed_samples, fixed_keys, strict=True)
                    )
                    + " -> as stable as the seeds' from "
                    + (f"{min(enough)} samples" if enough else "none of these counts"),
                    flush=True,
                )

    # --- SHAP per layer ---------------------------------------------------------------------
    out["shap"] = {}
    for layer in create_explainer("shap", clf).layers() if args.shap else []:
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
    return out


MODELS = ("demo", "cnn", "resnet50v2")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", help=f"comma-separated, of {', '.join(MODELS)} (default: all)")
    ap.add_argument("--model", help="bundle for 'demo' (default: resources/demo_bundle)")
    ap.add_argument("--image", help="image file (PNG, JPEG, DICOM)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--like-for-like", action="store_true", help="also ours with quickshift")
    ap.add_argument(
        "--fixed-samples",
        type=lambda v: [int(n) for n in v.split(",") if n.strip()],
        default=[],
        help="also ours at these sample counts, stopping rule off (e.g. 200,300,500)",
    )
    ap.add_argument("--no-seed-lime", action="store_true", help="skip the seeds' LIME (slow)")
    ap.add_argument("--shap", action="store_true", help="also the per-layer SHAP timings")
    ap.add_argument("--quick", action="store_true", help="smoke test: 2 seeds, small models")
    ap.add_argument("--json", help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    default_models = "demo,cnn" if args.quick else ",".join(MODELS)
    models = [m.strip() for m in (args.models or default_models).split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    if args.seeds < 2:
        ap.error("stability needs at least 2 seeds")
    if args.quick:
        args.seeds, args.repeats = min(args.seeds, 2), 1

    from cxr_viewer.core.paths import demo_bundle_dir

    tmp = tempfile.TemporaryDirectory(prefix="bench-explainers-")
    image_path = _image_path(args.image)
    print(f"image: {image_path.name}; seeds: {args.seeds}")
    out: dict = {"image": str(image_path), "seeds": args.seeds, "models": {}}
    for name in models:
        if name == "demo":
            root = Path(args.model) if args.model else demo_bundle_dir()
        elif name == "cnn":
            root = _cnn_bundle(Path(tmp.name), 64 if args.quick else 128)
        else:
            root = _resnet_bundle(Path(tmp.name))
        out["models"][name] = _bench_model(name, root, args, image_path)
    if not args.no_seed_lime:
        print("\nsummary (ours = viewer defaults):")
        for name, figures in out["models"].items():
            ours, seeds = figures["lime_ours"], figures["lime_seeds"]
            print(
                f"  {name:10s} path {figures['forward_path']:12s} ours "
                f"{statistics.median(ours['seconds']):6.1f} s, samples {ours['samples']}; "
                f"seeds {statistics.median(seeds['seconds']):6.1f} s, 1000 samples; "
                f"{ours['verdict']}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2), encoding="utf-8")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
