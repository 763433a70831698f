"""The cascading model randomisation check (Adebayo et al. 2018) and its cache.

An edge detector registered as an explanation method draws the same map whatever the weights:
the check must flag it as insensitive to the model. Grad-CAM on the same model must pass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
from explain_support import tiny_classifier

from cxr_viewer.core.evaluate.sanity import (
    INSENSITIVE_RHO,
    SanityResult,
    cached_result,
    randomised_copy,
    sanity_check,
    stages_for,
    weighted_layers,
)
from cxr_viewer.core.explain import registry
from cxr_viewer.core.explain.base import (
    DisplayDefaults,
    Explainer,
    ExplainerSettings,
    Heatmap,
    Run,
)


@dataclass(frozen=True)
class EdgeSettings(ExplainerSettings):
    label: ClassVar[str] = "Edges"


class EdgeExplainer(Explainer):
    """The image's gradient magnitude: a map that never asks the model anything."""

    name: ClassVar[str] = "edges"
    label: ClassVar[str] = "Edges"
    needs_gradients: ClassVar[bool] = False
    signed: ClassVar[bool] = False
    uses_layer: ClassVar[bool] = False
    display: ClassVar[DisplayDefaults] = DisplayDefaults("Edges", "inferno", shortcut="J")
    settings_type: ClassVar[type[ExplainerSettings]] = EdgeSettings

    def compute(self, x: np.ndarray, run: Run) -> Heatmap:
        gy, gx = np.gradient(x[..., 0].astype(np.float64))
        return run.heatmap(np.hypot(gx, gy).astype(np.float32), layer=None, settings={})


@pytest.fixture(scope="module")
def clf():
    pytest.importorskip("tensorflow")
    return tiny_classifier()


@pytest.fixture
def edges(monkeypatch):
    monkeypatch.setitem(registry.EXPLAINERS, "edges", EdgeExplainer)


def test_randomised_copy_changes_only_the_top_layers(clf):
    model = clf.model
    layers = weighted_layers(model)
    assert layers[0].name == "predictions"  # top first
    twin = randomised_copy(model, 1, seed=0)
    for layer in layers:
        same = all(
            np.array_equal(a, b)
            for a, b in zip(
                layer.get_weights(), twin.get_layer(layer.name).get_weights(), strict=True
            )
        )
        assert same == (layer.name != "predictions"), layer.name
    assert stages_for(6) == [1, 3, 6] and stages_for(1) == [1]


def test_an_edge_detector_is_flagged_and_gradcam_passes(clf, edges, tmp_path, monkeypatch):
    monkeypatch.setenv("CXR_SANITY_CACHE", str(tmp_path))
    edge = sanity_check(clf, "edges")
    assert edge.rho == (1.0,) * len(edge.stages)
    assert edge.insensitive and edge.text == "insensitive to the model for this model"
    cam = sanity_check(clf, "gradcam")
    assert cam.stages[-1] == "all layers" and len(cam.stages) == 3
    assert cam.final_rho < INSENSITIVE_RHO and not cam.insensitive
    assert "passed" in cam.text and "Spearman" in cam.detail
    # cached per model file and method: the second call reads the file
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == 2
    assert cached_result(clf, "gradcam") == cam
    stored = json.loads(files[0].read_text())
    assert SanityResult.from_dict(stored) in (cam, edge)


def test_no_cache_when_turned_off(clf, edges, tmp_path, monkeypatch):
    monkeypatch.setenv("CXR_SANITY_CACHE", "off")
    assert sanity_check(clf, "edges").insensitive
    assert cached_result(clf, "edges") is None
