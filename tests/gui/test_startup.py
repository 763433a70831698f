"""Start-up: the window is shown (and a study drawn) without importing TensorFlow.

Runs the real entry point's ``build`` in a fresh process with ``--no-model``, so nothing may
import TensorFlow, keras, shap or lime; the timing figures live in benchmarks/bench_startup.py.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import argparse, json, sys
from PySide6.QtCore import QTimer
from cxr_viewer.gui.app import build
args = argparse.Namespace(paths=[sys.argv[1]], model=None, no_model=True)
app, win = build(args)
out = {}
def shown():
    out["heavy_at_shown"] = [m for m in ("tensorflow", "keras", "shap", "lime") if m in sys.modules]
def drawn():
    out["drawn"] = True
    out["heavy_at_drawn"] = [m for m in ("tensorflow", "keras", "shap", "lime") if m in sys.modules]
    out["model_status"] = win.state.model_status
    out["visible"] = win.isVisible()
    win.close(); app.quit()
win.display.firstImageDrawn.connect(drawn)
QTimer.singleShot(0, shown)
QTimer.singleShot(30000, app.quit)
app.exec()
print("RESULT " + json.dumps(out))
"""


def _run_child(script: str, *argv: str, settings: Path, timeout: float) -> dict:
    """Run ``script`` in a fresh offscreen interpreter; its ``RESULT {json}`` line, parsed."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", CXR_LENS_SETTINGS=str(settings))
    env.pop("CXR_NO_TF_PRELOAD", None)
    proc = subprocess.run(
        [sys.executable, "-c", script, *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-2000:]
    return json.loads(lines[-1][7:])


def test_window_and_first_image_without_tensorflow(tmp_path, studies_dir):
    out = _run_child(
        CHILD, str(studies_dir / "phantom0.png"), settings=tmp_path / "s.ini", timeout=120
    )
    assert out["heavy_at_shown"] == [] and out["heavy_at_drawn"] == []
    assert out["drawn"] and out["visible"]
    assert out["model_status"] == "none"  # --no-model: the app says so, predicts nothing


STALL_CHILD = r"""
import argparse, json, sys, time
from PySide6.QtCore import Qt, QTimer
from cxr_viewer.gui.app import build
args = argparse.Namespace(paths=[sys.argv[1]], model=sys.argv[2], no_model=False)
app, win = build(args)
gaps, last, out = [], [0.0], {}
def tick():
    now = time.perf_counter()
    if last[0]:
        gaps.append(now - last[0])
    last[0] = now
def shown():
    out["tf_at_shown"] = "tensorflow" in sys.modules
    timer.start(5)
def model_changed():
    if win.state.model is not None or win.state.model_status == "failed":
        timer.stop()
        out["status"] = win.state.model_status
        out["tf_loaded"] = "tensorflow" in sys.modules
        out["ticks"] = len(gaps)
        out["longest_ms"] = max(gaps) * 1000 if gaps else None
        out["p99_ms"] = sorted(gaps)[int(0.99 * (len(gaps) - 1))] * 1000 if gaps else None
        win.close(); app.quit()
timer = QTimer()
timer.setTimerType(Qt.TimerType.PreciseTimer)
timer.timeout.connect(tick)
win.state.events.model.connect(model_changed)
QTimer.singleShot(0, shown)
QTimer.singleShot(150000, app.quit)
app.exec()
print("RESULT " + json.dumps(out))
"""


@pytest.mark.perf
def test_event_loop_never_stalls_while_tensorflow_and_the_model_load(tmp_path, studies_dir):
    """Longest gap between 5 ms timer ticks from window shown to model ready < 50 ms.

    A fresh process, so TensorFlow really is imported (on the worker) during the measurement:
    without :func:`cxr_viewer.core.model.model_io.preload_tensorflow_libraries` the import froze the
    window for 0.6–1.4 s while ``libtensorflow_cc`` loaded under the interpreter lock. As in
    the explanation test, a busy machine can starve any process now and then, so up to three
    launches are made and the best counts.
    """
    from cxr_viewer.core.paths import demo_bundle_dir

    study, bundle = str(studies_dir / "phantom0.png"), str(demo_bundle_dir())
    runs = []
    for _ in range(3):
        out = _run_child(STALL_CHILD, study, bundle, settings=tmp_path / "s.ini", timeout=200)
        assert out["status"] == "ready" and out["tf_loaded"] and not out["tf_at_shown"], out
        assert out["ticks"] > 100, out  # the load took long enough to be measured
        runs.append(out)
        if out["longest_ms"] < 50:
            break
    report = "; ".join(
        f"{r['ticks']} ticks, longest {r['longest_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms"
        for r in runs
    )
    print(f"\nevent loop while TensorFlow and the model load: {report}")
    assert min(r["longest_ms"] for r in runs) < 50, f"stalled in every launch: {report}"
