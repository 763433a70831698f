"""Batch explanations: the local engine against Ray with 1 and 2 workers, in one run.

Runs ``cxr-viewer batch`` (a fresh process each time, as a user would) with ``--engine local``,
``--engine ray --workers 1`` and ``--workers 2`` (Ray started on this machine by the command),
each on N/2 and N images. Prints per engine: the wall times, images/s end to end, the
steady-state images/s (the extra N/2 images over the extra wall time, so start-up cancels out),
its ratio to the local engine, and the start-up time it implies. Then, measured directly, the
Ray start-up overhead: ``ray.init`` plus the warm-up of a pool of 1 or 2 workers (each imports
TensorFlow and loads the bundle).

    python benchmarks/bench_scale.py [--model BUNDLE] [--images 24] [--explain gradcam]
        [--size 256]

Inputs: ``--images`` synthetic chest phantoms (``trainer.synth``, PNG, ``--size`` px) written to
a temporary folder; the model defaults to the demo bundle. Needs ``pip install -e ".[scale]"``.
Every engine's CSV is checked against the local one (apart from timing columns) before the
figures are printed; exit status 1 if they differ.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _write_inputs(folder: Path, n: int, size: int) -> None:
    from PIL import Image

    from trainer.synth import make_phantoms

    folder.mkdir(parents=True)
    phantoms = make_phantoms(n, size, seed=0)
    for i, image in enumerate(phantoms.images):
        Image.fromarray((image * 255).clip(0, 255).astype("uint8")).save(folder / f"p{i:05d}.png")


def _run(src: Path, out: Path, model: str, explain: str, *engine: str) -> float:
    cmd = [sys.executable, "-m", "cxr_viewer", "batch", str(src), "--model", model]
    cmd += ["--out", str(out), "--explain", explain, "--quiet", "--device", "cpu", *engine]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "predictions.csv", encoding="utf-8", newline="") as fh:
        return [
            {k: v for k, v in r.items() if not k.startswith("seconds_")} for r in csv.DictReader(fh)
        ]


def _ray_overhead(model: str, explain: str, workers: int, cpus: int, out: Path) -> float:
    """Seconds for ray.init + a pool of ``workers`` ExplainWorker actors answering once."""
    import ray

    from cxr_viewer.commands.batch_ray import ExplainWorker

    args = {
        "path": str(out),
        "out": str(out),
        "model": model,
        "explain": explain,
        "device": "cpu",
        "gpu_memory": None,
        "verbose": False,
        "mixed_precision": False,
        "opacity": 0.5,
        "no_trust": False,
        "seed": 0,
        "dicom_out": None,
        "send": None,
    }
    empty = {"path": [], "sha256": [], "stem": [], "stem_error": []}
    t0 = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        actor = ray.remote(num_cpus=max(1, cpus // workers))(ExplainWorker)
        pool = [
            actor.remote(args, [explain], None, threads=max(1, cpus // workers))
            for _ in range(workers)
        ]
        ray.get([a.__call__.remote(empty) for a in pool])
        return time.perf_counter() - t0
    finally:
        ray.shutdown()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "resources" / "demo_bundle"))
    ap.add_argument("--images", type=int, default=24, help="images of the larger run (even)")
    ap.add_argument("--size", type=int, default=256, help="phantom size in pixels")
    ap.add_argument("--explain", default="gradcam")
    a = ap.parse_args()
    cpus = os.cpu_count() or 1
    n2 = max(2, a.images - a.images % 2)
    n1 = n2 // 2
    engines = {
        "local": (),
        "ray, 1 worker": ("--engine", "ray", "--workers", "1"),
        "ray, 2 workers": ("--engine", "ray", "--workers", "2"),
    }
    walls: dict[str, dict[int, float]] = {name: {} for name in engines}
    with tempfile.TemporaryDirectory(prefix="cxr-bench-scale-") as tmp:
        srcs = {n2: Path(tmp) / "in-large", n1: Path(tmp) / "in-small"}
        _write_inputs(srcs[n2], n2, a.size)
        srcs[n1].mkdir()
        for f in sorted(srcs[n2].iterdir())[:n1]:
            (srcs[n1] / f.name).write_bytes(f.read_bytes())
        reference: dict[int, list] = {}
        for i, (name, engine) in enumerate(engines.items()):
            for n, src in srcs.items():
                out = Path(tmp) / f"out{i}-{n}"
                walls[name][n] = _run(src, out, a.model, a.explain, *engine)
                rows = _rows(out)
                if reference.setdefault(n, rows) != rows:
                    print(f"{name}: its CSV differs from the local engine's", file=sys.stderr)
                    return 1
        overhead = {w: _ray_overhead(a.model, a.explain, w, cpus, Path(tmp)) for w in (1, 2)}
    print(
        f"{n1} and {n2} phantoms of {a.size} px, --explain {a.explain} (with trust AUCs), "
        f"{Path(a.model).name}, {cpus} CPUs, device cpu"
    )
    print(
        f"{'engine':<16}{f'wall {n1}':>9}{f'wall {n2}':>9}{f'img/s e2e {n2}':>15}"
        f"{'steady img/s':>14}{'vs local':>10}{'start-up s':>12}"
    )
    rate = {}
    for name, w in walls.items():
        rate[name] = (n2 - n1) / max(w[n2] - w[n1], 1e-9)  # the start-up cancels out
    for name, w in walls.items():
        start = w[n1] - n1 / rate[name]
        print(
            f"{name:<16}{w[n1]:>9.1f}{w[n2]:>9.1f}{n2 / w[n2]:>15.2f}{rate[name]:>14.2f}"
            f"{rate[name] / rate['local']:>10.2f}{start:>12.1f}"
        )
    for w, s in overhead.items():
        print(f"Ray start-up overhead, {w} worker(s): {s:.1f} s (ray.init + pool warm-up)")
    print("steady img/s = extra images / extra wall time between the two runs of an engine;")
    print("start-up = wall of the small run minus its images at the steady rate.")
    print("CSVs of every engine equal the local engine's apart from the timing columns.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
