"""``--quit-after`` / ``--quit-when-ready``: the viewer closes by itself, cleanly, and exits 0.

Runs the real entry point (``python -m cxr_viewer``) offscreen in a fresh process, as a smoke
test of an install would. "Cleanly" means exit code 0, no traceback or error in the log, and
every worker thread stopped when asked (``worker.shutdown`` logs when one did not).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: what the log (``%(asctime)s %(levelname)s %(name)s: ...``) or Python print on a failure
FAILURE = re.compile(r"Traceback|^\S+ \S+ (ERROR|CRITICAL) |did not stop within|task failed", re.M)


def _run(args: list[str], tmp_path: Path, timeout: float) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        QT_QPA_PLATFORM="offscreen",
        CXR_LENS_SETTINGS=str(tmp_path / "settings.ini"),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    return subprocess.run(
        [sys.executable, "-m", "cxr_viewer", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
    )


def test_quit_after_without_model_exits_zero(tmp_path):
    done = _run(["--no-model", "--quit-after", "3"], tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    assert not FAILURE.search(done.stderr), done.stderr[-4000:]
    assert "closing by itself: 3 s passed" in done.stderr
    assert (tmp_path / "settings.ini").is_file()  # the window's own close ran (settings saved)


@pytest.mark.slow
def test_quit_when_ready_with_demo_bundle_exits_zero(tmp_path):
    bundle = ROOT / "resources" / "demo_bundle"
    if not (bundle / "metadata.json").is_file():
        pytest.skip(f"no demo bundle at {bundle}")
    # quits as soon as the model is loaded and warmed up; 600 s is only the upper bound
    done = _run(
        ["--model", str(bundle), "--quit-when-ready", "--quit-after", "600"], tmp_path, timeout=700
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert not FAILURE.search(done.stderr), done.stderr[-4000:]
    assert "closing by itself: the model is ready" in done.stderr


def test_quit_when_ready_reports_a_broken_bundle(tmp_path):
    broken = tmp_path / "broken_bundle"
    broken.mkdir()
    (broken / "metadata.json").write_text("{not json", encoding="utf-8")
    done = _run(
        ["--model", str(broken), "--quit-when-ready", "--quit-after", "300"], tmp_path, timeout=400
    )
    assert done.returncode == 1, done.stderr[-4000:]
    assert "closing by itself: no model is ready (failed" in done.stderr
    assert "Traceback (most recent call last)" not in done.stderr.split("closing by itself")[-1]


def test_quit_after_rejects_a_non_positive_time():
    from cxr_viewer.cli import _gui_parser

    for bad in ("0", "-1", "soon", "inf", "nan"):
        with pytest.raises(SystemExit):
            _gui_parser().parse_args(["--quit-after", bad])
    assert _gui_parser().parse_args(["--quit-after", "2.5"]).quit_after == 2.5
