"""TensorFlow's import on a worker thread: native libraries preloaded without the GIL.

Each check runs in a fresh interpreter (this process has long imported TensorFlow).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, sys, threading, time
from cxr_viewer.core.model.model_io import import_tensorflow, preload_tensorflow_libraries
out = {}
count, done = [0], threading.Event()
def spin():  # needs the GIL ~1000 times a second
    while not done.is_set():
        count[0] += 1
        time.sleep(0.001)
t = threading.Thread(target=spin); t.start()
if sys.argv[1] == "preload":
    t0, c0 = time.perf_counter(), count[0]
    out["loaded"] = [p.rsplit("/", 1)[-1] for p in preload_tensorflow_libraries()]
    out["preload_s"], out["ticks_during_preload"] = time.perf_counter() - t0, count[0] - c0
    out["tf_after_preload"] = "tensorflow" in sys.modules
done.set(); t.join()
tf = import_tensorflow()
out["sum"] = float(tf.reduce_sum(tf.constant([1.0, 2.0, 3.0])))
out["again_after_import"] = preload_tensorflow_libraries()
print("RESULT " + json.dumps(out))
"""


def _run(mode: str, **env) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, mode],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **env),
        cwd=ROOT,
        timeout=300,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-2000:]
    return json.loads(lines[-1][7:])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the preload is Linux-only")
def test_preload_loads_the_libraries_and_tensorflow_then_works():
    pytest.importorskip("tensorflow")
    out = _run("preload")
    assert out["loaded"] == ["libtensorflow_framework.so.2", "libtensorflow_cc.so.2"]
    assert out["tf_after_preload"] is False  # only the native libraries, not the package
    # the GIL was free while they loaded (~0.5 s): the other thread kept running; with the
    # GIL held for the whole load it would not have ticked at all
    assert out["ticks_during_preload"] >= 10, out
    assert out["sum"] == 6.0
    assert out["again_after_import"] == []  # nothing to do once TensorFlow is imported


def test_tensorflow_imports_without_the_preload_too():
    pytest.importorskip("tensorflow")
    out = _run("plain", CXR_NO_TF_PRELOAD="1")
    assert out["sum"] == 6.0
