"""The trainer's output heads: what each ``model.head`` changes, in one table.

A trainer head says how its model ends (the output :attr:`~TrainerHead.activation`, or the
class-activation head of :mod:`trainer.models`), how the manifest's labels become class names,
the codes the split stratifies on and the training targets, the loss and accuracy metric it
trains with, and the viewer head kind its bundle declares
(:attr:`~TrainerHead.viewer_kind`, a kind of :mod:`cxr_viewer.core.model.heads`). What the
viewer already knows about that kind is read from there rather than repeated: whether the
outputs are independent findings (:attr:`~TrainerHead.findings`: multi-hot targets,
per-finding thresholds and the multi-label evaluation and report; no class weights or
oversampling) comes from its ``findings``.

The rest of the trainer asks the head of its run (:func:`trainer_head`, or
``PreparedData.head``) and names none. A new head is a :class:`TrainerHead` subclass and one
:func:`register_trainer_head` call below, plus its name in ``trainer.config.HEADS`` (with any
setting it needs checked there).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd

from cxr_viewer.core.errors import TrainingError
from cxr_viewer.core.model.heads import Head, head_kind

from .config import DataConfig
from .datasets import class_names_for, finding_names_for, finding_sets


class TrainerHead:
    """One value of ``model.head``. This base is exclusive classes: one label per image, one-hot
    targets, a softmax over pooled dense features, categorical cross-entropy."""

    #: the ``model.head`` value
    name: ClassVar[str] = ""
    #: the output layer's activation
    activation: ClassVar[str] = "softmax"
    #: the class-activation head (``trainer.models``) instead of pooled dense layers
    class_activation_map: ClassVar[bool] = False
    #: the registered viewer head kind (``output.kind``) the exported bundle declares
    viewer_kind: ClassVar[str] = "softmax"

    @property
    def findings(self) -> bool:
        """The outputs are independent findings (the viewer kind's own fact)."""
        return head_kind(self.viewer_kind).findings

    def bundle_head(self, n_classes: int) -> Head:
        """The head the bundle's ``metadata.json`` records."""
        return Head(self.viewer_kind, n_classes, self.activation)

    def class_names(self, manifest: pd.DataFrame, data: DataConfig) -> list[str]:
        """The output order for ``manifest``."""
        return class_names_for(manifest, data)

    def codes(self, labels: pd.Series, class_names: list[str]) -> pd.Series:
        """Each image's code ``y``, the split and the background stratify on: its class index."""
        index = {c: i for i, c in enumerate(class_names)}
        return labels.map(index).astype(np.int64)

    def targets(self, part: pd.DataFrame, class_names: list[str]) -> np.ndarray:
        """Training targets (n, k) float32 of the manifest rows ``part``: one-hot rows."""
        return np.eye(len(class_names), dtype=np.float32)[part["y"].to_numpy(np.int64)]

    def fit_labels(self, part: pd.DataFrame, class_names: list[str]) -> np.ndarray:
        """What the input pipeline takes for ``part``: class indices (it makes them one-hot)."""
        return part["y"].to_numpy(np.int64)

    def loss(self) -> Any:
        import keras

        return keras.losses.CategoricalCrossentropy()

    def accuracy(self) -> Any:
        import keras

        return keras.metrics.CategoricalAccuracy(name="accuracy")


class SoftmaxTrainerHead(TrainerHead):
    """Exclusive classes on pooled dense features (the default)."""

    name = "softmax"


class CamTrainerHead(TrainerHead):
    """Exclusive classes through a class-activation head: the map is the decision, and box
    supervision (``[boxes]``) acts on its per-location logits."""

    name = "cam"
    class_activation_map = True


class MultilabelTrainerHead(TrainerHead):
    """Independent findings, several per image ("a|b" labels; "no_finding" is none): one
    sigmoid per finding, binary cross-entropy, multi-hot targets."""

    name = "multilabel"
    activation = "sigmoid"
    viewer_kind = "multilabel"

    def class_names(self, manifest: pd.DataFrame, data: DataConfig) -> list[str]:
        return finding_names_for(manifest, data)

    def codes(self, labels: pd.Series, class_names: list[str]) -> pd.Series:
        """The code of each image's finding *set*."""
        index = {c: i for i, c in enumerate(sorted(labels.unique()))}
        return labels.map(index).astype(np.int64)

    def targets(self, part: pd.DataFrame, class_names: list[str]) -> np.ndarray:
        """Multi-hot rows."""
        sets = finding_sets(part["label"])
        return np.array([[c in s for c in class_names] for s in sets], dtype=np.float32).reshape(
            len(sets), len(class_names)
        )

    def fit_labels(self, part: pd.DataFrame, class_names: list[str]) -> np.ndarray:
        return self.targets(part, class_names)

    def loss(self) -> Any:
        import keras

        return keras.losses.BinaryCrossentropy()

    def accuracy(self) -> Any:
        import keras

        return keras.metrics.BinaryAccuracy(name="accuracy")


#: the trainer heads by ``model.head`` name
TRAINER_HEADS: dict[str, TrainerHead] = {}


def register_trainer_head(head: TrainerHead) -> TrainerHead:
    """Make ``head`` a value of ``model.head`` the trainer can run; returns it."""
    if not head.name:
        raise ValueError("a trainer head needs a name")
    head_kind(head.viewer_kind)  # an unknown viewer kind fails here, not at export
    TRAINER_HEADS[head.name] = head
    return head


for _head in (SoftmaxTrainerHead(), MultilabelTrainerHead(), CamTrainerHead()):
    register_trainer_head(_head)


def trainer_head(name: str) -> TrainerHead:
    """The registered trainer head ``name``; TrainingError for an unknown one."""
    head = TRAINER_HEADS.get(name)
    if head is None:
        raise TrainingError(
            f"Unknown model.head '{name}'", f"the trainer knows {', '.join(TRAINER_HEADS)}."
        )
    return head
