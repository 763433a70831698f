"""Start-up: the window is shown (and a study drawn) without importing TensorFlow.

Runs the real entry point's ``build`` in a fresh process with ``--no-model``, so nothing may
import TensorFlow, keras, shap or lime; the timing figures live in benchmarks/bench_startup.py.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

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


def test_window_and_first_image_without_tensorflow(tmp_path, studies_dir):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", CXR_LENS_SETTINGS=str(tmp_path / "s.ini"))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(studies_dir / "phantom0.png")],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-2000:]
    out = json.loads(lines[-1][7:])
    assert out["heavy_at_shown"] == [] and out["heavy_at_drawn"] == []
    assert out["drawn"] and out["visible"]
    assert out["model_status"] == "none"  # --no-model: the app says so, predicts nothing
