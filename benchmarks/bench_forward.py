"""The forward path of the model-agnostic loops: which one wins, and occlusion / trust timings.

    python benchmarks/bench_forward.py [--models demo,cnn128,resnet50v2] [--repeats 2]
                                       [--json OUT.json]

For each model — the demo bundle, a small public-style CNN built here (128×128×1, conv/pool
blocks, Flatten, Dense, one sigmoid unit: a binary head) and ResNet50V2 (``weights=None``:
random weights, right for timing) — in one process:

1. **before**: the classifier as it was (the compiled ``tf.function``, batch 16, no choice);
   occlusion with the viewer's defaults and the trust figures as computed before
   (``deletion_insertion`` then ``top_fraction_drop``: three predict calls, 74 images);
2. the choice (:meth:`Classifier.choose_forward_path`, ``auto``, nothing remembered): the
   seconds it took (conversion / compilation per candidate, then timing: the load-time cost),
   the images/s per path and batch size, the path and batch chosen;
3. **after**: occlusion and ``add_trust`` (one call, 37 images) on the chosen path;
4. every verified path forced (``--all-paths``, off for ResNet50V2 by default: minutes).

Times are the median of ``--repeats`` runs; ratios are before / after from this same run (the
machine's load changes between runs, not within one). Outputs are compared too: the occlusion
maps before and after differ by at most the printed amount.
"""

from __future__ import annotations

import argparse
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
# nothing remembered from an earlier run: every run measures
os.environ["CXR_FORWARD_CACHE"] = "off"


