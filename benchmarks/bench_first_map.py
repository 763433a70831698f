"""First launch to first map: process start → the first Grad-CAM map painted on screen.

Runs ``cxr-viewer`` as a first launch does (no arguments, fresh settings through
``$CXR_LENS_SETTINGS``: the sample films, the demo bundle, the grid with Grad-CAM shown) in
fresh processes, offscreen unless ``--display``, and times each phase from the moment the
process is started: window shown, first image drawn, model ready, the Grad-CAM map painted
(the first paint of its pane with the map on it). Two kinds of launch:

* **cold** — an empty forward-path cache (a new ``$CXR_FORWARD_CACHE`` folder each run), so
  the model's forward paths are measured again as on an install's very first start;
* **warm** — the forward-path cache a cold run filled, and the files in the OS page cache.

The baseline, measured in the same run and interleaved with the launches, is a bare
``python -c "import tensorflow"``: the figure to compare with is how many TensorFlow imports
the whole first launch costs.

    python benchmarks/bench_first_map.py [--runs 3] [--model BUNDLE] [--display]
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
PHASES = (
    ("t_shown", "window shown"),
    ("t_first_image", "first image drawn"),
    ("t_model_ready", "model ready"),
    ("t_map_painted", "Grad-CAM map painted"),
)


def _child(model: str | None, timeout_s: float) -> None:
    """One first launch; prints ``RESULT {json}`` with the wall-clock time of each phase."""
    from PySide6.QtCore import QEvent, QObject, QTimer  # noqa: TID251 - benchmarks the GUI

    from cxr_viewer.gui.app import build

    out: dict = {}
    app, win = build(argparse.Namespace(paths=[], model=model, no_model=False))
    out["first_launch"] = win.settings.fresh
    pane = win.panes["gradcam"]

    def finish() -> None:
        out["study"] = win.state.study.path.name if win.state.study is not None else None
        out["layout"] = win.state.layout
        pred = win.state.prediction
        out["predicted"] = pred.predicted_class if pred is not None else None
        out["forward_path"] = win.state.model.forward_path if win.state.model else None
        win.close()
        app.quit()

    class Painted(QObject):
        def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt API
            item = pane.overlay_item("gradcam")
            if (
                "t_map_painted" not in out
                and event.type() == QEvent.Type.Paint
                and item is not None
                and item.isVisible()
                and not item.pixmap().isNull()
            ):
                out["t_map_painted"] = time.time()
                QTimer.singleShot(0, finish)  # after this paint
            return False

    spy = Painted()
    pane.viewport().installEventFilter(spy)

    def model_changed() -> None:
        if win.state.model is not None:
            out.setdefault("t_model_ready", time.time())
        elif win.state.model_status == "failed":
            out["model_failed"] = win.state.model_message
            finish()

    win.display.firstImageDrawn.connect(lambda: out.setdefault("t_first_image", time.time()))
    win.state.events.model.connect(model_changed)
    QTimer.singleShot(0, lambda: out.setdefault("t_shown", time.time()))
    QTimer.singleShot(int(timeout_s * 1000), finish)
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
    res = {k: (v - t0 if k.startswith("t_") else v) for k, v in res.items()}
    res["t_exit"] = time.time() - t0
    return res


def _import_tensorflow(env: dict) -> float:
    t0 = time.time()
    subprocess.run(
        [sys.executable, "-c", "import tensorflow"],
        check=True,
        env=env,
        cwd=ROOT,
        capture_output=True,  # TensorFlow's start-up chatter
    )
    return time.time() - t0


def _row(label: str, values: list[float], base: float) -> str:
    m = statistics.median(values)
    runs = ", ".join(f"{v:.2f}" for v in values)
    return f"  {label:24s} {m:6.2f} s  ({m / base:4.2f}× import tensorflow; runs: {runs})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, help="launches of each kind (default 3)")
    p.add_argument("--model", help="bundle to load (default: the demo bundle)")
    p.add_argument("--display", action="store_true", help="use the real display, not offscreen")
    p.add_argument("--timeout", type=float, default=300.0, help="per launch, seconds")
    p.add_argument("--json", help="also write the figures here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _child(args.model, args.timeout)
        return 0

    tmp = tempfile.TemporaryDirectory()
    env = dict(os.environ)
    if not args.display:
        env["QT_QPA_PLATFORM"] = "offscreen"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    child = ["--child", "--timeout", str(args.timeout)] + (
        ["--model", args.model] if args.model else []
    )
    base: list[float] = []
    runs: dict[str, list[dict]] = {"cold": [], "warm": []}
    for i in range(args.runs):
        base.append(_import_tensorflow(env))
        cache = Path(tmp.name) / f"forward-cache-{i}"
        for kind in ("cold", "warm"):  # warm: the cache the cold launch just filled
            settings = Path(tmp.name) / f"settings-{kind}-{i}.ini"  # fresh: a first launch
            run_env = dict(env, CXR_LENS_SETTINGS=str(settings), CXR_FORWARD_CACHE=str(cache))
            res = _launch(child, run_env)
            if "t_map_painted" not in res:
                raise SystemExit(f"{kind} launch painted no Grad-CAM map: {res}")
            runs[kind].append(res)
    b = statistics.median(base)
    first = runs["cold"][0]
    print(
        f"bench_first_map: {args.runs} run(s) of each, {'display' if args.display else 'offscreen'}"
    )
    print(
        f"first launch: {first['study']} ({first['layout']} layout), predicted "
        f"{first['predicted']}, forward path {first['forward_path']}"
    )
    print(f"baseline: python -c 'import tensorflow'  {b:.2f} s (runs: "
          f"{', '.join(f'{v:.2f}' for v in base)})")  # fmt: skip
    summary: dict = {"baseline_import_tensorflow_s": base}
    for kind in ("cold", "warm"):
        print(f"{kind} ({'empty' if kind == 'cold' else 'filled'} forward-path cache):")
        for key, label in PHASES:
            values = [r[key] for r in runs[kind] if key in r]
            if values:
                print(_row(label, values, b))
        summary[kind] = runs[kind]
    cold = statistics.median(r["t_map_painted"] for r in runs["cold"])
    warm = statistics.median(r["t_map_painted"] for r in runs["warm"])
    print(f"first map painted: cold {cold / b:.2f}×, warm {warm / b:.2f}× import tensorflow")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
