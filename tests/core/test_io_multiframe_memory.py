"""A multi-frame DICOM costs one frame of memory, not the file (issue 26 item 12).

Before: a 393 MB multi-frame file took 441 MB in ``cxr-viewer info`` and 899 MB in the
viewer, because the whole Pixel Data element was read before one frame was decoded. Now the
reader leaves large values in the file and reads the asked frame only (native: at its offset;
encapsulated: by walking the fragments). Measured here with tracemalloc on a 12 MB file built
in the test; the frame is 0.5 MB.
"""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
from test_io_samples import dicom_bytes, dicom_dataset, rle_dicom_bytes

from cxr_viewer.cli import main
from cxr_viewer.core.io import load_study

FRAMES, SIDE = 24, 512


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(5)
    return (rng.random((FRAMES, SIDE, SIDE)) * 4095).astype(np.uint16)


def _peak(fn):
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("encoding", ["native", "rle"])
def test_one_frame_of_a_multi_frame_file_costs_one_frame(tmp_path, frames, encoding):
    data = (
        dicom_bytes(dicom_dataset(frames, frames=FRAMES))
        if encoding == "native"
        else rle_dicom_bytes(frames[:8], frames=8)
    )
    path = tmp_path / f"{encoding}.dcm"
    path.write_bytes(data)
    load_study(path, frame=0)  # the first read imports the decoder plugins: not measured
    study, peak = _peak(lambda: load_study(path, frame=5))
    np.testing.assert_array_equal(study.pixels, frames[5].astype(np.float32))
    assert study.n_frames == (FRAMES if encoding == "native" else 8)
    # the frame (0.5 MB), its float32 copy and the automatic window's work: about 4 MB
    # (before: the whole pixel data, 12.6 MB native / 4.2 MB RLE, plus all that)
    assert peak < 10 * SIDE * SIDE * 2
    assert peak < len(data) // 2 if encoding == "native" else peak < len(data)


def test_info_on_a_multi_frame_file_reads_one_frame(tmp_path, frames, capsys):
    path = tmp_path / "multi.dcm"
    path.write_bytes(dicom_bytes(dicom_dataset(frames, frames=FRAMES)))
    assert main(["info", str(path)]) == 0  # imports and plugins: not measured
    capsys.readouterr()
    code, peak = _peak(lambda: main(["info", str(path)]))
    record = json.loads(capsys.readouterr().out)
    assert code == 0 and record["frames"] == FRAMES and record["rows"] == SIDE
    assert peak < path.stat().st_size // 2  # before: the whole 12 MB of pixel data and more


def test_a_truncated_multi_frame_file_is_a_clear_error(tmp_path, frames):
    data = dicom_bytes(dicom_dataset(frames, frames=FRAMES))
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[: len(data) // 2])
    assert np.array_equal(load_study(path, frame=2).pixels, frames[2].astype(np.float32))
    with pytest.raises(Exception) as err:
        load_study(path, frame=FRAMES - 1)  # past the end of what is left
    assert type(err.value).__name__ == "CorruptFileError"
    assert "Cannot" in str(err.value)
