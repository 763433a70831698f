"""Issue 31: the method panel says why a method does not apply, and flags a blank map."""

from __future__ import annotations

import numpy as np

from cxr_viewer.core.explain.base import NO_SIGNAL, Heatmap
from cxr_viewer.gui.presenter import status_text
from cxr_viewer.gui.results import OverlayResult
from cxr_viewer.gui.state import ModelInfo, ViewerState

WHY = "the model has no convolutional feature maps"


def _state() -> ViewerState:
    s = ViewerState()
    s.set_model(
        ModelInfo(
            "mlp",
            "1",
            ["normal", "lesion"],
            "research",
            settings={"lime": {}, "occlusion": {}},
            unavailable={"gradcam": WHY, "shap": "no layer of feature maps"},
        )
    )
    return s


def test_a_method_that_does_not_apply_says_why():
    s = _state()
    assert not s.overlays["gradcam"].available
    assert s.overlays["gradcam"].unavailable_reason == WHY
    assert status_text(s, "gradcam") == f"not applicable: {WHY}"
    assert s.overlays["lime"].available and status_text(s, "lime") == ""


def test_a_blank_map_is_flagged_with_its_reason(qtbot):
    from cxr_viewer.gui.panels.overlays import OverlayControls

    s = _state()
    hm = Heatmap(np.zeros((8, 8), np.float32), "occlusion", 1, "lesion", True)
    hm.status, hm.note = NO_SIGNAL, "the map is zero everywhere; explain the other class"
    ov = s.overlays["occlusion"]
    ov.heatmap, ov.status = OverlayResult.from_heatmap(hm, None), "done"
    assert status_text(s, "occlusion").startswith("no signal: the map is zero everywhere")
    panel = OverlayControls(s, "occlusion")
    qtbot.addWidget(panel)
    panel.refresh()
    assert panel.status.text().startswith("no signal:")
    gradcam = OverlayControls(s, "gradcam")
    qtbot.addWidget(gradcam)
    gradcam.refresh()
    assert not gradcam.toggle.isEnabled()
    assert WHY in gradcam.toggle.toolTip()
