"""Missing and unreadable training files are listed, reported, and refused above a fraction."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from cxr_viewer.core.errors import TrainingError
from trainer.config import load_config


def _dataset(tmp_path, n=40):
    tmp_path.mkdir(parents=True, exist_ok=True)
    rows = []
    rng = np.random.default_rng(0)
    for i in range(n):
        path = tmp_path / f"img{i:02d}.png"
        assert cv2.imwrite(str(path), rng.integers(0, 255, (16, 16), dtype=np.uint8))
        rows.append({"path": path.name, "label": "a" if i % 2 else "b", "patient_id": f"p{i}"})
    rows.append({"path": "gone.png", "label": "a", "patient_id": "px"})  # listed, missing
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # unreadable
    rows.append({"path": "broken.png", "label": "b", "patient_id": "py"})
    csv = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


def _cfg(csv, fraction):
    return load_config(
        None,
        {"data.format": "csv", "data.root": str(csv), "model.input_size": 32,
         "data.max_skipped_fraction": fraction},
    )  # fmt: skip


def test_skipped_files_are_listed_and_refused_above_the_fraction(tmp_path):
    from trainer.data import SKIPPED_FILE, prepare_data

    csv = _dataset(tmp_path / "data")
    with pytest.raises(TrainingError, match="2 of 42 listed images are missing or unreadable"):
        prepare_data(_cfg(csv, 0.02), tmp_path / "run1", progress=False)
    listed = pd.read_csv(tmp_path / "run1" / SKIPPED_FILE)
    assert sorted(p.rsplit("/", 1)[-1] for p in listed["path"]) == ["broken.png", "gone.png"]

    data = prepare_data(_cfg(csv, 0.1), tmp_path / "run2", progress=False)
    assert len(data.manifest) == 40
    s = data.summary()
    assert s["missing_images"] == 1 and s["unreadable_images"] == 1
    reasons = {r["path"].rsplit("/", 1)[-1]: r["reason"] for r in s["skipped_files"]}
    assert reasons["gone.png"] == "missing" and reasons["broken.png"].startswith("unreadable")
