"""The phantom generator: determinism, anatomy/lesion sanity, and files that read back the same."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from trainer.synth import PHANTOM_CLASSES, make_phantoms, write_phantoms


def test_shapes_types_and_labels():
    p = make_phantoms(10, 48, seed=3, positive_fraction=0.3)
    assert p.images.shape == (10, 48, 48) and p.images.dtype == np.float32
    assert p.labels.dtype == np.int64 and p.masks.dtype == bool
    assert int(p.labels.sum()) == 3
    assert 0.0 <= p.images.min() and p.images.max() <= 1.0
    # a mask exactly when there is a lesion
    assert np.array_equal(p.masks.any(axis=(1, 2)), p.labels == 1)


def test_deterministic_for_a_seed_and_different_across_seeds():
    a, b = make_phantoms(4, 32, seed=7), make_phantoms(4, 32, seed=7)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
    c = make_phantoms(4, 32, seed=8)
    assert not np.array_equal(a.images, c.images)


def test_chest_like_layout():
    """Lungs (sides, mid-height) darker than the mediastinum (centre column); air darkest."""
    p = make_phantoms(8, 128, seed=1, positive_fraction=0.0)
    img = p.images.mean(axis=0)
    lungs = np.r_[img[40:70, 25:45].ravel(), img[40:70, 83:103].ravel()].mean()
    spine = img[30:90, 60:68].mean()
    corner = img[:6, :6].mean()
    assert spine > lungs + 0.15
    assert corner < lungs


def test_lesions_are_bright_and_inside_the_lungs():
    p = make_phantoms(12, 128, seed=5, positive_fraction=1.0)
    for img, mask in zip(p.images, p.masks, strict=True):
        assert 10 < mask.sum() < 0.05 * mask.size
        ys, xs = np.nonzero(mask)
        # inside a lung field: off the midline and within the chest's height
        assert abs(xs.mean() - 64) > 12 and 10 < ys.mean() < 110
        ring = np.zeros_like(mask)
        y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
        ring[max(y0 - 6, 0) : y1 + 7, max(x0 - 6, 0) : x1 + 7] = True
        ring &= ~mask
        assert img[mask].mean() > img[ring].mean() + 0.08


def test_argument_errors():
    with pytest.raises(ValueError):
        make_phantoms(0)
    with pytest.raises(ValueError):
        make_phantoms(2, 8)
    with pytest.raises(ValueError):
        make_phantoms(2, positive_fraction=1.5)


def test_written_files_read_back_as_the_same_picture(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.io.display import display_image

    p = make_phantoms(2, 64, seed=2, positive_fraction=0.5)
    manifest = write_phantoms(tmp_path, p)
    rows = list(csv.DictReader(manifest.open()))
    assert [r["patient_id"] for r in rows] == ["phantom-00000"] * 3 + ["phantom-00001"] * 3
    assert set(rows[0]) == {"path", "label", "patient_id", "view", "source", "mask_path"}
    for r in rows:
        i = int(r["patient_id"].rsplit("-", 1)[1])
        assert r["label"] == PHANTOM_CLASSES[p.labels[i]]
        shown = display_image(load_study(tmp_path / r["path"]))
        tol = 1.0 / 255 if r["path"].endswith(".png") else 1.0 / 4095
        assert np.abs(shown - p.images[i]).max() <= tol + 1e-6, r["path"]
        mask = load_study(tmp_path / r["mask_path"]).pixels > 127
        assert np.array_equal(mask, p.masks[i])
    m1 = pydicom.dcmread(tmp_path / "images/phantom-00000_monochrome1.dcm")
    m2 = pydicom.dcmread(tmp_path / "images/phantom-00000_monochrome2.dcm")
    assert m1.PhotometricInterpretation == "MONOCHROME1" and m1.BitsStored == 12
    assert m1.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert float(m2.WindowCenter) == 2048 and float(m2.WindowWidth) == 4096
    # MONOCHROME1 stores the inverse
    assert np.array_equal(m1.pixel_array.astype(int), 4095 - m2.pixel_array.astype(int))


def test_synth_command(tmp_path):
    from trainer.cli import main

    assert (
        main(["synth", "--n", "3", "--size", "32", "--out", str(tmp_path), "--formats", "png"]) == 0
    )
    assert len(list((tmp_path / "images").glob("*.png"))) == 3
    assert main(["synth", "--n", "3", "--out", str(tmp_path / "x"), "--formats", "gif"]) == 2
