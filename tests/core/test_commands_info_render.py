"""`cxr-viewer info` and `cxr-viewer render`: output, exit codes, error messages."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from test_io_samples import dicom_bytes, dicom_dataset, gradient, png_bytes

from cxr_viewer.cli import main
from cxr_viewer.core.io import load_study
from cxr_viewer.core.io.display import display_image, to_uint8
from cxr_viewer.core.io.study import Window


@pytest.fixture()
def files(tmp_path):
    img = gradient(top=4095)
    frames = np.stack([img, 4095 - img])
    paths = {
        "mono1": dicom_dataset(
            img,
            photometric="MONOCHROME1",
            WindowCenter=[2048, 1000],
            WindowWidth=[4096, 500],
            WindowCenterWidthExplanation=["FULL", "NARROW"],
            ViewPosition="PA",
        ),
        "multi": dicom_dataset(frames, frames=2),
    }
    out = {}
    for name, ds in paths.items():
        out[name] = tmp_path / f"{name}.dcm"
        out[name].write_bytes(dicom_bytes(ds))
    out["png"] = tmp_path / "chest.png"
    out["png"].write_bytes(png_bytes(gradient()))
    out["text"] = tmp_path / "bad.png"
    out["text"].write_bytes(b"not an image\n")
    return out


def _records(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_info_describes_a_dicom(files, capsys):
    assert main(["info", str(files["mono1"])]) == 0
    (rec,) = _records(capsys)
    assert rec["path"] == str(files["mono1"])
    assert (rec["format"], rec["rows"], rec["columns"], rec["frames"]) == ("dicom", 24, 32, 1)
    assert rec["photometric_interpretation"] == "MONOCHROME1" and rec["bits_stored"] == 12
    assert rec["transfer_syntax"] == "1.2.840.10008.1.2.1"
    assert rec["view"] == "PA" and rec["invert"] is True
    assert rec["windows"] == [
        {"center": 2048.0, "width": 4096.0, "function": "LINEAR", "name": "FULL"},
        {"center": 1000.0, "width": 500.0, "function": "LINEAR", "name": "NARROW"},
    ]


def test_info_on_a_folder_reports_errors_per_file_and_succeeds(files, capsys):
    assert main(["info", str(files["png"].parent)]) == 0
    records = {r["path"].rsplit("/", 1)[-1]: r for r in _records(capsys)}
    assert set(records) == {"bad.png", "chest.png", "mono1.dcm", "multi.dcm"}
    assert records["multi.dcm"]["frames"] == 2
    assert (
        records["chest.png"]["format"] == "png" and records["chest.png"]["transfer_syntax"] is None
    )
    bad = records["bad.png"]
    assert set(bad) == {"path", "error", "error_type"}
    assert bad["error_type"] == "UnsupportedFormatError" and "text" in bad["error"]


def test_info_fails_only_when_nothing_is_readable(files, tmp_path, capsys):
    assert main(["info", str(files["text"])]) == 2
    assert "error" in _records(capsys)[0]
    assert main(["info", str(tmp_path / "absent")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["info", str(empty)]) == 2
    assert "no PNG, JPEG or DICOM" in capsys.readouterr().err


def test_render_writes_exactly_the_display_image(files, tmp_path):
    out = tmp_path / "out.png"
    assert main(["render", str(files["mono1"]), "-o", str(out)]) == 0
    written = np.asarray(Image.open(out))
    expected = to_uint8(display_image(load_study(files["mono1"])))
    np.testing.assert_array_equal(written, expected)
    assert written[0, 0] > written[-1, -1]  # MONOCHROME1: low values are bright


def test_render_window_invert_and_frame(files, tmp_path):
    study = load_study(files["mono1"])
    out = tmp_path / "w.png"
    assert main(["render", str(files["mono1"]), "-o", str(out), "--window", "1000", "500"]) == 0
    expected = to_uint8(display_image(study, window=Window(1000, 500)))
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)
    assert main(["render", str(files["mono1"]), "-o", str(out), "--invert"]) == 0
    np.testing.assert_array_equal(
        np.asarray(Image.open(out)), to_uint8(display_image(study, invert=False))
    )
    assert main(["render", str(files["multi"]), "-o", str(out), "--frame", "1"]) == 0
    np.testing.assert_array_equal(
        np.asarray(Image.open(out)), to_uint8(display_image(load_study(files["multi"], frame=1)))
    )


def test_render_errors_exit_2_with_a_message(files, tmp_path, capsys):
    out = tmp_path / "x.png"
    assert main(["render", str(files["text"]), "-o", str(out)]) == 2
    assert "not a PNG, JPEG or DICOM" in capsys.readouterr().err
    assert main(["render", str(files["multi"]), "-o", str(out), "--frame", "5"]) == 2
    assert "2 frame(s)" in capsys.readouterr().err
    assert main(["render", str(files["png"]), "-o", str(out), "--window", "100", "0"]) == 2
    assert "width must be positive" in capsys.readouterr().err
    assert not out.exists()


def test_render_reports_an_unwritable_output(files, tmp_path, capsys):
    target = tmp_path / "no_such_dir" / "x.png"
    assert main(["render", str(files["png"]), "-o", str(target)]) == 1
    assert "cannot write" in capsys.readouterr().err


def test_entry_point_runs_as_a_program(files):
    result = subprocess.run(
        [sys.executable, "-m", "cxr_viewer", "info", str(files["png"])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rows"] == 24
