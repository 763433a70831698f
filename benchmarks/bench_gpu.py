"""GPU vs CPU in one run: predict, Grad-CAM, LIME and SHAP timed on both devices, with ratios.

    python benchmarks/bench_gpu.py [--model BUNDLE] [--image PATH] [--repeats 3]
                                   [--gpu-memory MB] [--no-tf32] [--json OUT.json]

Model: ``--model``, else the demo bundle. Image: ``--image``, else the self-test's PNG phantom.
TensorFlow starts through the viewer's one place (first GPU, memory growth or the cap); each
measurement runs the same call under ``tf.device("/GPU:0")`` and ``tf.device("/CPU:0")`` —
median of ``--repeats`` after one untimed call per device — and prints seconds on each and the
speed-up (CPU seconds / GPU seconds), plus how far the GPU's output is from the CPU's (the
self-test's measure and tolerance; "(!)" marks a difference beyond it). Both devices use the
batch size the classifier chose at warm-up on the GPU. TensorFloat-32 stays as TensorFlow sets
it (on for Ampere and newer GPUs: faster, ~10 mantissa bits, so differences can exceed the
float32 tolerances the self-test checks with TF32 off); ``--no-tf32`` turns it off.

* predict: one image, and 256 images (a LIME/trust-curve sized batch);
* Grad-CAM at the bundle's layer; LIME with 400 samples (no early stop); SHAP (expected
  gradients) at the bundle's first SHAP layer with 32 samples.

On a machine where TensorFlow sees no GPU it says so, prints the CPU figures and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TQDM_DISABLE", "1")

EXPLAIN = {
    "gradcam": {},
    "lime": {"num_samples": 400, "chunk_size": 100, "early_stop": False},
    "shap": {"nsamples": 32},
}


def _median(fn, device: str, repeats: int):
    """(median seconds, last result) of ``fn()`` on ``device``, after one untimed call."""
    from cxr_viewer.core.device_compare import run_on

    out, _ = run_on(device, fn)
    times = []
    for _ in range(repeats):
        out, seconds = run_on(device, fn)
        times.append(seconds)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="model bundle (default: the demo bundle)")
    p.add_argument("--image", help="image to explain (default: the self-test's PNG phantom)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--gpu-memory", type=int, metavar="MB", help="cap TensorFlow's GPU memory")
    p.add_argument("--no-tf32", action="store_true", help="turn TensorFloat-32 off on the GPU")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)

    from cxr_viewer.core.device_compare import CPU, TOLERANCE, gpu_names, map_difference
    from cxr_viewer.core.explain.base import explain_study
    from cxr_viewer.core.explain.registry import create_explainer
    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.model.inference import load_classifier
    from cxr_viewer.core.model.model_io import configure, import_tensorflow, runtime_state
    from cxr_viewer.core.model.preprocess import study_to_input
    from cxr_viewer.core.paths import demo_bundle_dir, samples_dir

    configure("auto", args.gpu_memory)
    tf = import_tensorflow()
    if args.no_tf32:
        tf.config.experimental.enable_tensor_float_32_execution(False)
    start = time.perf_counter()
    clf = load_classifier(args.model or demo_bundle_dir())
    load_s = time.perf_counter() - start
    study = load_study(args.image or samples_dir() / "phantom_selftest.png")
    x1 = study_to_input(study, clf.spec)[None]
    x256 = np.repeat(x1, 256, axis=0)
    x256 += np.random.default_rng(0).normal(0, 0.01, x256.shape).astype(np.float32)
    target = clf.predict_study(study).predicted_index
    gpus = gpu_names()
    state = runtime_state()
    tf32 = tf.config.experimental.tensor_float_32_execution_enabled()
    print(f"TensorFlow {tf.__version__}; device: {clf.device}; model {clf.bundle.name}")
    print(
        f"memory growth: {state.memory_growth}, cap: {state.memory_limit_mb or 'none'} MB; "
        f"batch size {clf.batch_size} (measured: {clf.batch_throughput or 'no, CPU'}); "
        f"load + warm-up {load_s:.2f} s" + (f"; TF32 {'on' if tf32 else 'off'}" if gpus else "")
    )
    if not gpus:
        print("TensorFlow sees no GPU on this machine: CPU figures only, no GPU/CPU ratio.")

    tasks = {
        "predict_1": lambda: clf.predict_inputs(x1),
        "predict_256": lambda: clf.predict_inputs(x256),
    }
    for method, settings in EXPLAIN.items():
        tasks[method] = lambda m=method, s=settings: (
            explain_study(create_explainer(m, clf, dict(s)), study, target).values
        )
    rows = {}
    print(f"\n{'task':<12} {'CPU s':>9} {'GPU s':>9} {'speed-up':>9} {'GPU vs CPU':>12}")
    for name, fn in tasks.items():
        cpu_s, cpu_out = _median(fn, CPU, args.repeats)
        row = {"cpu_s": cpu_s}
        if gpus:
            gpu_s, gpu_out = _median(fn, gpus[0], args.repeats)
            if name.startswith("predict"):
                diff = float(np.max(np.abs(np.asarray(gpu_out) - np.asarray(cpu_out))))
                tol = TOLERANCE["predict"]
            else:
                diff, tol = map_difference(gpu_out, cpu_out)["max_rel_diff"], TOLERANCE[name]
            row.update(gpu_s=gpu_s, speedup=cpu_s / gpu_s, diff=diff, within_tolerance=diff <= tol)
            print(
                f"{name:<12} {cpu_s:>9.4f} {gpu_s:>9.4f} {cpu_s / gpu_s:>8.2f}x "
                f"{diff:>9.2e}{'' if diff <= tol else ' (!)'}"
            )
        else:
            print(f"{name:<12} {cpu_s:>9.4f} {'-':>9} {'-':>9} {'-':>12}")
        rows[name] = row
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"device": clf.device, "gpus": gpus, "batch_size": clf.batch_size, "tasks": rows},
                indent=2,
            ),
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
