"""The trainer's heads are one table (trainer/heads.py): config names them, nothing else does.

A toy head registered from this file alone trains and exports a tiny model: its activation,
loss, accuracy and the viewer head kind it declares are all the trainer needs to know.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from trainer import config
from trainer.heads import TRAINER_HEADS, TrainerHead, register_trainer_head, trainer_head

TRAINER = Path(__file__).resolve().parents[2] / "trainer"


def test_config_offers_exactly_the_registered_heads():
    assert set(config.HEADS) == set(TRAINER_HEADS)
    assert [n for n, h in TRAINER_HEADS.items() if h.findings] == ["multilabel"]
    assert trainer_head("cam").class_activation_map and trainer_head("cam").viewer_kind == "softmax"
    assert trainer_head("multilabel").bundle_head(3).kind == "multilabel"


def test_no_module_but_the_table_and_config_branches_on_a_head_name():
    """Outside trainer/heads.py and the config's checks no module compares with a head's
    name or reads a ``multilabel`` attribute (but ``cxr-train synth --multilabel``, which
    draws phantoms): they ask the run's head."""
    offenders = []
    for path in sorted(TRAINER.rglob("*.py")):
        if path.name in ("heads.py", "config.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            named = isinstance(node, ast.Compare) and any(
                isinstance(c, ast.Constant) and c.value in TRAINER_HEADS
                for c in (node.left, *node.comparators)
            )
            flag = (
                isinstance(node, ast.Attribute)
                and node.attr == "multilabel"
                and not (isinstance(node.value, ast.Name) and node.value.id == "args")
            )
            if named or flag:
                offenders.append(f"{path.relative_to(TRAINER.parent)}:{node.lineno}")
    assert not offenders, offenders


class SmoothedHead(TrainerHead):
    """Exclusive classes trained on label-smoothed cross-entropy (a toy)."""

    name = "smoothed"

    def __init__(self) -> None:
        self.losses: list = []

    def loss(self):
        import keras

        self.losses.append(keras.losses.CategoricalCrossentropy(label_smoothing=0.1))
        return self.losses[-1]


@pytest.fixture
def smoothed(monkeypatch):
    head = register_trainer_head(SmoothedHead())
    monkeypatch.setattr(config, "HEADS", (*config.HEADS, head.name))
    yield head
    TRAINER_HEADS.pop(head.name)


@pytest.mark.slow
def test_a_toy_head_trains_and_exports(smoothed, tmp_path):
    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.model.inference import load_classifier
    from trainer.run import run_training
    from trainer.synth import make_phantoms, write_phantoms

    csv = write_phantoms(tmp_path / "data", make_phantoms(48, 32, seed=3), formats=("png",))
    cfg = config.load_config(
        None,
        {
            "data.format": "csv",
            "data.root": str(csv),
            "model.head": "smoothed",
            "model.input_size": 32,
            "model.blocks": 1,
            "model.init_filters": 8,
            "augment.enabled": False,
            "train.epochs": 1,
            "train.verbose": 0,
            "train.tensorboard": False,
            "evaluate.pixel_baseline": False,
            "export.background_size": 2,
        },
    )
    out = run_training(cfg, tmp_path / "run", progress=False)
    assert smoothed.losses  # the model was compiled with the toy head's loss
    bundle = out.bundle
    assert bundle.head.kind == "softmax" and bundle.head.activation == "softmax"
    assert bundle.metadata["config"]["model"]["head"] == "smoothed"
    pred = load_classifier(bundle.root).predict_study(load_study(next(csv.parent.rglob("*.png"))))
    assert pred.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
