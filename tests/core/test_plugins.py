"""Plug-ins: a toy output head and a toy 5th explanation method, each added the way a real one
is, run through the core's analysis pipeline and ``cxr-viewer batch``.

* A head kind is one :class:`~cxr_viewer.core.model.heads.HeadKind` subclass registered with
  :func:`~cxr_viewer.core.model.heads.register_head` (in ``core/heads.py`` for a built-in one): the
  bundle schema, ``Head``, ``Prediction``'s decision rule, the log-odds of the trust figures,
  the explained unit, the batch CSV and the import dialog's choices all read it from there.
* An explanation method is its module (an :class:`~cxr_viewer.core.explain.base.Explainer`
  subclass) plus one entry in :data:`~cxr_viewer.core.explain.registry.EXPLAINERS`.

The toys here live in this test file and are registered for one test only.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

from cxr_viewer.cli import main
from cxr_viewer.core.explain.base import (
    DisplayDefaults,
    Explainer,
    ExplainerSettings,
    Heatmap,
    Run,
)
from cxr_viewer.core.model import heads

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["left", "middle", "right"]


# ------------------------------------------------------------------ a toy head kind
class ExclusiveSigmoidHead(heads.HeadKind):
    """N sigmoid units read as exclusive classes (one-vs-rest training): each unit its own
    probability, the decision the arg-max, a unit's log-odds its own logit."""

    name = "exclusive_sigmoid"
    label = "exclusive sigmoid units (one-vs-rest)"
    link_for_logits = "sigmoid"
    activations = ("sigmoid", "linear")

    def log_odds_from_logits(self, z: np.ndarray) -> np.ndarray:
        return z


@pytest.fixture
def toy_head():
    kind = heads.register_head(ExclusiveSigmoidHead())
    yield kind
    heads.HEADS.pop(kind.name)
    heads.HEAD_KIND_NAMES.remove(kind.name)


def _toy_head_bundle(root: Path) -> Path:
    keras = pytest.importorskip("keras")
    from cxr_viewer.core.model.bundle import write_bundle
    from cxr_viewer.core.model.preprocess import InputSpec

    keras.utils.set_random_seed(4)
    inp = keras.Input((32, 32, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", padding="same", name="conv")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(3, activation="sigmoid", name="units")(x)
    write_bundle(
        root, keras.Model(inp, out), name="toy head", class_names=CLASSES,
        input_spec=InputSpec(32, 32, 1, "unit"), gradcam_layer="conv", shap_layers=["conv"],
        background=np.zeros((2, 32, 32, 1), np.float32),
        head=heads.Head("exclusive_sigmoid", 3, "sigmoid"),
    )  # fmt: skip
    return root


def test_a_registered_toy_head_runs_through_the_bundle_pipeline_and_batch(tmp_path, toy_head):
    from cxr_viewer.core.analysis import ExplainRequest, analyze
    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.model.bundle import open_bundle
    from cxr_viewer.core.model.inference import Classifier

    root = _toy_head_bundle(tmp_path / "bundle")
    bundle = open_bundle(root)  # the schema takes the registered kind
    assert bundle.head.spec is toy_head and bundle.head.n_classes == 3
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 48)) * 255).astype(np.uint8)).save(src / "a.png")

    clf = Classifier(bundle)
    analysis = analyze(load_study(src / "a.png"), clf, [ExplainRequest("gradcam")])
    pred = analysis.prediction
    assert pred is not None and pred.head is toy_head
    assert pred.predicted_index == int(np.argmax(pred.probabilities))  # exclusive: arg-max
    assert not pred.findings and pred.positive_findings == []
    assert pred.rule_text().endswith("the highest of 3 classes")
    result = analysis.results[0]
    assert result.heatmap is not None, result.error
    assert result.heatmap.trust["logit_exact"] == 1.0  # log-odds from the head's own logits

    out = tmp_path / "out"
    args = ["batch", str(src), "--model", str(root), "--out", str(out), "--explain", "gradcam"]
    assert main([*args, "--quiet"]) == 0
    with open(out / "predictions.csv", encoding="utf-8", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["status"] == "ok", row["error"]
    assert [float(row[f"p_{c}"]) for c in CLASSES] == pytest.approx(
        [float(p) for p in pred.probabilities], abs=1e-6
    )
    assert row["predicted_class"] == CLASSES[pred.predicted_index]
    assert row["decision"] == pred.rule_text()

    from cxr_viewer.gui import import_dialog  # the dialog offers every registered kind

    assert (toy_head.label, toy_head.name) in import_dialog.head_choices()


def test_head_kinds_are_branched_on_only_in_heads_py():
    """No product module outside core/heads.py (and the schema's list of the built-in kinds)
    compares a head kind with a built-in kind's name: the facts live in the head kind."""
    pattern = re.compile(r"""kind\s*(==|!=)\s*["'](softmax|binary|multilabel)["']""")
    found = []
    for path in (ROOT / "cxr_viewer").rglob("*.py"):
        if path.name == "heads.py":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert found == [], "\n".join(found)


# ------------------------------------------------------------------ a toy 5th method
@dataclass(frozen=True)
class CentreSettings(ExplainerSettings):
    """The toy method's one setting: the Gaussian's width as a fraction of the image."""

    label: ClassVar[str] = "Centre"
    width: float = 0.25


class CentreExplainer(Explainer):
    """A toy method that ignores the model: a centred Gaussian (the centre prior)."""

    name: ClassVar[str] = "centre"
    label: ClassVar[str] = "Centre prior (toy)"
    needs_gradients: ClassVar[bool] = False
    signed: ClassVar[bool] = False
    uses_layer: ClassVar[bool] = False
    display: ClassVar[DisplayDefaults] = DisplayDefaults("Centre", "magma", shortcut="C")
    settings_type: ClassVar[type[ExplainerSettings]] = CentreSettings
    settings: CentreSettings

    def compute(self, x: np.ndarray, run: Run) -> Heatmap:
        h, w = x.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w]
        s = self.settings.width * min(h, w)
        values = np.exp(-(((yy - h / 2) / s) ** 2 + ((xx - w / 2) / s) ** 2) / 2)
        return run.heatmap(values.astype(np.float32), settings=self.settings.as_dict(), seed=None)


def test_a_fifth_method_is_its_module_plus_one_registry_entry(tmp_path, monkeypatch, tiny_bundle):
    from cxr_viewer.core.analysis import ExplainRequest, analyze
    from cxr_viewer.core.explain import registry
    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.model.inference import load_classifier

    monkeypatch.setitem(registry.EXPLAINERS, "centre", CentreExplainer)  # the one line
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((30, 34)) * 255).astype(np.uint8)).save(src / "a.png")

    clf = load_classifier(tiny_bundle)
    analysis = analyze(load_study(src / "a.png"), clf, [ExplainRequest("centre")])
    hm = analysis.results[0].heatmap
    assert hm is not None and hm.method == "centre" and "deletion_auc" in hm.trust

    out = tmp_path / "out"
    args = ["batch", str(src), "--model", str(tiny_bundle), "--out", str(out)]
    assert main([*args, "--explain", "gradcam,centre", "--quiet"]) == 0
    with open(out / "predictions.csv", encoding="utf-8", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["status"] == "ok", row["error"]
    assert row["centre_status"] == "ok" and row["centre_deletion_auc"] != ""
    assert (out / row["map_centre"]).is_file()
    assert row["agreement"]  # compared with Grad-CAM like any method
