"""The contract every registered explainer keeps, checked on one tiny model (cf. xplique)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from explain_support import tiny_classifier

from cxr_viewer.core.errors import Cancelled, ExplainError
from cxr_viewer.core.explain.base import Heatmap
from cxr_viewer.core.explain.registry import EXPLAINERS, create_explainer, explainer_class
from cxr_viewer.core.progress import CancelToken

pytest.importorskip("tensorflow")

# small settings so the whole contract runs in seconds; several batches each (a method not
# listed here runs with its registry entry's ``quick_settings``)
FAST = {
    "lime": {"num_samples": 64, "chunk_size": 16, "n_segments": 16, "min_samples": 32},
    "shap": {"nsamples": 24, "batch_size": 4},
}
#: every registered method, plus the Grad-CAM++ variant
METHODS = [*EXPLAINERS, "gradcam++"]
#: methods that run many model batches and check cancel between them
BATCHED = [m for m, cls in EXPLAINERS.items() if cls.batched]


@pytest.fixture(scope="module")
def clf():
    return tiny_classifier()


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(7)
    return rng.random((32, 32, 1), dtype=np.float32)


def _explainer(clf, method, **extra):
    settings = FAST.get(method, explainer_class(method).quick_settings)
    return create_explainer(method, clf, {**settings, **extra})


def test_registry_names_and_import_is_light():
    assert {"gradcam", "lime", "shap"} <= set(EXPLAINERS)
    for name, cls in EXPLAINERS.items():
        assert cls.name == name and cls.label and cls.display.short_label
    shortcuts = [cls.display.shortcut for cls in EXPLAINERS.values()]
    assert all(len(k) == 1 and k.isupper() for k in shortcuts)
    assert len(set(shortcuts)) == len(shortcuts), "two methods share a shortcut"
    for cls in EXPLAINERS.values():
        cls.settings_type.from_mapping(cls.quick_settings)  # valid names, types and ranges
        if cls.samples is not None:
            assert cls.samples.key in cls.settings_type.names()
            assert cls.samples.default in cls.samples.choices
    code = (
        "import sys, cxr_viewer.core.explain.registry, cxr_viewer.core.explain.overlay, "
        "cxr_viewer.core.explain.layers, cxr_viewer.core.evaluate.trust\n"
        "print(','.join(m for m in ('tensorflow', 'keras', 'shap', 'lime', 'PySide6') "
        "if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_unknown_method_and_setting_are_refused(clf):
    with pytest.raises(ExplainError, match="Unknown explanation method"):
        create_explainer("no-such-method", clf)
    with pytest.raises(ExplainError, match="num_sample"):
        create_explainer("lime", clf, {"num_sample": 10})


@pytest.mark.parametrize("method", METHODS)
def test_shape_finite_metadata_and_progress(clf, image, method):
    fractions: list[float] = []
    partials: list[Heatmap] = []
    hm = _explainer(clf, method).explain(
        image, 1, progress=lambda f, m: fractions.append(f), partial=partials.append
    )
    assert hm.values.shape == (32, 32)
    assert hm.values.dtype == np.float32
    assert np.all(np.isfinite(hm.values))
    assert hm.method == method
    assert hm.target_class == 1 and hm.class_name == "lesion"
    assert hm.signed == explainer_class(method).signed
    if not hm.signed:
        assert hm.values.min() >= 0
    assert hm.runtime_s > 0
    assert not hm.partial
    assert fractions and fractions[-1] == 1.0
    assert all(b >= a for a, b in zip(fractions, fractions[1:], strict=False))
    if explainer_class(method).uses_layer:
        assert hm.layer in _explainer(clf, method).layers()
    if method == "lime":
        assert partials and all(p.partial for p in partials)
        assert hm.seed == 0


@pytest.mark.parametrize("method", METHODS)
def test_deterministic_for_a_seed(clf, image, method):
    a = _explainer(clf, method).explain(image, 1)
    b = _explainer(clf, method).explain(image, 1)
    np.testing.assert_array_equal(a.values, b.values)
    if "seed" in explainer_class(method).settings_type.names():
        c = _explainer(clf, method, seed=1).explain(image, 1)
        assert not np.array_equal(a.values, c.values)


@pytest.mark.parametrize("method", METHODS)
def test_cancelled_before_start_does_no_model_work(clf, image, method, monkeypatch):
    calls = []
    real = clf.predict_inputs
    monkeypatch.setattr(clf, "predict_inputs", lambda *a, **k: calls.append(1) or real(*a, **k))
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        _explainer(clf, method).explain(image, 0, cancel=token)
    assert calls == []


@pytest.mark.parametrize("method", BATCHED)
def test_cancel_stops_within_one_batch(clf, image, method):
    token = CancelToken()
    after: list[float] = []

    def progress(f: float, msg: str) -> None:
        if token.cancelled:
            after.append(f)
        elif 0.0 < f < 1.0:
            token.cancel()  # the user presses Cancel after the first batch

    with pytest.raises(Cancelled):
        _explainer(clf, method).explain(image, 1, progress=progress, cancel=token)
    assert len(after) <= 1  # at most the batch already running finishes


def test_explain_study_resizes_to_study(clf):
    from pathlib import Path

    from cxr_viewer.core.explain.base import explain_study
    from cxr_viewer.core.io.study import Study, Window

    pixels = np.random.default_rng(0).random((50, 40)).astype(np.float32) * 1000
    study = Study(
        path=Path("x.png"), format="png", pixels=pixels, auto_window=Window(500.0, 1000.0)
    )
    hm = explain_study(_explainer(clf, "gradcam"), study, 1)
    assert hm.values.shape == (50, 40)


def test_bad_inputs_raise_explain_errors(clf, image):
    with pytest.raises(ExplainError, match="does not match"):
        _explainer(clf, "gradcam").explain(np.zeros((10, 10, 1), np.float32), 0)
    with pytest.raises(ExplainError, match="out of range"):
        _explainer(clf, "lime").explain(image, 5)
    with pytest.raises(ExplainError, match="no layer"):
        create_explainer("gradcam", clf, {"layer": "nope"}).explain(image, 0)
    with pytest.raises(ExplainError, match="not valid"):
        create_explainer("shap", clf, {"layer": "b1_conv1"}).explain(image, 0)
