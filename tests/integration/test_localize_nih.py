"""`cxr-viewer localize` on a few real NIH ChestX-ray14 films with radiologist boxes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cxr_viewer.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEMO = Path(__file__).resolve().parents[2] / "resources" / "demo_bundle"


def test_localize_runs_on_nih_boxes(shared_data, tmp_path):
    pytest.importorskip("tensorflow")
    boxes = shared_data / "nih-boxes" / "boxes.csv"
    if not boxes.is_file():
        pytest.skip("nih-boxes not in the shared data")
    meta = json.loads((DEMO / "metadata.json").read_text(encoding="utf-8"))
    positive = meta.get("positive_class") or meta["class_names"][-1]
    out = tmp_path / "out"
    code = main(
        [
            "localize",
            str(boxes),
            "--model",
            str(DEMO),
            "--map",
            f"Pneumonia={positive},Infiltrate={positive}",
            "--limit",
            "6",
            "--bootstrap",
            "200",
            "--montage",
            "2",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    rows = list(csv.DictReader(open(out / "rows.csv", encoding="utf-8")))
    assert len(rows) == 6 * 4  # gradcam + three baselines
    assert {r["finding"] for r in rows} <= {"Pneumonia", "Infiltrate"}
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows if r["error"]]
    for r in rows:
        assert 0.0 < float(r["box_area_percent"]) < 100.0
        assert 0.0 <= float(r["energy_inside"]) <= 1.0
    assert (out / "montage.png").stat().st_size > 10_000
    assert "Localization benchmark" in (out / "report.md").read_text(encoding="utf-8")
