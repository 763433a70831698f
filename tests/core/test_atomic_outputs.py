"""Output files are whole or absent, owner-only, and a full disk is one line.

Issue 26, items 7, 11 (disk full) and 12 (file modes): a process SIGKILLed while writing
DICOM results leaves no short file under a final name; a full disk gives one line naming the
file, "disk full" and the free space, and leaves no temporary file; every output file has the
mode of the policy (0600).
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from cxr_viewer.core.errors import DicomExportError
from cxr_viewer.core.interop import dicom_export as de
from cxr_viewer.core.io import atomic


def _big_dataset(n_bytes: int) -> pydicom.Dataset:
    """A valid Part 10 Secondary Capture with ``n_bytes`` of 8-bit pixel data."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    side = int(np.sqrt(n_bytes))
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Rows = ds.Columns = side
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 8, 8, 7
    ds.PixelRepresentation, ds.PhotometricInterpretation = 0, "MONOCHROME2"
    ds.PixelData = (np.arange(side * side) % 251).astype(np.uint8).tobytes()
    return ds


def test_dicom_results_killed_mid_write_leave_no_short_file(tmp_path):
    """SIGKILL a process that writes 8 MB DICOM files one after another: every ``.dcm`` left
    is complete (before: the file being written stayed, 0 bytes or short, 6 kills in 6)."""
    out = tmp_path / "out"
    out.mkdir()
    child = textwrap.dedent(
        f"""
        from pathlib import Path
        from tests.core.test_atomic_outputs import _big_dataset
        from cxr_viewer.core.interop import dicom_export as de
        ds = _big_dataset(8 * 2**20)
        out = Path({str(out)!r})
        for i in range(1000):
            de._save(ds, out / f"sc{{i}}.dcm")
        """
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", child], cwd=root)
    try:
        deadline = time.monotonic() + 60
        while not (out / "sc1.dcm").exists():  # two files written: the loop is in full swing
            assert proc.poll() is None, "the writer exited early"
            assert time.monotonic() < deadline, "the writer wrote nothing in 60 s"
            time.sleep(0.01)
        time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    finals = sorted(out.glob("sc*.dcm"))
    assert len(finals) >= 2
    size = finals[0].stat().st_size
    for path in finals:
        assert path.stat().st_size == size, f"{path.name} is short"
        assert len(pydicom.dcmread(path).PixelData) == len(_big_dataset(8 * 2**20).PixelData)
    # at most the one file being written when killed, under its temporary name
    leftovers = [p.name for p in out.iterdir() if p not in finals]
    assert len(leftovers) <= 1 and all(n.startswith(atomic.TMP_PREFIX) for n in leftovers)


def test_full_disk_is_one_line_naming_the_file_and_free_space(tmp_path, monkeypatch):
    """A full disk while syncing a DICOM result: one line with the file, "disk full", the free
    space and what to do; no traceback, no temporary file, no final file."""

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", full)
    target = tmp_path / "x_gradcam_SC.dcm"
    with pytest.raises(DicomExportError) as info:
        de._save(_big_dataset(4096), target)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert str(target) in message and "the disk is full" in message
    assert "free on" in message and "choose an output folder on another disk" in message
    assert list(tmp_path.iterdir()) == []


def test_a_library_error_with_an_embedded_traceback_still_reads_as_one_line(tmp_path):
    """pydicom re-raises a write error as ``OSError("With tag ... [Errno 28] ... Traceback
    ...")`` (no errno): still recognised as a full disk, described without the traceback."""
    wrapped = OSError(
        "With tag (7FE0,0010) got exception: [Errno 28] No space left on device\n"
        'Traceback (most recent call last):\n  File "filewriter.py", line 736\n'
    )
    assert atomic.is_disk_full(wrapped)
    line = str(atomic.write_error(tmp_path / "a.dcm", wrapped))
    assert "Traceback" not in line and "\n" not in line and "the disk is full" in line
    other = str(atomic.write_error(tmp_path / "a.dcm", OSError(errno.EACCES, "Permission denied")))
    assert "Permission denied" in other and "disk is full" not in other


def test_every_output_file_has_the_one_mode(tmp_path):
    """DICOM results, batch overlays/maps/CSV and the journal: 0600 whatever the umask."""
    from cxr_viewer.commands.batch_output import OutputWriter

    old = os.umask(0o022)
    try:
        de._save(_big_dataset(4096), tmp_path / "a_SR.dcm")
        writer = OutputWriter(tmp_path, ["file", "status", "map_x"])
        row = {"file": "a.png", "status": "ok"}
        writer.save(row, "map_x", "a_x.npy", lambda p: np.save(p, np.zeros(3)))
        journal = tmp_path / "predictions.csv.partial"
        assert stat.S_IMODE(journal.stat().st_mode) == atomic.OUTPUT_FILE_MODE
        writer.add_row(row)
        writer.close()
    finally:
        os.umask(old)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["a_SR.dcm", "a_x.npy", "predictions.csv"]
    for p in tmp_path.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == atomic.OUTPUT_FILE_MODE, p.name
