"""Multi-worker training vs one worker, on the same tiny phantom config, in one run.

Runs ``cxr-train train`` on synthetic phantoms (``trainer/configs/phantoms_tiny.toml``, as the
two-worker test does: 60 phantoms, 32 px, one block, 2 epochs, ``batch_size`` 8 per worker)
three ways:

1. ``none``: one process, no strategy (the baseline);
2. ``multiworker`` × 1: MultiWorkerMirroredStrategy with a one-worker ``TF_CONFIG``;
3. ``multiworker`` × 2: two local worker processes, ``TF_CONFIG`` on free localhost ports.

Prints, per way, the wall time of the whole command (start-up, decoding, training, evaluation,
export; the slowest worker's) and the seconds inside ``fit()`` (the chief's
``training_seconds.json``), and both as ratios to the baseline. Two workers on one machine share
its cores, so this measures the overhead of the strategy and of the all-reduce over localhost,
not a speed-up; on separate machines each worker has its own cores.

    python benchmarks/bench_multiworker.py [--epochs 2] [--images 60]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TIMEOUT = 900


def _ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


#: the shipped tiny phantom config (the two-worker test runs it too)
TINY_CONFIG = ROOT / "trainer" / "configs" / "phantoms_tiny.toml"


def _overrides(csv: Path, epochs: int, distribute: str) -> list[str]:
    """``--set`` arguments that point TINY_CONFIG at ``csv`` with this many epochs and strategy."""
    values = {
        "data.root": json.dumps(csv.as_posix()),
        "train.epochs": str(epochs),
        "train.patience": str(epochs),
        "train.distribute": json.dumps(distribute),
    }
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def _run(overrides: list[str], out: Path, workers: int) -> tuple[float, float]:
    """(wall seconds of the slowest process, fit seconds of the chief)."""
    addresses = [f"localhost:{p}" for p in _ports(workers)]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "trainer.cli", "train", "--config", str(TINY_CONFIG)]
    cmd += ["--out", str(out), "--quiet", *overrides]
    procs = []
    t0 = time.perf_counter()
    for i in range(workers if workers > 0 else 1):
        e = dict(env)
        if workers > 0:
            tf_config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}}
            e["TF_CONFIG"] = json.dumps(tf_config)
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=e, stdout=subprocess.DEVNULL))
    try:
        for p in procs:
            p.wait(timeout=max(1.0, TIMEOUT - (time.perf_counter() - t0)))
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)  # the cluster agent ignores SIGTERM
                p.wait()
    wall = time.perf_counter() - t0
    if any(p.returncode for p in procs):
        raise SystemExit(f"a worker failed: exit codes {[p.returncode for p in procs]}")
    fit = json.loads((out / "training_seconds.json").read_text())["fit_seconds"]
    return wall, float(fit)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--images", type=int, default=60)
    args = ap.parse_args()
    from trainer.synth import make_phantoms, write_phantoms

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        csv = write_phantoms(
            tmp_path / "phantoms", make_phantoms(args.images, 32, seed=5), formats=("png",)
        )
        rows = []
        for label, distribute, workers in (
            ("one process, no strategy", "none", 0),
            ("multiworker, 1 worker", "multiworker", 1),
            ("multiworker, 2 workers", "multiworker", 2),
        ):
            overrides = _overrides(csv, args.epochs, distribute)
            wall, fit = _run(overrides, tmp_path / f"run{workers}", workers)
            rows.append((label, wall, fit))
            print(f"{label:28s} wall {wall:6.1f} s   fit {fit:6.1f} s", flush=True)
    base_wall, base_fit = rows[0][1], rows[0][2]
    print(f"\nratios to '{rows[0][0]}' (below 1 = faster), {os.cpu_count()} CPU cores:")
    for label, wall, fit in rows[1:]:
        print(f"{label:28s} wall × {wall / base_wall:.2f}   fit × {fit / base_fit:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
