"""PDF and PNG exports carry the head's prediction and thresholds (no model needed)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from cxr_viewer.core.io.study import Study, Window
from cxr_viewer.core.model.inference import Prediction
from cxr_viewer.gui.report import (
    LayerSnapshot,
    Snapshot,
    prediction_line,
    prediction_lines,
    save_pdf,
    save_png,
)

FINDINGS = ["nodule", "effusion", "edema", "mass"]


def _snapshot(pred: Prediction, kind: str) -> Snapshot:
    img = np.tile(np.linspace(0, 1, 96, dtype=np.float32), (80, 1))
    study = Study(Path("phantom.png"), "png", img, Window(0.5, 1.0))
    names = list(pred.class_names)
    heat = np.zeros((80, 96), np.float32)
    heat[20:40, 30:60] = 1.0
    layer = LayerSnapshot("gradcam", "Grad-CAM", False, "inferno", 0.4, True, heat, 1.0,
                          "conv", {}, 0.1)  # fmt: skip
    return Snapshot(
        study=study, window=None, invert=False, layers=[layer], class_names=names,
        probabilities=[float(p) for p in pred.probabilities], predicted=pred.predicted_class,
        target_class=names[pred.predicted_index], model_name="test model", model_version="1",
        intended_use="research", device="CPU", hide_patient=False,
        decision=pred.rule_text(), headline=pred.headline(), thresholds=[pred.threshold_of(i) for i in range(len(names))],
        kind=kind, near_threshold=pred.is_near_threshold,
        findings=[names[i] for i in pred.positive_findings],
    )  # fmt: skip


def test_multilabel_export(tmp_path):
    pred = Prediction(np.array([0.9, 0.32, 0.1, 0.6], np.float32), tuple(FINDINGS),
                      kind="multilabel", thresholds=(0.5, 0.3, 0.5, 0.7))  # fmt: skip
    snap = _snapshot(pred, "multilabel")
    lines = prediction_lines(snap)
    assert lines[0].startswith("Prediction: 2 of 4 findings above threshold: nodule, effusion")
    assert "near threshold" in lines[0]  # effusion 0.32 vs 0.30
    assert lines[1].startswith("Top findings: nodule 0.90/0.50, mass 0.60/0.70, effusion")
    png = save_png(snap, tmp_path / "out.png")
    img = cv2.imread(str(png))
    # the annotated export: the composite (magnified), then a band whose prediction line is this
    assert img.shape[1] >= 96 and img.shape[0] > 80 and img[-40:].std() > 0
    assert "Top findings: nodule 0.90/0.50" in prediction_line(snap)
    pdf = save_pdf(snap, tmp_path / "out.pdf")
    assert pdf.read_bytes().startswith(b"%PDF")


def test_binary_export_states_the_threshold(tmp_path):
    pred = Prediction(np.array([0.09, 0.91], np.float32), ("normal", "pneumonia"),
                      threshold=0.62, positive_class="pneumonia", kind="binary")  # fmt: skip
    snap = _snapshot(pred, "binary")
    assert prediction_lines(snap) == ["Prediction: PNEUMONIA — p 0.91 ≥ threshold 0.62"]
    assert snap.thresholds == [None, 0.62]
    assert save_pdf(snap, tmp_path / "b.pdf").stat().st_size > 1000
