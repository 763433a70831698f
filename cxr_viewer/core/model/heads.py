"""Output heads: how a model's outputs become the probabilities the viewer shows.

Three kinds of classifier head are read (``metadata.json`` ``output.kind``):

* ``softmax`` — N ≥ 2 mutually exclusive classes; one probability per class, summing to 1.
* ``binary`` — one sigmoid unit: p is the positive finding's probability and the viewer shows
  the two classes ``[negative, positive]`` with probabilities ``[1 − p, p]``.
* ``multilabel`` — N independent sigmoid units (CheXNet style): each output is a finding with
  its own probability and threshold; there is no arg-max "predicted class".

``output.activation`` says what the graph itself ends with: ``softmax`` / ``sigmoid`` (the
model gives probabilities) or ``linear`` (it gives logits, and the *link* — softmax for a
softmax head, the logistic sigmoid otherwise — turns them into probabilities here).

Explanations address a *class* (an index into the viewer's class list). :meth:`Head.unit_for`
says which model output unit, and with which sign, scores that class: for a binary head the
negative class is unit 0 with sign −1 (its logit is −z, its probability 1 − p, whose gradients
are those of −p).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cxr_viewer.core.errors import BundleError
from cxr_viewer.core.model.bundle_schema import section

HEAD_KINDS = ("softmax", "binary", "multilabel")
ACTIVATIONS = ("softmax", "sigmoid", "linear")
#: default half-width of the "near threshold" band (|p − threshold| below it is flagged)
DEFAULT_NEAR_BAND = 0.05


def sigmoid(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64)
    return (0.5 * (1.0 + np.tanh(0.5 * z))).astype(np.float32)


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    probs: np.ndarray = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    return probs


@dataclass(frozen=True)
class Head:
    """A classifier head: its kind, the model's output units and final activation.

    Attributes
    ----------
    kind:
        One of :data:`HEAD_KINDS`.
    units:
        Output units of the model (1 for ``binary``).
    activation:
        The model's own final activation (:data:`ACTIVATIONS`); ``linear`` means logits.
    """

    kind: str = "softmax"
    units: int = 2
    activation: str = "softmax"

    def __post_init__(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise BundleError(
                f"Unknown output head '{self.kind}'",
                f"CXR Lens knows {', '.join(HEAD_KINDS)}.",
                "Re-export or re-import the model.",
            )
        if self.activation not in ACTIVATIONS:
            raise BundleError(
                f"Unknown output activation '{self.activation}'",
                f"CXR Lens knows {', '.join(ACTIVATIONS)}.",
            )
        if self.kind == "binary" and self.units != 1:
            raise BundleError(
                "A binary sigmoid head has one output unit", f"this one has {self.units}."
            )
        if self.kind == "softmax" and self.units < 2:
            raise BundleError("A softmax head needs at least two outputs", f"got {self.units}.")
        if self.kind == "softmax" and self.activation == "sigmoid":
            raise BundleError(
                "Sigmoid outputs are not mutually exclusive classes",
                "a softmax head needs a softmax (or linear) final layer.",
                "Import the model as multi-label (one finding per output).",
            )
        if self.kind != "softmax" and self.activation == "softmax":
            raise BundleError(
                f"A {self.kind} head cannot end with a softmax",
                "softmax outputs are exclusive classes.",
                "Import the model with the softmax head.",
            )

    @property
    def link(self) -> str:
        """What turns the model's outputs into probabilities: identity, softmax or sigmoid."""
        if self.activation != "linear":
            return "identity"
        return "softmax" if self.kind == "softmax" else "sigmoid"

    @property
    def n_classes(self) -> int:
        """Entries of the viewer's class list (2 for a binary head)."""
        return 2 if self.kind == "binary" else self.units

    @property
    def multilabel(self) -> bool:
        return self.kind == "multilabel"

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """(n, n_classes) probabilities from the model's (n, units) outputs."""
        out = np.asarray(outputs, np.float32)
        if out.ndim == 1:
            out = out[:, None]
        if self.link == "softmax":
            out = softmax(out)
        elif self.link == "sigmoid":
            out = sigmoid(out)
        if self.kind == "binary":
            p = out[:, :1]
            return np.concatenate([1.0 - p, p], axis=1).astype(np.float32)
        return out.astype(np.float32)

    def unit_for(self, class_index: int) -> tuple[int, float]:
        """(output unit, sign) whose score explains ``class_index`` of the class list."""
        if self.kind == "binary":
            return 0, (1.0 if int(class_index) == 1 else -1.0)
        return int(class_index), 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "units": self.units,
            "activation": self.activation,
            "link": self.link,
            # the pre-2 readers' key: the class count
            "classes": self.n_classes,
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, Any], n_classes: int) -> Head:
        """The head a bundle's metadata describes (a bundle without ``output.kind`` is softmax)."""
        out = section(meta, "output")
        kind = str(out.get("kind", "softmax"))
        if "kind" not in out:
            # schema 1: every bundle was read as softmax over its classes, whatever it said
            return cls("softmax", n_classes, "softmax")
        units = int(out.get("units", 1 if kind == "binary" else n_classes))
        head = cls(kind, units, str(out.get("activation", "softmax")))
        if head.n_classes != n_classes:
            raise BundleError(
                "The bundle's class names do not match its output head",
                f"a {kind} head with {units} output(s) has {head.n_classes} classes, "
                f"metadata.json names {n_classes}.",
                "Re-export the bundle.",
            )
        return head


def propose_head(units: int, activation: str | None, sums_to_one: bool | None = None) -> str:
    """The likely head kind for ``units`` outputs ending in ``activation``.

    One sigmoid (or linear) unit is binary; a softmax is exclusive classes; several sigmoid
    units are independent findings (multi-label) — including two sigmoid units trained as a
    categorical pair, which then simply show two probabilities. Several linear units are read
    as softmax logits (the user may choose multilabel). With no known activation, outputs that
    sum to one (``sums_to_one``) are softmax, others independent findings.
    """
    if units == 1:
        return "binary"
    if activation in ("softmax", "linear"):
        return "softmax"
    if activation == "sigmoid":
        return "multilabel"
    return "softmax" if sums_to_one else "multilabel"
