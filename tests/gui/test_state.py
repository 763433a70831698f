"""The viewer's state object and result cache, headless (no Qt)."""

from pathlib import Path

import numpy as np
import pytest

from cxr_viewer.core.errors import ExplainError
from cxr_viewer.core.explain.registry import EXPLAINERS
from cxr_viewer.core.io.study import Study, Window
from cxr_viewer.gui.cache import ResultCache
from cxr_viewer.gui.events import OverlayChange
from cxr_viewer.gui.results import OverlayResult, downsample, preview_size
from cxr_viewer.gui.state import METHODS, ModelInfo, ViewerState


def _study(name="a.png", n=64, **kw) -> Study:
    px = np.linspace(0, 255, n * n, dtype=np.float32).reshape(n, n)
    return Study(Path(name), "png", px, Window(127.5, 255, "LINEAR_EXACT"), **kw)


def _model() -> ModelInfo:
    return ModelInfo(
        "m",
        "1",
        ["normal", "pneumonia"],
        "research",
        layers={"gradcam": ["c1", "c2"]},
        default_layers={"gradcam": "c2"},
        settings={"gradcam": {}, "lime": {"num_samples": 1000}},
        path="/m",
    )


class Recorder:
    def __init__(self, state: ViewerState) -> None:
        self.calls: list[tuple] = []
        for name in ("study", "display", "prediction", "target_class", "model", "layout"):
            getattr(state.events, name).connect(lambda *a, n=name: self.calls.append((n, *a)))
        state.events.overlay.connect(lambda m, w: self.calls.append(("overlay", m, w)))


def test_opacity_validates_stores_and_emits_only_opacity():
    s = ViewerState()
    rec = Recorder(s)
    s.set_opacity("lime", 0.25)
    assert s.overlays["lime"].opacity == 0.25
    assert rec.calls == [("overlay", "lime", OverlayChange.OPACITY)]
    with pytest.raises(ValueError, match="between 0 and 1"):
        s.set_opacity("lime", 1.5)
    with pytest.raises(ValueError, match="unknown method"):
        s.set_opacity("no-such-method", 0.5)
    assert s.overlays["lime"].opacity == 0.25


def test_colormaps_follow_signedness():
    s = ViewerState()
    s.set_colormap("lime", "coolwarm")  # signed: diverging allowed
    with pytest.raises(ValueError, match="must be one of"):
        s.set_colormap("lime", "jet")  # a sequential map would hide the sign
    with pytest.raises(ValueError):
        s.set_colormap("gradcam", "RdBu_r")


def test_model_sets_layers_and_availability():
    s = ViewerState()
    s.set_model(_model())
    assert s.overlays["gradcam"].layer == "c2"
    assert s.overlays["lime"].settings["num_samples"] == 1000
    assert not s.overlays["shap"].available  # the model offers no SHAP
    with pytest.raises(ValueError, match="no layer"):
        s.set_layer("gradcam", "nope")


def test_study_change_clears_results_and_window():
    s = ViewerState()
    s.set_model(_model())
    s.set_study(_study())
    s.adjust_window(10, 20)
    assert s.window is not None and s.window.width == pytest.approx(275)
    s.set_result("gradcam", object())
    s.set_study(_study("b.png"))
    assert s.window is None and s.overlays["gradcam"].heatmap is None


def test_target_class_follows_prediction_unless_pinned():
    class P:
        predicted_index = 1

    s = ViewerState()
    s.set_model(_model())
    s.set_study(_study())
    s.set_prediction(P())
    assert s.target_class == 1
    s.set_target_class(0)
    s.set_study(_study("b.png"))
    s.set_prediction(P())
    assert s.target_class == 0 and s.target_pinned
    s.set_target_class(None)
    assert s.target_class == 1
    with pytest.raises(ValueError, match="out of range"):
        s.set_target_class(5)


def test_result_key_changes_with_class_layer_settings():
    class P:
        predicted_index = 0

    s = ViewerState()
    s.set_model(_model())
    s.set_study(_study())
    assert s.result_key("gradcam") is None  # no class yet
    s.set_prediction(P())
    k1 = s.result_key("gradcam")
    s.set_layer("gradcam", "c1")
    k2 = s.result_key("gradcam")
    s.set_setting("lime", "num_samples", 300)
    assert k1 != k2 and s.result_key("lime")[-1] == (("num_samples", 300),)
    with pytest.raises(ExplainError, match="num_samples"):
        s.set_setting("lime", "num_samples", 0)
    with pytest.raises(ExplainError, match="Unknown LIME setting"):
        s.set_setting("lime", "num_sample", 300)
    assert METHODS == tuple(EXPLAINERS)  # the viewer offers what the registry lists, in order


def test_invert_and_reset():
    s = ViewerState()
    s.set_study(_study(invert=True))
    assert s.effective_invert
    s.toggle_invert()
    assert not s.effective_invert
    s.reset_display()
    assert s.effective_invert and s.window is None


def test_cache_is_lru_and_bounded():
    class H:
        def __init__(self, n):
            self.nbytes = n

    c = ResultCache(budget_bytes=10_000)
    for i in range(5):
        c.put(("k", i), H(3000))
    assert len(c) <= 3 and ("k", 4) in c and ("k", 0) not in c
    assert c.get(("k", 4)) is not None and c.get(("k", 0)) is None


def test_overlay_result_preview_is_screen_sized():
    class Hm:
        values = np.random.default_rng(0).random((2000, 1500)).astype(np.float32)
        signed = True
        partial = False

    r = OverlayResult.from_heatmap(Hm())
    assert r.preview.shape == preview_size(2000, 1500) == (1024, 768)
    assert r.vmax > 0 and r.signed and not r.partial
    assert downsample(np.ones((10, 10), np.float32)).shape == (10, 10)


def test_model_size_map_is_scaled_to_the_study_only_on_screen():
    """A 64×64 map for a 2000×1500 study: the Heatmap stays 64×64 (exports scale it when they
    write), the screen copy takes the study's shape at screen size."""
    from cxr_viewer.core.explain.base import Heatmap

    values = np.zeros((64, 64), np.float32)
    values[16:32, 40:48] = 1.0
    hm = Heatmap(values, "gradcam", 1, "p", signed=False)
    r = OverlayResult.from_heatmap(hm, size=(2000, 1500))
    assert r.heatmap.values.shape == (64, 64)
    assert r.preview.shape == preview_size(2000, 1500) == (1024, 768)
    # the hot block lands where it is in model coordinates (rows 1/4..1/2, columns 5/8..3/4)
    rows, cols = np.nonzero(r.preview > 0.5)
    assert 240 <= rows.min() <= 272 and 496 <= rows.max() <= 528
    assert 464 <= cols.min() <= 490 and 560 <= cols.max() <= 586