def _cnn128_bundle(tmp: Path) -> Path:
    import keras
    from keras import layers

    from cxr_viewer.core.explain.layers import default_gradcam_layer, shap_layers
    from cxr_viewer.core.model.bundle import write_bundle
    from cxr_viewer.core.model.heads import Head
    from cxr_viewer.core.model.preprocess import InputSpec

    keras.utils.set_random_seed(0)
    inp = keras.Input((128, 128, 1), name="image")
    x = inp
    for i, f in enumerate((32, 64, 128)):
        x = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        x = layers.MaxPooling2D(name=f"pool{i + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(64, activation="relu", name="dense")(x)
    out = layers.Dense(1, activation="sigmoid", name="predictions")(x)
    model = keras.Model(inp, out, name="cnn128")
    bg = np.random.default_rng(0).random((4, 128, 128, 1), dtype=np.float32)
    return write_bundle(
        tmp / "cnn128",
        model,
        name="128-px flat sigmoid CNN",
        class_names=["normal", "pneumonia"],
        input_spec=InputSpec(128, 128, 1, "unit"),
        gradcam_layer=default_gradcam_layer(model),
        shap_layers=shap_layers(model),
        background=bg,
        head=Head("binary", 1, "sigmoid"),
    ).root


def _resnet_bundle(tmp: Path) -> Path:
    """bench_explainers' ResNet50V2 bundle (random weights), the same model in both benchmarks."""
    from bench_explainers import _resnet_bundle as resnet_bundle

    return Path(resnet_bundle(tmp))


def _median(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def _input(clf) -> np.ndarray:
    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.model.preprocess import study_to_input

    sample = sorted((ROOT / "resources" / "samples").glob("real-*_pneumonia_*"))[0]
    return study_to_input(load_study(sample), clf.spec)


def _workload(clf, x: np.ndarray, repeats: int, old_trust: bool) -> dict:
    from cxr_viewer.core.evaluate.trust import add_trust, deletion_insertion, top_fraction_drop
    from cxr_viewer.core.explain.registry import create_explainer

    occ = create_explainer("occlusion", clf)
    t_occ, hm = _median(lambda: occ.explain(x, 1), repeats)

    def trust_before():
        figs = deletion_insertion(clf, x, hm.values, 1)
        figs.update(top_fraction_drop(clf, x, hm.values, 1))
        return figs

    def trust_after():
        return add_trust(hm, clf, x).trust

    t_trust, figs = _median(trust_before if old_trust else trust_after, repeats)
    return {
        "occlusion_s": t_occ,
        "occlusions": hm.settings.get("occlusions"),
        "trust_s": t_trust,
        "map": hm.values,
        "figs": figs,
    }


def bench_model(name: str, bundle_path: Path, repeats: int, all_paths: bool) -> dict:
    from cxr_viewer.core.model.bundle import open_bundle
    from cxr_viewer.core.model.inference import Classifier

    clf = Classifier(open_bundle(bundle_path))
    x = _input(clf)
    clf.predict_inputs(x[None])  # traces the tf.function
    print(
        f"\n== {name}: input {clf.spec.height}×{clf.spec.width}×{clf.spec.channels}, {clf.device}"
    )
    before = _workload(clf, x, repeats, old_trust=True)
    print(
        f"before  tf.function, batch {clf.batch_size}: occlusion {before['occlusion_s']:.2f} s "
        f"({before['occlusions']} patches), trust figures {before['trust_s']:.2f} s (74 images)"
    )

    t = time.perf_counter()
    choice = clf.choose_forward_path("auto")
    choose_s = time.perf_counter() - t
    if choice.throughput:
        clf.batch_size = choice.batch_size
    setup = ", ".join(f"{k} {v:.1f} s" for k, v in choice.setup_seconds.items())
    print(
        f"choice  {clf.forward_path} in {choose_s:.1f} s at load (build/convert: {setup}; "
        f"timing {choice.timing_seconds:.1f} s)"
    )
    for path, rates in choice.throughput.items():
        rates_text = ", ".join(f"b{b}: {r:.1f}" for b, r in sorted(rates.items()))
        print(f"        {path:5s} images/s {rates_text}")
    for path, why in choice.rejected.items():
        print(f"        {path}: not used — {why}")
    diffs = ", ".join(f"{k} {v:.1e}" for k, v in choice.max_abs_diff.items())
    print(f"        max |p − p_tf| on the check inputs: {diffs or 'n/a'}")

    after = _workload(clf, x, repeats, old_trust=False)
    occ_diff = float(np.max(np.abs(after["map"] - before["map"])))
    trust_diff = max(abs(after["figs"][k] - before["figs"][k]) for k in before["figs"])
    print(
        f"after   {clf.forward_path}: occlusion {after['occlusion_s']:.2f} s "
        f"(× {before['occlusion_s'] / after['occlusion_s']:.2f}), trust figures "
        f"{after['trust_s']:.2f} s (37 images, × {before['trust_s'] / after['trust_s']:.2f}); "
        f"max difference: occlusion map {occ_diff:.1e}, trust figures {trust_diff:.1e}"
    )
    out = {
        "model": name,
        "device": clf.device,
        "forward_path": clf.forward_path,
        "choice": choice.as_dict(),
        "choose_seconds": choose_s,
        "before": {k: before[k] for k in ("occlusion_s", "trust_s", "occlusions")},
        "after": {k: after[k] for k in ("occlusion_s", "trust_s")},
        "max_diff": {"occlusion_map": occ_diff, "trust": trust_diff},
        "forced": {},
    }
    if all_paths:
        for path in ("tf", "xla", "onnx"):
            forced = clf.choose_forward_path(path)
            if forced.name != path:
                continue
            clf.batch_size = forced.batch_size
            w = _workload(clf, x, repeats, old_trust=False)
            out["forced"][path] = {
                "forward_path": clf.forward_path,
                "occlusion_s": w["occlusion_s"],
                "trust_s": w["trust_s"],
            }
            print(
                f"forced  {clf.forward_path}: occlusion {w['occlusion_s']:.2f} s "
                f"(× {before['occlusion_s'] / w['occlusion_s']:.2f} vs before), "
                f"trust {w['trust_s']:.2f} s"
            )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="demo,cnn128,resnet50v2")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument(
        "--all-paths",
        default="demo,cnn128",
        help="models on which every verified path is also timed forced ('' for none)",
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from cxr_viewer.core.model.model_io import import_tensorflow
    from cxr_viewer.core.paths import demo_bundle_dir

    tf = import_tensorflow()
    import onnxruntime

    print(
        f"TensorFlow {tf.__version__}, onnxruntime {onnxruntime.__version__} "
        f"(providers {', '.join(onnxruntime.get_available_providers())}); "
        f"{os.cpu_count()} CPUs; repeats {args.repeats}"
    )
    results = []
    all_paths = set(filter(None, args.all_paths.split(",")))
    with tempfile.TemporaryDirectory() as tmp:
        builders = {
            "demo": lambda: demo_bundle_dir(),
            "cnn128": lambda: _cnn128_bundle(Path(tmp)),
            "resnet50v2": lambda: _resnet_bundle(Path(tmp)),
        }
        for name in filter(None, args.models.split(",")):
            results.append(bench_model(name, builders[name](), args.repeats, name in all_paths))
    print("\nsummary (before = tf.function batch 16 and three trust calls; same run)")
    for r in results:
        b, a = r["before"], r["after"]
        print(
            f"  {r['model']:11s} {r['forward_path']:32s} chosen in {r['choose_seconds']:5.1f} s; "
            f"occlusion × {b['occlusion_s'] / a['occlusion_s']:.2f}, "
            f"trust × {b['trust_s'] / a['trust_s']:.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
