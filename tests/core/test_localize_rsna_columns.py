"""The box reader takes RSNA's own column names (patientId, x, y, width, height, Target)."""

from __future__ import annotations

from pathlib import Path

from cxr_viewer.core.evaluate import localize as loc


def test_rsna_table_reads_boxes_and_skips_films_without_one(tmp_path):
    table = tmp_path / "stage_2_train_labels.csv"
    table.write_text(
        "patientId,x,y,width,height,Target\n"
        "0004cfab,,,,,0\n"
        "00436515,562.0,152.0,256.0,453.0,1\n"
        "00436515,289.0,227.0,169.0,407.0,1\n",
        encoding="utf-8",
    )
    boxes = loc.read_boxes(table)
    assert [(b.filename, b.finding, b.x, b.w, b.patient_id) for b in boxes] == [
        ("00436515", "Lung Opacity", 562.0, 256.0, "00436515"),
        ("00436515", "Lung Opacity", 289.0, 169.0, "00436515"),
    ]
    # matched to the film by its stem (the challenge's images are <patientId>.dcm)
    assert len(loc.boxes_for_image(boxes, Path("/films/00436515.dcm"), tmp_path)) == 2
    assert loc.boxes_for_image(boxes, Path("/films/0004cfab.dcm"), tmp_path) == []
