"""Long fuzz run of the readers, with peak memory per file measured in a child process.

Builds small valid files of every syntax the reader knows (PNG 8/16-bit grey, colour and
palette, JPEG, DICOM native / RLE / JPEG baseline / JPEG-LS / JPEG 2000, ACR-NEMA), plus — with
``--shared`` — the team's real DICOMs, and mutates them: cuts, byte flips anywhere or in the
header, random sizes written into the frame headers (JPEG SOF/SOF55, JPEG 2000 SIZ, PNG IHDR,
DICOM Rows/Columns), inserted and zeroed runs. Each mutant goes to a worker process that runs
``load_study`` and the display pipeline, and reports:

- the outcome: a Study, or which :class:`StudyLoadError` — anything else is an **uncaught
  error**;
- the peak resident memory of the call (Linux: ``/proc/self/clear_refs`` resets the
  high-water mark before each file, ``VmHWM`` is read after it) against the allowance of
  :func:`cxr_viewer.core.io.limits.peak_memory_allowance` — above it is **over budget**;
- a worker that does not answer within ``--timeout`` seconds is a **hang** (killed and
  restarted); a worker that dies is a **crash**.

    nice -n 10 python benchmarks/fuzz_loaders.py [--mutants 10000] [--seed 0]
        [--max-pixels 4194304] [--shared] [--timeout 60]

Prints a summary (JSON with ``--json``); exit status 1 if there was any uncaught error, hang,
crash or file over budget. ``tests/core/test_fuzz_memory.py`` runs a short version in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import selectors
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORKER_MEMORY_LIMIT = (
    6 * 2**30
)  # address-space cap of the worker: a missed bomb fails, not the machine


# -- seeds ---------------------------------------------------------------------------------


def seed_files(shared: bool = False) -> dict[str, bytes]:
    """Small valid files of every syntax (built here), and optionally the shared DICOMs."""
    sys.path.insert(0, str(ROOT / "tests" / "core"))
    import numpy as np
    import pydicom
    from test_io_samples import (
        acr_nema_bytes,
        dicom_bytes,
        dicom_dataset,
        exif_orientation,
        gradient,
        j2k_dicom_bytes,
        jpeg_dicom_bytes,
        pillow_bytes,
        png_bytes,
        rle_dicom_bytes,
    )

    def jls() -> bytes:
        ds = dicom_dataset(gradient(64, 64, top=4095))
        ds.compress(pydicom.uid.JPEGLSLossless, encoding_plugin="pyjpegls")
        return dicom_bytes(ds)

    builders: dict[str, Callable[[], bytes]] = {
        "png8": lambda: png_bytes(gradient()),
        "png16": lambda: png_bytes(gradient(top=65535), 16),
        "png16-rgba": lambda: png_bytes(
            np.dstack([gradient(top=65535)] * 3 + [np.full((24, 32), 65535)]), 16
        ),
        "png-palette": lambda: pillow_bytes(gradient(), "PNG", bits=4),
        "jpeg": lambda: pillow_bytes(gradient(64, 64), quality=90),
        "jpeg-exif": lambda: pillow_bytes(np.dstack([gradient()] * 3), exif=exif_orientation(6)),
        "dicom": lambda: dicom_bytes(
            dicom_dataset(gradient(top=4095), WindowCenter=2048, WindowWidth=4096)
        ),
        "dicom-rle": lambda: rle_dicom_bytes(gradient(top=4095)),
        "dicom-jpeg": lambda: jpeg_dicom_bytes(gradient(64, 64)),
        "dicom-jls": jls,
        "dicom-j2k": lambda: j2k_dicom_bytes(gradient(64, 64, top=4095)),
        "acr-nema": lambda: acr_nema_bytes(dicom_dataset(gradient(top=1023), bits_stored=10)),
    }
    seeds = {name: build() for name, build in builders.items()}
    if shared:
        from cxr_viewer.core.paths import shared_data_dir

        data = shared_data_dir()
        if data is not None:
            for path in sorted((data / "dicom").glob("*.dcm")):
                if path.stat().st_size <= 3 * 2**20:
                    seeds[f"shared:{path.name}"] = path.read_bytes()
    return seeds


# -- mutations -----------------------------------------------------------------------------

_SIZE_MARKERS = (b"\xff\xc0", b"\xff\xc1", b"\xff\xc3", b"\xff\xf7", b"\xff\x51", b"IHDR")
_ROWS_COLS = (b"\x28\x00\x10\x00", b"\x28\x00\x11\x00")  # (0028,0010) Rows, (0028,0011) Columns
KINDS = ("cut", "flip", "flip-header", "sizes", "insert", "zero-run")


def mutate(data: bytes, kind: str, rng: random.Random) -> bytes:
    """One mutant of ``data`` (deterministic for a given ``rng`` state)."""
    out = bytearray(data)
    if kind == "cut":
        return bytes(out[: rng.randrange(1, len(out))])
    if kind in ("flip", "flip-header"):
        span = min(len(out), 400) if kind == "flip-header" else len(out)
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(span)] = rng.randrange(256)
        return bytes(out)
    if kind == "insert":
        pos = rng.randrange(len(out))
        return bytes(out[:pos] + rng.randbytes(rng.randint(1, 64)) + out[pos:])
    if kind == "zero-run":
        pos = rng.randrange(len(out))
        n = rng.randint(1, 256)
        out[pos : pos + n] = bytes(len(out[pos : pos + n]))
        return bytes(out)
    # "sizes": write big or odd sizes where the frame headers keep them
    spots = [m.start() for marker in _SIZE_MARKERS for m in re.finditer(re.escape(marker), out)]
    spots += [m.start() for tag in _ROWS_COLS for m in re.finditer(re.escape(tag), out)]
    if not spots:
        return mutate(data, "flip", rng)
    pos = rng.choice(spots)
    value = rng.choice([0, 1, 7, 255, 4096, 8192, 8193, 30000, 65500, 65535])
    big = rng.choice([0, 1, 8192, 60000, 2**31 - 1, 2**32 - 1])
    if out[pos : pos + 2] == b"\xff\x51":
        struct.pack_into(">II", out, pos + 6, big, big)  # JPEG 2000 Xsiz, Ysiz
    elif out[pos : pos + 4] == b"IHDR":
        struct.pack_into(">II", out, pos + 4, big, big)
    elif out[pos] == 0xFF:
        struct.pack_into(">HH", out, pos + 5, value, value)  # SOF Y, X
    elif pos + 10 <= len(out):
        struct.pack_into("<H", out, pos + 8, value)  # explicit VR US value after VR + length
    return bytes(out)


# -- the worker ----------------------------------------------------------------------------


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def worker() -> None:
    """Read JSON requests from stdin, answer one JSON line per file on stdout."""
    import gc
    import resource
    import warnings

    warnings.simplefilter("ignore")
    try:
        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_LIMIT, WORKER_MEMORY_LIMIT))
    except (ValueError, OSError):
        pass
    from cxr_viewer.core.errors import StudyLoadError
    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.io.display import display_image

    try:  # Linux: writing "5" resets the peak RSS (VmHWM); some containers forbid it
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        can_reset = True
    except OSError:
        can_reset = False
    print(json.dumps({"ready": True, "hwm": can_reset}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        gc.collect()
        base = _status_kb("VmRSS")
        if can_reset:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # reset the peak RSS (VmHWM) to the current RSS
        start = time.perf_counter()
        result: dict = {"outcome": "loaded"}
        try:
            study = load_study(req["path"], max_pixels=req["max_pixels"])
            display_image(study)
            result["shape"] = list(study.pixels.shape)
        except StudyLoadError as exc:
            result = {"outcome": type(exc).__name__, "memory": "not enough memory" in str(exc)}
            if not (exc.what and exc.why):
                result.update(outcome="uncaught", error=f"{type(exc).__name__} without reason")
        except BaseException as exc:  # noqa: BLE001 - exactly what the fuzz looks for
            if isinstance(exc, KeyboardInterrupt):
                raise
            result = {"outcome": "uncaught", "error": f"{type(exc).__name__}: {exc}"[:300]}
        result["seconds"] = time.perf_counter() - start
        result["peak_kb"] = max(_status_kb("VmHWM") - base, 0) if can_reset else None
        print(json.dumps(result), flush=True)


class Worker:
    """A worker process, restarted after a hang or a crash."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.hwm = False
        self.start()

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)
        hello = self._read(120.0)
        if hello is None:
            raise RuntimeError("the fuzz worker did not start")
        self.hwm = bool(hello.get("hwm"))

    def _read(self, timeout: float) -> dict | None:
        if not self.sel.select(timeout):
            return None
        line = self.proc.stdout.readline()
        return json.loads(line) if line else {"outcome": "crash"}

    def run(self, path: str, max_pixels: int, timeout: float) -> dict:
        try:
            self.proc.stdin.write(json.dumps({"path": path, "max_pixels": max_pixels}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.restart()
            return {"outcome": "crash"}
        result = self._read(timeout)
        if result is None:
            self.restart()
            return {"outcome": "hang"}
        if result.get("outcome") == "crash":
            self.restart()
        return result

    def restart(self) -> None:
        self.close()
        self.start()

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            self.proc.wait()


# -- the run -------------------------------------------------------------------------------


def run_fuzz(
    mutants: int,
    seed: int = 0,
    max_pixels: int = 1_000_000,
    timeout: float = 60.0,
    shared: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Run ``mutants`` mutants through a worker; return the summary (see the module doc)."""
    from cxr_viewer.core.io.limits import decoded_budget, peak_memory_allowance

    seeds = seed_files(shared)
    names = sorted(seeds)
    outcomes: Counter = Counter()
    problems: list[dict] = []
    peaks: list[tuple[float, str, int]] = []  # (peak / allowance, label, peak bytes)
    slowest = (0.0, "")
    worker = Worker()
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="cxr-fuzz-") as tmp:
            path = Path(tmp) / "mutant.bin"
            for name in names:  # warm-up: lazy imports of each decoder are not a file's cost
                path.write_bytes(seeds[name])
                worker.run(str(path), max(max_pixels, 8192 * 8192), timeout)
            for i in range(mutants):
                name = names[i % len(names)]
                rng = random.Random(f"{seed}:{i}")
                kind = KINDS[rng.randrange(len(KINDS))]
                data = mutate(seeds[name], kind, rng)
                path.write_bytes(data)
                result = worker.run(str(path), max_pixels, timeout)
                outcome = result.get("outcome", "crash")
                outcomes[outcome] += 1
                label = f"{name} #{i} ({kind})"
                if outcome in ("uncaught", "hang", "crash"):
                    problems.append({"mutant": label, "outcome": outcome, **result})
                if result.get("peak_kb") is not None:
                    peak = result["peak_kb"] * 1024
                    allowance = peak_memory_allowance(max_pixels, len(data))
                    peaks.append((peak / allowance, label, peak))
                    if peak > allowance:
                        problems.append({"mutant": label, "outcome": "over budget", "peak": peak})
                if result.get("seconds", 0) > slowest[0]:
                    slowest = (result["seconds"], label)
                if progress and (i + 1) % 500 == 0:
                    progress(f"{i + 1}/{mutants} mutants, {dict(outcomes)}")
    finally:
        worker.close()
    peaks.sort()
    top = peaks[-1] if peaks else (0.0, "", 0)
    return {
        "mutants": mutants,
        "seed": seed,
        "seeds": names,
        "max_pixels": max_pixels,
        "decoded_budget_bytes": decoded_budget(max_pixels),
        "peak_memory_measured": worker.hwm,
        "outcomes": dict(outcomes),
        "uncaught": outcomes["uncaught"],
        "hangs": outcomes["hang"],
        "crashes": outcomes["crash"],
        "over_budget": sum(1 for p in problems if p["outcome"] == "over budget"),
        "peak_bytes_max": top[2],
        "peak_over_allowance_max": round(top[0], 4),
        "peak_worst_file": top[1],
        "peak_bytes_p50": peaks[len(peaks) // 2][2] if peaks else 0,
        "peak_bytes_p99": peaks[int(len(peaks) * 0.99)][2] if peaks else 0,
        "slowest_seconds": round(slowest[0], 3),
        "slowest_file": slowest[1],
        "wall_seconds": round(time.perf_counter() - started, 1),
        "problems": problems[:50],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mutants", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-pixels", type=int, default=2048 * 2048)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds before a file is a hang")
    p.add_argument("--shared", action="store_true", help="also mutate ../shared/data DICOMs")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker()
        return 0
    summary = run_fuzz(
        args.mutants,
        args.seed,
        args.max_pixels,
        args.timeout,
        args.shared,
        progress=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        mib = 2**20
        print(f"mutants            {summary['mutants']} (seed {summary['seed']})")
        print(f"outcomes           {summary['outcomes']}")
        print(f"uncaught errors    {summary['uncaught']}")
        print(f"hangs              {summary['hangs']} (timeout {args.timeout:g} s)")
        print(f"crashes            {summary['crashes']}")
        print(
            f"peak memory/file   max {summary['peak_bytes_max'] / mib:.1f} MiB, p99 "
            f"{summary['peak_bytes_p99'] / mib:.1f} MiB, p50 {summary['peak_bytes_p50'] / mib:.1f}"
            f" MiB; worst = {summary['peak_over_allowance_max']:.2f} × its allowance "
            f"({summary['peak_worst_file']})"
        )
        print(f"over budget        {summary['over_budget']}")
        print(f"slowest file       {summary['slowest_seconds']} s ({summary['slowest_file']})")
        print(f"wall time          {summary['wall_seconds']} s")
        for problem in summary["problems"]:
            print("PROBLEM", json.dumps(problem))
    bad = summary["uncaught"] + summary["hangs"] + summary["crashes"] + summary["over_budget"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
