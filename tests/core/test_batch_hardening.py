"""`cxr-viewer batch` under bad conditions: every per-file failure is a row and the run goes on.

Inputs are built in the test: name collisions (``a.jpg``/``a.png``, two CJK names),
a name that is not valid UTF-8, FIFOs and dangling links, NaN pixels, outputs that cannot be
written, an existing ``--out`` (refused / ``--resume`` / ``--overwrite``), Ctrl+C, and a run
killed mid-way (the journal it leaves is what ``--resume`` reads).
"""

from __future__ import annotations

import csv
import errno
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from explain_support import tiny_classifier
from PIL import Image
from test_io_samples import dicom_bytes, dicom_dataset

from cxr_viewer.cli import main
from cxr_viewer.commands import batch, batch_core, batch_output

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def bundle_root():
    pytest.importorskip("tensorflow")
    return tiny_classifier().bundle.root


def _png(path, seed=0, size=(32, 40)):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random(size) * 255).astype(np.uint8)).save(path)


def _run(src, out, bundle_root, *extra):
    argv = ["batch", os.fsdecode(src), "--model", str(bundle_root), "--out", str(out)]
    return main([*argv, "--explain", "gradcam", "--no-trust", "--quiet", *extra])


def _rows(out):
    with open(out / "predictions.csv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _by_name(rows):
    return {os.path.basename(r["file"]): r for r in rows}


def test_colliding_and_unicode_names_get_unique_recorded_outputs(tmp_path, bundle_root):
    src = tmp_path / "in"
    _png(src / "a.png", 1)
    Image.open(src / "a.png").convert("RGB").save(src / "a.jpg")
    _png(src / "A.PNG".lower().replace("a.png", "sub") / "a.png", 2)  # sub/a.png
    _png(src / "胸部.png", 3)
    _png(src / "肺.png", 4)
    out = tmp_path / "out"
    assert _run(src, out, bundle_root) == 0
    rows = _rows(out)
    assert len(rows) == 5 and all(r["status"] == "ok" for r in rows), rows
    overlays = [r["overlay_gradcam"] for r in rows]
    maps = [r["map_gradcam"] for r in rows]
    assert len({o.casefold() for o in overlays}) == 5 and len(set(maps)) == 5
    names = _by_name(rows)
    assert names["胸部.png"]["overlay_gradcam"] == "胸部_gradcam.png"
    assert names["肺.png"]["map_gradcam"] == "肺_gradcam.npy"
    for r in rows:
        assert len(r["sha256"]) == 64
        assert (out / r["overlay_gradcam"]).is_file() and (out / r["map_gradcam"]).is_file()
        heat = np.load(out / r["map_gradcam"], allow_pickle=False)
        assert heat.shape == (32, 40)
    assert not list(out.glob(".cxr-tmp-*")) and not (out / "predictions.csv.partial").exists()


@pytest.mark.skipif(sys.platform != "linux", reason="bytes file names are a POSIX feature")
def test_non_utf8_names_fifos_links_and_nan_pixels_are_rows(tmp_path, bundle_root):
    src = tmp_path / "in"
    _png(src / "good.png")
    bad_name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not valid UTF-8
    _png(src / bad_name, 5)
    os.mkfifo(src / "pipe.png")
    os.symlink(src / "nowhere.png", src / "dangling.png")
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", src / "linked_folder")
    pixels = np.full((16, 16), 0.5, np.float32)
    pixels[2, 3] = np.nan
    ds = dicom_dataset(np.zeros((16, 16)), bits_stored=16)
    del ds.PixelData
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
    for key in ("BitsStored", "HighBit", "PixelRepresentation"):
        delattr(ds, key)
    ds.FloatPixelData = pixels.tobytes()
    (src / "nan.dcm").write_bytes(dicom_bytes(ds))
    out = tmp_path / "out"
    assert _run(src, out, bundle_root) == 0
    raw = (out / "predictions.csv").read_bytes()
    raw.decode("utf-8")  # the CSV stays valid UTF-8
    rows = _by_name(_rows(out))
    assert rows["good.png"]["status"] == "ok"
    assert rows["caf\\xe9.png"]["status"] == "ok"  # the undecodable byte is shown escaped
    assert rows["pipe.png"]["status"] == "skipped" and "FIFO" in rows["pipe.png"]["error"]
    assert "does not exist" in rows["dangling.png"]["error"]
    assert "not followed" in rows["linked_folder"]["error"]
    nan = rows["nan.dcm"]
    assert nan["status"] == "error" and nan["p_lesion"] == "" and "not finite" in nan["error"]


def test_unwritable_outputs_become_partial_rows_and_the_run_goes_on(
    tmp_path, bundle_root, monkeypatch
):
    src = tmp_path / "in"
    for name in ("a.png", "b.png", "c.png"):
        _png(src / name, hash(name) % 100)
    out = tmp_path / "out"
    out.mkdir()
    real_save = np.save

    calls: list[object] = []

    def disk_full_for_b(fh, arr, **kw):  # one map per file, in order a, b, c
        calls.append(fh)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(fh, arr, **kw)

    monkeypatch.setattr(batch_core.np, "save", disk_full_for_b)  # the map writer's
    assert _run(src, out, bundle_root) == 0
    rows = _by_name(_rows(out))
    assert rows["a.png"]["status"] == "ok" and rows["c.png"]["status"] == "ok"
    b = rows["b.png"]
    assert b["status"] == "partial" and "the disk is full" in b["error"]
    assert str(out / b["file"].rsplit("/", 1)[-1].replace(".png", "_gradcam.npy")) in b["error"]
    assert b["p_lesion"] != "" and b["map_gradcam"] == ""
    assert not list(out.glob(".cxr-tmp-*"))  # the half-written temporary file is gone


def test_output_folder_that_cannot_be_created_is_refused_before_the_model_loads(
    tmp_path, bundle_root, capsys, monkeypatch
):
    _png(tmp_path / "in" / "a.png")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(
        "cxr_viewer.core.model.inference.load_classifier",
        lambda *a, **k: pytest.fail("the model loaded before the output folder was checked"),
    )
    assert _run(tmp_path / "in", blocker / "out", bundle_root) == 2
    err = capsys.readouterr().err
    assert "Cannot write to the output folder" in err and "Traceback" not in err
    assert _run(tmp_path / "in", blocker, bundle_root) == 2
    assert "is a file" in capsys.readouterr().err


def test_existing_out_is_refused_then_resumed_then_overwritten(tmp_path, bundle_root, capsys):
    src = tmp_path / "in"
    _png(src / "a.png", 1)
    _png(src / "b.png", 2)
    out = tmp_path / "out"
    assert _run(src, out, bundle_root) == 0
    first = _by_name(_rows(out))
    assert _run(src, out, bundle_root) == 2
    assert "--resume" in capsys.readouterr().err
    # resume: a.png unchanged is skipped (its row and outputs kept), b.png changed is redone
    _png(src / "b.png", 3)
    _png(src / "c.png", 4)
    stale = out / first["a.png"]["overlay_gradcam"]
    mtime = stale.stat().st_mtime_ns
    assert _run(src, out, bundle_root, "--resume") == 0
    second = _by_name(_rows(out))
    assert set(second) == {"a.png", "b.png", "c.png"}
    assert second["a.png"] == first["a.png"] and stale.stat().st_mtime_ns == mtime
    assert second["b.png"]["sha256"] != first["b.png"]["sha256"]
    assert second["b.png"]["overlay_gradcam"] == first["b.png"]["overlay_gradcam"]
    # overwrite: outputs of files that are gone are deleted, nothing else in the folder is
    (src / "c.png").unlink()
    keep = out / "notes.txt"
    keep.write_text("mine")
    assert _run(src, out, bundle_root, "--overwrite") == 0
    third = _by_name(_rows(out))
    assert set(third) == {"a.png", "b.png"}
    assert not (out / second["c.png"]["overlay_gradcam"]).exists()
    assert keep.read_text() == "mine"
    with pytest.raises(SystemExit):  # argparse refuses the pair
        _run(src, out, bundle_root, "--resume", "--overwrite")


def test_ctrl_c_finishes_the_current_file_and_exits_130(tmp_path, bundle_root, monkeypatch, capsys):
    src = tmp_path / "in"
    for i in range(4):
        _png(src / f"img{i}.png", i)
    real = batch.process_file

    def interrupted_during_first(ctx, path, digest):
        if path.name == "img0.png":
            os.kill(os.getpid(), signal.SIGINT)  # the handler only sets a flag
        return real(ctx, path, digest)

    monkeypatch.setattr(batch, "process_file", interrupted_during_first)
    out = tmp_path / "out"
    # what SIGINT did before the run: Python's default, or SIG_IGN where the suite was started
    # in the background of a non-interactive shell
    before = signal.getsignal(signal.SIGINT)
    assert _run(src, out, bundle_root) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted after 1 of 4" in err[0] and "--resume" in err[0]
    rows = _rows(out)
    assert [os.path.basename(r["file"]) for r in rows] == ["img0.png"]
    assert rows[0]["status"] == "ok"
    assert signal.getsignal(signal.SIGINT) is before  # the run's own handler is removed again
    monkeypatch.setattr(batch, "process_file", real)
    assert _run(src, out, bundle_root, "--resume") == 0
    assert len(_rows(out)) == 4


def test_ctrl_c_while_the_model_loads_is_one_line_and_130(tmp_path, monkeypatch, capsys):
    _png(tmp_path / "in" / "a.png")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("cxr_viewer.core.model.inference.load_classifier", interrupted)
    assert _run(tmp_path / "in", tmp_path / "out", tmp_path / "no-bundle") == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["cxr-viewer batch: interrupted before any file was processed"]


def test_a_killed_run_leaves_a_journal_that_resume_reads_and_a_torn_row_is_dropped(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    cols = ["file", "sha256", "status", "error", "overlay_gradcam"]
    writer = batch_output.OutputWriter(out, cols)
    writer.add_row({"file": "/x/a.png", "sha256": "1" * 64, "status": "ok", "error": ""})
    writer.add_row({"file": "/x/b.png", "sha256": "2" * 64, "status": "ok", "error": "x\ny"})
    writer.abandon()  # what a kill leaves: no predictions.csv, a complete journal
    with open(out / batch_output.JOURNAL_NAME, "a", encoding="utf-8") as fh:
        fh.write("/x/c.png,3333,ok,")  # a torn last line
    assert not (out / batch_output.CSV_NAME).exists()
    columns, rows = batch_output.read_rows(out)
    assert columns == cols and [r["file"] for r in rows] == ["/x/a.png", "/x/b.png"]
    assert rows[1]["error"] == "x y"  # one record per line
    resumed = batch_output.OutputWriter(out, cols, resume=True)
    assert resumed.done("/x/a.png", "1" * 64) and not resumed.done("/x/a.png", "9" * 64)
    assert resumed.close().read_text(encoding="utf-8").count("\n") == 3


def test_unique_stems_are_short_readable_and_case_insensitive(tmp_path):
    writer = batch_output.OutputWriter(tmp_path, ["file", "status", "error"])
    ends = ["_gradcam.png", "_gradcam.npy"]
    first = writer.unique_stem("a.png", ends)
    assert first == "a"
    assert writer.unique_stem("A.jpg", ends).startswith("A-")
    long = writer.unique_stem("x" * 400 + ".png", ends)
    assert len((long + ends[0]).encode()) < 255
    assert writer.unique_stem("!!!.png", ends) == "image"
    assert writer.unique_stem("d/e/f.dcm", ends) == "d__e__f"
    writer.abandon()


def _wait_for(predicate, proc, what, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the first run ended before {what}"
        assert time.monotonic() < deadline, f"no {what} in {timeout:.0f} s"
        time.sleep(0.02)


def test_a_second_run_into_the_same_out_is_refused_while_the_first_runs(
    tmp_path, bundle_root, capsys
):
    """Two batches into one --out (issue 26 item 8; before: run B deleted run A's temporary
    file and A's rows vanished while both exited 0). Now B is refused at once with A's pid
    and exit status 2, and A's results are whole."""
    src_a, src_b = tmp_path / "a", tmp_path / "b"
    for i in range(6):
        _png(src_a / f"a{i}.png", i)
        _png(src_b / f"b{i}.png", 10 + i)
    out = tmp_path / "out"
    lock = out / batch_output.LOCK_NAME
    run_a = subprocess.Popen(
        [sys.executable, "-m", "cxr_viewer", "batch", str(src_a), "--model", str(bundle_root)]
        + ["--out", str(out), "--explain", "gradcam", "--no-trust", "--quiet"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(
            lambda: lock.is_file() and lock.read_text().startswith(f"{run_a.pid} "),
            run_a,
            "lock",
        )
        capsys.readouterr()
        assert _run(src_b, out, bundle_root) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(
            f"cxr-viewer batch: Another batch is writing to {out} (pid {run_a.pid}, started "
        )
        assert err.endswith("Wait for it to finish or choose another --out.") and "\n" not in err
        _, a_err = run_a.communicate(timeout=300)
    finally:
        run_a.kill()
        run_a.wait()
    assert run_a.returncode == 0, a_err
    rows = _by_name(_rows(out))
    assert sorted(rows) == [f"a{i}.png" for i in range(6)]
    assert all(r["status"] == "ok" and (out / r["map_gradcam"]).is_file() for r in rows.values())
    assert not lock.exists()  # released at the end: the folder holds only results


def test_a_run_killed_while_holding_out_does_not_lock_it_forever(tmp_path, bundle_root, capsys):
    """The OS drops the lock of a SIGKILLed run: the next run proceeds (and may --resume)."""
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from cxr_viewer.commands.batch_output import OutDirLock; "
            f"OutDirLock.acquire(Path({str(out)!r})); print('locked', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        src = tmp_path / "in"
        _png(src / "x.png")
        assert _run(src, out, bundle_root) == 2
        assert f"(pid {holder.pid}, started " in capsys.readouterr().err
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        holder.kill()
        holder.wait()
    assert (out / batch_output.LOCK_NAME).exists()  # left behind by the killed holder ...
    assert _run(src, out, bundle_root) == 0  # ... but no longer locked, nor counted as a file
    assert [r["status"] for r in _rows(out)] == ["ok"]


def test_an_input_without_contrast_gets_no_prediction_in_batch_and_viewer(tmp_path, bundle_root):
    """Issue 26 item 12: a window of centre -1e308 / width 1e308 turns the image uniform
    (before: a confident prediction with status ok). Batch and the viewer's path
    (``Classifier.predict_study``) give no prediction and say why; a blank PNG too."""
    from cxr_viewer.core.errors import InvalidInputError
    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.model.inference import load_classifier

    src = tmp_path / "in"
    _png(src / "good.png")
    ramp = (np.arange(32 * 32).reshape(32, 32) * 4).astype(np.uint16)
    ds = dicom_dataset(ramp, WindowCenter="-1e308", WindowWidth="1e308")
    (src / "flat_window.dcm").write_bytes(dicom_bytes(ds))
    Image.fromarray(np.full((20, 24), 77, np.uint8)).save(src / "blank.png")
    out = tmp_path / "out"
    assert _run(src, out, bundle_root) == 0
    rows = _by_name(_rows(out))
    assert rows["good.png"]["status"] == "ok"
    for name in ("flat_window.dcm", "blank.png"):
        row = rows[name]
        assert row["status"] == "error" and row["p_lesion"] == "" and row["predicted_class"] == ""
        assert f"No prediction for {name}: its model input has no contrast" in row["error"]
    study = load_study(src / "flat_window.dcm")
    assert study.windows[0].center == -1e308  # the file's own window, taken as it is
    with pytest.raises(InvalidInputError, match="no contrast"):
        load_classifier(bundle_root).predict_study(study)
