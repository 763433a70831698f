"""``cxr-viewer batch --dicom-out DIR --dicom-objects LIST`` without a PACS: which objects are
written per image, and a wrong list stops the run before any work."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from cxr_viewer.core.interop.dicom_overlays import results_for_image
from cxr_viewer.core.paths import demo_bundle_dir, samples_dir

pytest.importorskip("highdicom", reason='the "pacs" extra is not installed')


@pytest.mark.slow
def test_batch_writes_the_chosen_objects(tmp_path):
    pytest.importorskip("tensorflow")
    from cxr_viewer.cli import main

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(samples_dir() / "phantom_j2k.dcm", src / "film.dcm")
    jpeg = next(samples_dir().glob("real-01*.jpeg"))
    shutil.copy(jpeg, src / "photo.jpeg")
    out = tmp_path / "out"
    code = main(
        ["batch", str(src), "--model", str(demo_bundle_dir()), "--explain", "gradcam",
         "--out", str(out), "--dicom-out", str(out / "dcm"), "--dicom-objects", "pm,sr,seg",
         "--device", "cpu", "--quiet"]
    )  # fmt: skip
    assert code == 0
    names = sorted(p.name for p in (out / "dcm").iterdir())
    assert names == [
        "film_MR.dcm",
        "film_gradcam_PM.dcm",
        "film_gradcam_SEG.dcm",
        "photo_SR.dcm",  # the JPEG has no DICOM image to reference: SC and its SR instead
        "photo_gradcam_SC.dcm",
    ]
    film = pydicom.dcmread(src / "film.dcm", stop_before_pixels=True)
    found = results_for_image([out / "dcm"], str(film.SOPInstanceUID))
    (m,) = found.maps
    (npy,) = out.rglob("film_gradcam.npy")
    assert np.abs(m.values - np.load(npy)).max() <= 1e-5
    (report,) = found.reports
    assert report.sha256 == "9fde30788ffce75df3b3ff0ab524fba14fecdd5c97e9dca837687ac7f8effa37"


def test_a_wrong_object_list_stops_before_any_work(tmp_path, capsys):
    from cxr_viewer.cli import main

    code = main(
        ["batch", str(samples_dir() / "phantom_j2k.dcm"), "--model", str(demo_bundle_dir()),
         "--explain", "gradcam", "--out", str(tmp_path / "out"), "--dicom-objects", "pm,png",
         "--dicom-out", str(tmp_path / "dcm"), "--quiet"]
    )  # fmt: skip
    assert code != 0
    assert "'png' is not among sc, pm, sr, seg" in capsys.readouterr().err
    assert not (tmp_path / "out" / "predictions.csv").exists()
