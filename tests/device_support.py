"""Helpers of the device tests (``tests/core/test_device.py``, ``tests/test_gpu.py``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_PNG = ROOT / "resources" / "samples" / "phantom_selftest.png"
#: what TensorFlow prints at start-up that the user must not see without --verbose
NOISE = re.compile(
    r"absl::InitializeLog|^[IW]\d{4} |oneDNN custom operations|cuInit|cuda drivers"
    r"|rebuild TensorFlow with the appropriate compiler flags|Unable to register cu\w+ factory",
    re.MULTILINE,
)


def _child(code: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter at the repository root (this copy of the code)."""
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), TQDM_DISABLE="1")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, *(["-c", code] if code else []), *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=ROOT,
        timeout=600,
    )


def _result(proc: subprocess.CompletedProcess) -> dict:
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][7:])
