"""The prediction panel states its rule, draws thresholds and lists multi-label findings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from cxr_viewer.core.model.inference import Prediction  # noqa: E402
from cxr_viewer.gui.panels.prediction import BELOW, PredictionPanel  # noqa: E402
from cxr_viewer.gui.state import ModelInfo, ViewerState  # noqa: E402

FINDINGS = ["nodule", "effusion", "edema"]


def _panel(qtbot, info: ModelInfo) -> tuple[PredictionPanel, ViewerState]:
    state = ViewerState()
    panel = PredictionPanel(state)
    qtbot.addWidget(panel)
    panel.resize(360, 400)
    panel.show()
    qtbot.waitExposed(panel)
    state.set_model(info)
    qtbot.wait(10)  # let the layout give the bars their width
    return panel, state


def _binary_info(**kw) -> ModelInfo:
    base = dict(
        name="pneumonia-sigmoid",
        version="1",
        class_names=["normal", "pneumonia"],
        intended_use="research",
        kind="binary",
        threshold=0.62,
        positive_class="pneumonia",
        card_figures={"test_auc": 0.81, "finding_auc": {}, "population": "412 training images"},
    )
    return ModelInfo(**{**base, **kw})


def _binary_pred(p: float, band: float = 0.05) -> Prediction:
    return Prediction(
        np.array([1 - p, p], np.float32),
        ("normal", "pneumonia"),
        threshold=0.62,
        positive_class="pneumonia",
        kind="binary",
        near_band=band,
    )


def test_binary_headline_states_the_rule_and_the_bar_draws_the_threshold(qtbot):
    panel, state = _panel(qtbot, _binary_info())
    state.set_prediction(_binary_pred(0.91))
    assert panel.headline.text() == "PNEUMONIA — p 0.91 ≥ threshold 0.62"
    bar = panel.bars["pneumonia"]
    assert bar.threshold == pytest.approx(0.62) and panel.bars["normal"].threshold is None
    x = bar.threshold_x()
    assert bar.rect().left() < x < bar.rect().right()
    assert x == pytest.approx(1 + 0.62 * (bar.width() - 2))
    assert not panel.near_flag.isVisible()
    assert panel.marked() == ["pneumonia"]
    assert "Test AUC 0.81" in panel.card_label.text()
    assert "412 training images" in panel.card_label.text()
    assert "pneumonia if p(pneumonia) ≥ 0.62" in panel.threshold_label.text()
    # the line is drawn: the pixel column at the threshold is the threshold colour
    img = bar.grab().toImage()
    scale = img.width() / bar.width()
    cols = [img.pixelColor(int(x * scale) + dx, img.height() // 2) for dx in range(-3, 4)]
    assert any(abs(c.red() - 240) < 12 and abs(c.green() - 195) < 12 for c in cols)


def test_below_threshold_and_near_threshold_flag(qtbot):
    panel, state = _panel(qtbot, _binary_info())
    state.set_prediction(_binary_pred(0.60))
    assert panel.headline.text() == "NORMAL — p(pneumonia) 0.60 < threshold 0.62"
    assert panel.near_flag.isVisible()
    assert "±0.05" in panel.near_flag.text() and "0.60 vs 0.62" in panel.near_flag.text()
    state.set_prediction(_binary_pred(0.60, band=0.01))  # the bundle sets the band
    assert not panel.near_flag.isVisible()


def test_softmax_without_threshold_and_no_card(qtbot):
    info = ModelInfo(
        name="three", version="", class_names=["normal", "bacterial", "viral"],
        intended_use="research",
    )  # fmt: skip
    panel, state = _panel(qtbot, info)
    state.set_prediction(Prediction(np.array([0.2, 0.7, 0.1], np.float32), tuple(info.class_names)))
    assert panel.headline.text() == "BACTERIAL — p 0.70, the highest of 3 classes"
    assert all(b.threshold is None for b in panel.bars.values())
    assert "highest probability" in panel.threshold_label.text()
    assert "No test figures" in panel.card_label.text()


def _multilabel_info() -> ModelInfo:
    return ModelInfo(
        name="findings",
        version="1",
        class_names=list(FINDINGS),
        intended_use="research",
        kind="multilabel",
        thresholds={"nodule": 0.5, "effusion": 0.3, "edema": 0.6},
        card_figures={
            "test_auc": None,
            "finding_auc": {"nodule": 0.9, "edema": 0.7},
            "population": "",
        },
    )


def test_multilabel_panel_sorts_marks_and_explains_any_finding(qtbot):
    panel, state = _panel(qtbot, _multilabel_info())
    pred = Prediction(
        np.array([0.2, 0.35, 0.9], np.float32),
        tuple(FINDINGS),
        kind="multilabel",
        thresholds=(0.5, 0.3, 0.6),
    )
    state.set_prediction(pred)
    assert panel.shown_order() == ["edema", "effusion", "nodule"]
    assert sorted(panel.marked()) == ["edema", "effusion"]
    assert panel.rows[0].marker.text() == BELOW  # nodule 0.2 < 0.5
    assert panel.headline.text() == "2 of 3 findings above threshold: edema, effusion"
    assert [b.threshold for b in panel.bars.values()] == [0.5, 0.3, 0.6]
    assert "Test AUC 0.70–0.90 across findings" in panel.card_label.text()
    assert "test AUC 0.90" in panel.rows[0].toolTip()
    # no arg-max prediction: the top finding above threshold is explained by default …
    assert state.target_class == 2
    assert panel.combo_label.text() == "Explain finding"
    # … and any finding can be chosen by clicking it
    qtbot.mouseClick(panel.rows[0].label, Qt.MouseButton.LeftButton)
    assert state.target_class == 0 and state.target_pinned
    assert panel.class_combo.currentText() == "nodule"
    assert panel.near_flag.isVisible()  # effusion 0.35 is within 0.05 of 0.30
    assert "effusion p 0.35 vs 0.30" in panel.near_flag.text()


@pytest.fixture(scope="module")
def multilabel_bundle(tmp_path_factory) -> Path:
    import keras

    from cxr_viewer.core.model.bundle import write_bundle
    from cxr_viewer.core.model.heads import Head
    from cxr_viewer.core.model.preprocess import InputSpec

    keras.utils.set_random_seed(1)
    inp = keras.Input((64, 64, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu", padding="same", name="conv_a")(inp)
    x = keras.layers.MaxPooling2D(name="pool_a")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", padding="same", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(3, activation="sigmoid", name="findings")(x)
    root = tmp_path_factory.mktemp("ml") / "bundle"
    write_bundle(
        root,
        keras.Model(inp, out),
        name="multi-label test",
        class_names=FINDINGS,
        input_spec=InputSpec(64, 64, 1, "unit"),
        gradcam_layer="conv_b",
        shap_layers=["conv_a", "pool_a"],
        background=np.random.default_rng(0).random((4, 64, 64, 1), dtype=np.float32),
        head=Head("multilabel", 3, "sigmoid"),
        extra={
            "thresholds": {"nodule": 0.5, "effusion": 0.45, "edema": 0.55},
            "metrics": {"per_finding": {f: {"test_auc": 0.8} for f in FINDINGS}},
        },
    )
    return root


def test_viewer_shows_a_multilabel_models_findings(qtbot, gui, tmp_path, multilabel_bundle,
                                                     studies_dir):  # fmt: skip
    # through the `gui` fixture: `from conftest import …` picks whichever conftest.py was
    # imported last when the whole suite runs
    make_window, MODEL_READY_TIMEOUT_MS = gui.make_window, gui.MODEL_READY_TIMEOUT_MS

    win = make_window(qtbot, tmp_path)
    try:
        win.load_model(multilabel_bundle)
        qtbot.waitUntil(lambda: win.state.model is not None, timeout=MODEL_READY_TIMEOUT_MS)
        assert win.state.model.kind == "multilabel"
        # layer menus list layers input side first with their spatial size
        assert win.state.model.layer_sizes["conv_a"] == (64, 64)
        assert win.state.model.layer_sizes["pool_a"] == (32, 32)
        assert win.state.overlays["shap"].layers == ["conv_a", "pool_a"]
        gui.open_study(qtbot, win, studies_dir / "phantom0.png")
        pred = win.state.prediction
        assert pred.kind == "multilabel" and pred.class_names == tuple(FINDINGS)
        panel = win.prediction_panel
        order = [FINDINGS[i] for i in np.argsort(-pred.probabilities, kind="stable")]
        assert panel.shown_order() == order
        assert sorted(panel.marked()) == sorted(FINDINGS[i] for i in pred.positive_findings)
        shown = panel.probabilities_text()
        for i, f in enumerate(FINDINGS):
            assert shown[f] == f"{pred.probabilities[i] * 100:.1f} %"
        # explain the least probable finding, chosen by clicking it
        last = order[-1]
        row = next(r for r in panel.rows if r.name == last)
        qtbot.mouseClick(row.label, Qt.MouseButton.LeftButton)
        win.state.set_visible("gradcam", True)
        gui.wait_done(qtbot, win, "gradcam")
        assert win.state.overlays["gradcam"].heatmap.heatmap.class_name == last
    finally:
        win.close()


@pytest.fixture(scope="module")
def binary_bundle(tmp_path_factory) -> Path:
    import keras

    from cxr_viewer.core.model.bundle import write_bundle
    from cxr_viewer.core.model.heads import Head
    from cxr_viewer.core.model.preprocess import InputSpec

    keras.utils.set_random_seed(3)
    inp = keras.Input((64, 64, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu", padding="same", name="conv_a")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(1, activation="sigmoid", name="pneumonia")(x)
    root = tmp_path_factory.mktemp("bin") / "bundle"
    write_bundle(
        root, keras.Model(inp, out), name="binary test", class_names=["normal", "pneumonia"],
        input_spec=InputSpec(64, 64, 1, "unit"), gradcam_layer="conv_a", shap_layers=["conv_a"],
        background=np.zeros((2, 64, 64, 1), np.float32), head=Head("binary", 1, "sigmoid"),
        extra={"threshold": 0.3, "positive_class": "pneumonia", "near_threshold_band": 0.02},
    )  # fmt: skip
    return root


def test_viewer_shows_a_binary_sigmoid_model(qtbot, gui, tmp_path, binary_bundle, studies_dir):
    # through the `gui` fixture: `from conftest import …` picks whichever conftest.py was
    # imported last when the whole suite runs
    make_window, MODEL_READY_TIMEOUT_MS = gui.make_window, gui.MODEL_READY_TIMEOUT_MS

    win = make_window(qtbot, tmp_path)
    try:
        win.load_model(binary_bundle)
        qtbot.waitUntil(lambda: win.state.model is not None, timeout=MODEL_READY_TIMEOUT_MS)
        gui.open_study(qtbot, win, studies_dir / "phantom1.png")
        pred = win.state.prediction
        p = float(pred.probabilities[1])
        assert pred.kind == "binary" and pred.probabilities[0] == pytest.approx(1 - p)
        panel = win.prediction_panel
        assert panel.headline.text() == pred.rule_text()
        assert "threshold 0.30" in panel.headline.text()
        assert panel.bars["pneumonia"].threshold == pytest.approx(0.3)
        assert panel.near_flag.isVisible() == (abs(p - 0.3) < 0.02)
        # the negative class can be explained too (by −z)
        panel.class_combo.setCurrentIndex(panel.class_combo.findData(0))
        panel._class_chosen(panel.class_combo.currentIndex())
        win.state.set_visible("gradcam", True)
        gui.wait_done(qtbot, win, "gradcam")
        assert win.state.overlays["gradcam"].heatmap.heatmap.class_name == "normal"
    finally:
        win.close()


def test_while_the_model_loads_the_panel_says_so_not_no_model(qtbot):
    state = ViewerState()
    panel = PredictionPanel(state)
    qtbot.addWidget(panel)
    state.set_model_status("loading", "Loading demo…", 0.4)
    assert panel.headline.text().startswith("Loading the model… (40 %)")
    assert "No model loaded" not in panel.headline.text()
    state.set_model_status("failed", "bad bundle")
    assert panel.headline.text().startswith("The model could not be loaded")
    state.set_model_status("none")
    # said once, by the model panel above; this one says what is missing here
    assert panel.headline.text() == "No prediction: predictions and explanations need a model."
