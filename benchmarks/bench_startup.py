"""Start-up of the viewer: launch → window shown → first image drawn → model ready.

Runs the viewer in fresh processes (offscreen unless ``--display``) and prints, per phase, the
median over ``--runs`` launches, plus the ratio to a baseline measured in the same run: a bare
PySide6 process that shows an empty QMainWindow. It also checks that TensorFlow is not in
``sys.modules`` when the window is shown (the window must never wait ~4 s for it), and
records the longest event-loop stall (5 ms timer) from window shown until the model is ready,
with and without the GIL-free preload of TensorFlow's native libraries (``CXR_NO_TF_PRELOAD``).

    python benchmarks/bench_startup.py [--runs 3] [--study PATH] [--model BUNDLE] [--display]

Exit status 1 if TensorFlow was imported before the window was shown.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _child_viewer(study: str, model: str | None, timeout_s: float) -> None:
    t_import = time.time()
    from PySide6.QtCore import Qt, QTimer  # noqa: TID251 - benchmarks the GUI itself

    from cxr_viewer.gui.app import build

    args = argparse.Namespace(paths=[study], model=model, no_model=model is None)
    out: dict = {"t_import": t_import}
    app, win = build(args)
    gaps: list[float] = []
    last = [0.0]
    drawn_gaps = [0]  # number of ticks measured before the first image was drawn

    def tick() -> None:
        now = time.perf_counter()
        if last[0]:
            gaps.append(now - last[0])
        last[0] = now

    def shown() -> None:
        out["t_shown"] = time.time()
        out["tf_at_shown"] = "tensorflow" in sys.modules
        out["keras_at_shown"] = "keras" in sys.modules
        timer.start(5)

    def drawn() -> None:
        if "t_first_image" not in out:
            drawn_gaps[0] = len(gaps)
        out.setdefault("t_first_image", time.time())
        maybe_done()

    def model_changed() -> None:
        if win.state.model is not None:
            out.setdefault("t_model_ready", time.time())
            out["device"] = win.state.model.device
        elif win.state.model_status == "failed":
            out["model_failed"] = win.state.model_message
        maybe_done()

    def maybe_done() -> None:
        model_done = model is None or "t_model_ready" in out or "model_failed" in out
        if "t_first_image" in out and model_done:
            out["max_stall_ms"] = max(gaps) * 1000 if gaps else None
            before, after = gaps[: drawn_gaps[0] + 1], gaps[drawn_gaps[0] + 1 :]
            out["stall_until_first_image_ms"] = max(before) * 1000 if before else None
            out["stall_after_first_image_ms"] = max(after) * 1000 if after else None
            out["p99_stall_ms"] = (
                (sorted(gaps)[int(0.99 * (len(gaps) - 1))] * 1000) if gaps else None
            )
            win.close()
            app.quit()

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.timeout.connect(tick)
    win.display.firstImageDrawn.connect(drawn)
    win.state.events.model.connect(model_changed)
    QTimer.singleShot(0, shown)
    QTimer.singleShot(int(timeout_s * 1000), app.quit)
    app.exec()
    print("RESULT " + json.dumps(out), flush=True)


def _child_baseline() -> None:
    from PySide6.QtCore import QTimer  # noqa: TID251
    from PySide6.QtWidgets import QApplication, QMainWindow  # noqa: TID251

    app = QApplication([])
    win = QMainWindow()
    win.resize(1400, 900)
    win.show()
    out: dict = {}

    def shown() -> None:
        out["t_shown"] = time.time()
        win.close()
        app.quit()

    QTimer.singleShot(0, shown)
    app.exec()
    print("RESULT " + json.dumps(out), flush=True)


def _launch(argv: list[str], env: dict) -> dict:
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, __file__, *argv], capture_output=True, text=True, env=env, cwd=ROOT
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    res = json.loads(lines[-1][7:])
    return {k: (v - t0 if k.startswith("t_") else v) for k, v in res.items()}


def _phantom(path: Path) -> None:
    import cv2
    import numpy as np

    n = 2048
    y, x = np.mgrid[0:n, 0:n] / n
    img = 0.15 + 0.6 * np.exp(-(((x - 0.32) / 0.14) ** 2 + ((y - 0.5) / 0.28) ** 2))
    img += 0.6 * np.exp(-(((x - 0.68) / 0.14) ** 2 + ((y - 0.5) / 0.28) ** 2))
    cv2.imwrite(str(path), (np.clip(img, 0, 1) * 65535).astype(np.uint16))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--study", help="image to open (default: a 2048² 16-bit phantom PNG)")
    p.add_argument("--model", help="bundle to load (default: the demo bundle if present)")
    p.add_argument("--display", action="store_true", help="use the real display, not offscreen")
    p.add_argument("--timeout", type=float, default=180.0)
    p.add_argument(
        "--no-preload-compare",
        action="store_true",
        help="skip the runs without the TensorFlow library preload (CXR_NO_TF_PRELOAD=1)",
    )
    p.add_argument("--child", choices=["viewer", "baseline"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child == "viewer":
        _child_viewer(args.study, args.model, args.timeout)
        return 0
    if args.child == "baseline":
        _child_baseline()
        return 0

    from cxr_viewer.core.paths import demo_bundle_dir

    env = dict(os.environ)
    if not args.display:
        env["QT_QPA_PLATFORM"] = "offscreen"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tmp = tempfile.TemporaryDirectory()
    env["CXR_LENS_SETTINGS"] = str(Path(tmp.name) / "settings.ini")
    study = args.study
    if not study:
        study = str(Path(tmp.name) / "phantom-2048-16bit.png")
        _phantom(Path(study))
    model = args.model or (str(demo_bundle_dir()) if demo_bundle_dir().exists() else None)
    viewer_argv = ["--child", "viewer", "--study", study, "--timeout", str(args.timeout)]
    if model:
        viewer_argv += ["--model", model]

    base, runs, no_preload = [], [], []
    env_no_preload = dict(env, CXR_NO_TF_PRELOAD="1")
    for _ in range(args.runs):
        base.append(_launch(["--child", "baseline"], env)["t_shown"])
        runs.append(_launch(viewer_argv, env))
        if model and not args.no_preload_compare:
            no_preload.append(_launch(viewer_argv, env_no_preload))
    b = statistics.median(base)
    print(f"study: {study}\nmodel: {model or '(none: --no-model)'}\nruns: {args.runs}")
    print(f"baseline (bare PySide6 window shown): {b:.2f} s")
    for key, label in (
        ("t_shown", "window shown"),
        ("t_first_image", "first image drawn"),
        ("t_model_ready", "model loaded + warmed up"),
    ):
        vals = [r[key] for r in runs if key in r]
        if vals:
            m = statistics.median(vals)
            print(
                f"{label:28s} {m:6.2f} s   ({m / b:4.1f}× baseline; runs: "
                f"{', '.join(f'{v:.2f}' for v in vals)})"
            )
    stalls = [r["max_stall_ms"] for r in runs if r.get("max_stall_ms") is not None]
    if stalls:
        print(
            f"longest event-loop stall, shown → ready: {max(stalls):.0f} ms "
            f"(median of runs {statistics.median(stalls):.0f} ms; p99 "
            f"{statistics.median(r['p99_stall_ms'] for r in runs if r.get('p99_stall_ms')):.0f} ms)"
        )
    for key, label in (
        ("stall_until_first_image_ms", "shown → first image drawn"),
        ("stall_after_first_image_ms", "first image → model ready (TensorFlow import, load)"),
    ):
        vals = [r[key] for r in runs if r.get(key) is not None]
        if vals:
            print(f"  longest stall, {label}: {', '.join(f'{v:.0f}' for v in vals)} ms")
    old = [r["max_stall_ms"] for r in no_preload if r.get("max_stall_ms") is not None]
    if stalls and old:
        print(
            f"  same without the GIL-free TensorFlow preload (CXR_NO_TF_PRELOAD=1): "
            f"{max(old):.0f} ms (median {statistics.median(old):.0f} ms; runs: "
            f"{', '.join(f'{v:.0f}' for v in old)}) → "
            f"{statistics.median(old) / max(statistics.median(stalls), 1e-3):.1f}× longer"
        )
    if any("model_failed" in r for r in runs):
        print("model failed to load:", runs[0].get("model_failed"))
    tf_early = [r["tf_at_shown"] for r in runs]
    print(f"tensorflow imported before the window was shown: {any(tf_early)}")
    if runs and "device" in runs[0]:
        print(f"device: {runs[0]['device']}")
    return 1 if any(tf_early) else 0


if __name__ == "__main__":
    sys.exit(main())
