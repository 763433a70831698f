"""A short run of ``benchmarks/fuzz_loaders.py`` in the default suite: no uncaught error, no
hang, no crash, and every mutant's peak memory under its allowance.

The mutants (cuts, byte flips, random sizes in SOF/SIZ/IHDR/Rows/Columns, inserted and zeroed
runs) are seeded, so CI sees the same files every run. Each file is read in a worker process
whose peak resident memory is reset and measured per file (Linux); the long run (10,000+
mutants) is the benchmark itself.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "fuzz_loaders.py"


@pytest.fixture(scope="module")
def fuzz():
    spec = importlib.util.spec_from_file_location("fuzz_loaders", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mutants_load_or_fail_cleanly_within_the_memory_budget(fuzz):
    summary = fuzz.run_fuzz(240, seed=15, max_pixels=1_000_000, timeout=120.0)
    assert summary["uncaught"] == 0, summary["problems"]
    assert summary["hangs"] == 0 and summary["crashes"] == 0, summary["problems"]
    assert summary["over_budget"] == 0, summary["problems"]
    outcomes = summary["outcomes"]
    assert outcomes.get("loaded", 0) > 10 and outcomes.get("CorruptFileError", 0) > 10
    assert outcomes.get("ImageTooLargeError", 0) > 10  # the size mutations reach the limits
    if summary["peak_memory_measured"]:  # Linux, unless /proc/self/clear_refs is forbidden
        assert summary["peak_bytes_max"] > 0
    else:
        assert not sys.platform.startswith("linux") or not os.access(
            "/proc/self/clear_refs", os.W_OK
        )


def test_size_mutation_writes_into_the_frame_headers(fuzz):
    import random

    seeds = fuzz.seed_files()
    for name in ("png8", "dicom-jpeg", "dicom-j2k", "dicom-jls", "dicom"):
        data = seeds[name]
        changed = {fuzz.mutate(data, "sizes", random.Random(i)) for i in range(20)}
        assert len(changed) > 3 and all(len(m) == len(data) for m in changed), name
