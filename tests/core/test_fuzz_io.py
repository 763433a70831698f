"""Fuzz the reader: truncated and mutated PNG/JPEG/DICOM bytes only raise StudyLoadError.

Small valid files are built in the test (test_io_samples), then Hypothesis cuts them or
overwrites bytes (anywhere, or in the header where parsers branch most). Every outcome must be
a Study or a StudyLoadError subclass — no other exception type, no hang. Examples are
derandomised so CI sees the same cases every run; a SIGALRM guard (POSIX) stops a runaway
Python loop. This is a hang guard with a generous limit, not a speed assertion: speed is
measured in ``benchmarks/``, never asserted in the default run.
"""

from __future__ import annotations

import random
import signal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.sequence import Sequence
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

from cxr_viewer.core.errors import StudyLoadError
from cxr_viewer.core.io import load_study
from cxr_viewer.core.io.study import Study

EXAMPLES = 60
#: hang guard per example (a hang, not slowness, fails the test)
HANG_SECONDS = 60


def _windowed_dicom() -> bytes:
    from pydicom.dataset import Dataset

    ds = dicom_dataset(
        gradient(top=4095),
        photometric="MONOCHROME1",
        WindowCenter=[2048, 500],
        WindowWidth=[4096, 300],
        RescaleSlope=1,
        RescaleIntercept=-10,
    )
    item = Dataset()
    item.add_new(0x00283002, "US", [4096, 0, 16])
    item.add_new(0x00283006, "US", list(range(0, 65536, 16)))
    ds.VOILUTSequence = Sequence([item])
    return dicom_bytes(ds)


SEEDS = {
    "png8": lambda: png_bytes(gradient()),
    "png16": lambda: png_bytes(gradient(top=65535), 16),
    "png16-rgb": lambda: png_bytes(np.dstack([gradient(top=65535)] * 3), 16),
    "png-rgba": lambda: png_bytes(np.dstack([gradient()] * 3 + [np.full((24, 32), 255)])),
    "jpeg": lambda: pillow_bytes(gradient(), quality=90),
    "jpeg-exif": lambda: pillow_bytes(np.dstack([gradient()] * 3), exif=exif_orientation(6)),
    "dicom": _windowed_dicom,
    "dicom-rle": lambda: rle_dicom_bytes(gradient(top=4095)),
    "dicom-j2k": lambda: j2k_dicom_bytes(gradient(64, 64, top=4095)),
    "dicom-jpeg": lambda: jpeg_dicom_bytes(gradient()),
    "acr-nema": lambda: acr_nema_bytes(dicom_dataset(gradient(top=1023), bits_stored=10)),
}

# (kind, seed): positions and values come from random.Random(seed), so they are uniform over
# the file (Hypothesis' own integers favour small values and would hit the first bytes only).
mutations = st.tuples(st.sampled_from(["cut", "flip", "flip-header"]), st.integers(0, 2**32 - 1))


def _mutate(data: bytes, mutation) -> bytes:
    kind, seed = mutation
    rng = random.Random(seed)
    if kind == "cut":
        return data[: rng.randrange(len(data))]
    out = bytearray(data)
    span = min(len(out), 400) if kind == "flip-header" else len(out)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(span)] = rng.randrange(256)
    return bytes(out)


class _Hang(BaseException):
    """Raised by the alarm; a BaseException so no reader's `except Exception` swallows it."""


def _alarm(signum, frame):
    raise _Hang("load_study did not return")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module", autouse=True)
def alarm_handler():
    if not hasattr(signal, "SIGALRM"):
        yield
        return
    previous = signal.signal(signal.SIGALRM, _alarm)
    yield
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.filterwarnings("ignore")  # pydicom and Pillow warn about the damage they find
@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_damaged_files_raise_only_study_load_errors(seed, workdir):
    data = SEEDS[seed]()
    path = workdir / f"{seed}.bin"
    path.write_bytes(data)
    assert isinstance(load_study(path), Study)  # the undamaged seed itself loads

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(mutation=mutations)
    def check(mutation):
        path.write_bytes(_mutate(data, mutation))
        has_alarm = hasattr(signal, "SIGALRM")
        if has_alarm:
            signal.alarm(HANG_SECONDS)
        try:
            result = load_study(path, max_pixels=1_000_000)
            assert isinstance(result, Study)
        except StudyLoadError as exc:
            assert exc.what and exc.why, f"{type(exc).__name__} without a reason: {exc}"
        finally:
            if has_alarm:
                signal.alarm(0)

    check()
