"""The viewer's exports write what the one analysis pipeline computed, and compute nothing.

The PNG/PDF report (``MainWindow.snapshot`` → ``gui/report.py``) and the DICOM export
(``DicomExportDialog.inputs`` → ``core/interop/dicom_export.py``) read the prediction and the
maps that the model session (``gui/session.py``) got from ``cxr_viewer.core.analysis``
(``prepare`` and ``explain``): the very objects, so the trust figures and the decision written
are those on screen.
"""

from __future__ import annotations

import numpy as np


def test_exports_take_the_pipelines_prediction_and_maps(
    qtbot, gui, viewer, studies_dir, monkeypatch
):
    import cxr_viewer.core.analysis as analysis
    import cxr_viewer.gui.pacs_dialogs as pd
    import cxr_viewer.gui.session as session

    prepared: list[analysis.Analysis] = []
    explained: list[analysis.Analysis] = []
    real_prepare, real_explain = analysis.prepare, session.explain

    def prepare(*args, **kwargs):
        prepared.append(real_prepare(*args, **kwargs))
        return prepared[-1]

    def explain(*args, **kwargs):
        explained.append(real_explain(*args, **kwargs))
        return explained[-1]

    monkeypatch.setattr(analysis, "prepare", prepare)
    monkeypatch.setattr(session, "explain", explain)
    gui.open_study(qtbot, viewer, studies_dir / "phantom1.png")
    viewer.state.set_visible("gradcam", True)
    gui.wait_done(qtbot, viewer, "gradcam")

    predictions = [a.prediction for a in prepared if a.prediction is not None]
    assert predictions and viewer.state.prediction is predictions[-1]
    result = explained[-1].result("gradcam")
    assert result is not None and result.heatmap is not None
    heatmap = result.heatmap

    snap = viewer.snapshot()  # what the PNG and the PDF are drawn from
    assert snap.probabilities == [float(p) for p in predictions[-1].probabilities]
    assert snap.decision == predictions[-1].rule_text()
    [layer] = snap.layers
    assert layer.method == "gradcam" and layer.values is heatmap.values
    assert layer.trust == heatmap.trust and layer.trust  # the pipeline's figures, not recomputed

    viewer.actions_["export_dicom"].trigger()
    dialog = viewer.findChild(pd.DicomExportDialog)
    assert dialog is not None
    study, prediction, _model, explanations = dialog.inputs()
    assert study is viewer.state.study and prediction is predictions[-1]
    [exported] = explanations
    assert exported.method == "gradcam"
    np.testing.assert_array_equal(exported.model_values, heatmap.values)
    assert exported.trust == {k: float(v) for k, v in heatmap.trust.items() if np.isfinite(v)}
    dialog.reject()
