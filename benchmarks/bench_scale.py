"""Batch explanations: the local engine against Ray with 1 and 2 workers, in one run.

Runs ``cxr-viewer batch`` (a fresh process each time, as a user would) with ``--engine local``,
``--engine ray --workers 1`` and ``--workers 2`` (Ray started on this machine by the command),
on the same images. Prints per engine: the wall time, images/s end to end, when the first row
was written, the steady-state images/s (rows after the first over the time from the first row
to the last, read from the run's journal ``predictions.csv.partial`` as it grows, so start-up
does not count) and its ratio to the local engine. Then, measured directly, the Ray start-up
overhead: ``ray.init`` plus the warm-up of a pool of 1 or 2 workers (each imports
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


def _run(src: Path, out: Path, model: str, explain: str, *engine: str) -> tuple[float, ...]:
    """(wall, first row, last row): seconds from the start, rows seen in the run's journal."""
    cmd = [sys.executable, "-m", "cxr_viewer", "batch", str(src), "--model", model]
    cmd += ["--out", str(out), "--explain", explain, "--quiet", "--device", "cpu", *engine]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    journal = out / "predictions.csv.partial"
    first = last = float("nan")
    seen = 0
    t0 = time.perf_counter()
    with subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True) as proc:
        while proc.poll() is None:
            try:
                rows = journal.read_bytes().count(b"\n") - 1  # minus the header
            except OSError:
                rows = 0
            if rows > seen:
                now = time.perf_counter() - t0
                first = now if seen == 0 else first
                last, seen = now, rows
            time.sleep(0.05)
        err = proc.stderr.read() if proc.stderr else ""
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    return wall, first, last


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
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--size", type=int, default=256, help="phantom size in pixels")
    ap.add_argument("--explain", default="gradcam")
    a = ap.parse_args()
    cpus = os.cpu_count() or 1
    n = a.images
    engines = {
        "local": (),
        "ray, 1 worker": ("--engine", "ray", "--workers", "1"),
        "ray, 2 workers": ("--engine", "ray", "--workers", "2"),
    }
    times: dict[str, tuple[float, ...]] = {}
    with tempfile.TemporaryDirectory(prefix="cxr-bench-scale-") as tmp:
        src = Path(tmp) / "in"
        _write_inputs(src, n, a.size)
        reference = None
        for i, (name, engine) in enumerate(engines.items()):
            out = Path(tmp) / f"out{i}"
            times[name] = _run(src, out, a.model, a.explain, *engine)
            rows = _rows(out)
            reference = rows if reference is None else reference
            if rows != reference:
                print(f"{name}: its CSV differs from the local engine's", file=sys.stderr)
                return 1
        overhead = {w: _ray_overhead(a.model, a.explain, w, cpus, Path(tmp)) for w in (1, 2)}
    print(
        f"{n} phantoms of {a.size} px, --explain {a.explain} (with trust AUCs), "
        f"{Path(a.model).name}, {cpus} CPUs, device cpu"
    )
    print(
        f"{'engine':<16}{'wall s':>8}{'img/s e2e':>11}{'1st row s':>11}"
        f"{'steady img/s':>14}{'vs local':>10}"
    )
    steady = {k: (n - 1) / max(last - first, 1e-9) for k, (_, first, last) in times.items()}
    for name, (wall, first, _) in times.items():
        print(
            f"{name:<16}{wall:>8.1f}{n / wall:>11.2f}{first:>11.1f}{steady[name]:>14.2f}"
            f"{steady[name] / steady['local']:>10.2f}"
        )
    for w, s in overhead.items():
        print(f"Ray start-up overhead, {w} worker(s): {s:.1f} s (ray.init + pool warm-up)")
    print("steady img/s = (rows - 1) / (time of the last row - time of the first row), read from")
    print("the run's journal; 1st row s = when the first row was written (start-up + 1 image).")
    print("CSVs of every engine equal the local engine's apart from the timing columns.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
