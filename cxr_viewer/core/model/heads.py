"""Output heads: how a model's outputs become the probabilities the viewer shows.

Three kinds of classifier head are read (``metadata.json`` ``output.kind``):

* ``softmax`` — N ≥ 2 mutually exclusive classes; one probability per class, summing to 1.
* ``binary`` — one sigmoid unit: p is the positive finding's probability and the viewer shows
  the two classes ``[negative, positive]`` with probabilities ``[1 − p, p]``.
* ``multilabel`` — N independent sigmoid units (CheXNet style): each output is a finding with
  its own probability and threshold; there is no arg-max "predicted class".

``output.activation`` says what the graph itself ends with: ``softmax`` / ``sigmoid`` (the
model gives probabilities) or ``linear`` (it gives logits, and the *link* — softmax for a
softmax head, the logistic sigmoid otherwise — turns them into probabilities here). A linear
(logit) head is therefore not a fourth kind: its decision rule, labels, thresholds and CSV
columns are those of the kind whose probabilities its logits stand for, and only the link
differs — every kind accepts ``activation = "linear"`` (tests/core/test_heads.py
checks logits of each kind).

Explanations address a *class* (an index into the viewer's class list). :meth:`Head.unit_for`
says which model output unit, and with which sign, scores that class: for a binary head the
negative class is unit 0 with sign −1 (its logit is −z, its probability 1 − p, whose gradients
are those of −p).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from cxr_viewer.core.errors import BundleError
from cxr_viewer.core.model.bundle_schema import HEAD_KIND_NAMES, section

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


class Prediction(Protocol):
    """What a head kind's decision rule reads from a prediction
    (:class:`cxr_viewer.core.model.inference.Prediction`; a protocol, so this module does not import
    the inference module, which imports it)."""

    @property
    def probabilities(self) -> np.ndarray: ...

    @property
    def class_names(self) -> tuple[str, ...]: ...

    @property
    def threshold(self) -> float | None: ...

    @property
    def positive_class(self) -> str | None: ...

    @property
    def thresholds(self) -> tuple[float, ...] | None: ...

    @property
    def decision_threshold(self) -> float | None: ...

    def order(self) -> list[int]: ...

    def above(self, index: int) -> bool: ...

    def near_threshold(self, index: int) -> bool: ...

    def rule_text(self, index: int | None = None) -> str: ...


# ------------------------------------------------------------------ head kinds (plug-ins)
class HeadKind:
    """One kind of output head and every fact about it: the units it needs, how its outputs
    become the class list's probabilities, which unit (and sign) scores a class, its log-odds
    from logits, and its decision rule (read by :class:`~cxr_viewer.core.model.inference.Prediction`,
    the batch CSV, the reports and the viewer's prediction panel).

    Subclasses set the class attributes and override what differs; :func:`register_head` makes
    a kind known to bundles (``output.kind``), the importer and the viewer. This base is the
    exclusive-class rule: one predicted class, the arg-max unless a two-class bundle names a
    positive class and threshold.
    """

    #: the name ``metadata.json`` records as ``output.kind``
    name: ClassVar[str] = ""
    #: the importer's and dialogs' label
    label: ClassVar[str] = ""
    #: the entries are independent findings (multi-label), not exclusive classes
    findings: ClassVar[bool] = False
    #: what turns logits (a ``linear`` final layer) into probabilities
    link_for_logits: ClassVar[str] = "softmax"
    #: the final activations a model of this kind may end with
    activations: ClassVar[tuple[str, ...]] = ACTIVATIONS
    #: the decision threshold an imported bundle gets when none is given (None: no threshold)
    default_threshold: ClassVar[float | None] = None
    #: one output unit (a single sigmoid): the user names its positive finding
    single_unit: ClassVar[bool] = False
    #: what a pre-2 (schema 1) reader understands when the model ends with a softmax
    schema_1: ClassVar[bool] = False

    def describe(self, units: int, activation: str) -> str:
        """The model's outputs as the importer describes them, and what to name."""
        return f"{units} outputs ({activation})"

    # -- the model's outputs ---------------------------------------------------------------
    def check(self, head: Head) -> None:
        """Raise BundleError when ``head``'s units or activation do not fit this kind."""
        if head.activation == "softmax" and "softmax" not in self.activations:
            raise BundleError(
                f"A {self.name} head cannot end with a softmax",
                "softmax outputs are exclusive classes.",
                "Import the model with the softmax head.",
            )
        if head.activation not in self.activations:
            raise BundleError(
                f"A {self.name} head cannot end with a {head.activation}",
                f"it ends with {' or '.join(self.activations)}.",
            )

    def n_classes(self, units: int) -> int:
        """Entries of the viewer's class list for ``units`` outputs."""
        return units

    def units_for(self, n_classes: int) -> int:
        """Output units of a head with ``n_classes`` entries (the metadata's default)."""
        return n_classes

    def class_probabilities(self, p: np.ndarray) -> np.ndarray:
        """(n, n_classes) from the (n, units) probabilities of the units."""
        return p

    def unit_for(self, class_index: int) -> tuple[int, float]:
        """(output unit, sign) whose score explains ``class_index`` of the class list."""
        return int(class_index), 1.0

    def log_odds_from_logits(self, z: np.ndarray) -> np.ndarray:
        """(n, classes) log-odds of each class from the (n, units) logits."""
        # softmax: log p_c − log(1 − p_c) = z_c − logsumexp(z_j, j ≠ c)
        n, k = z.shape
        res = np.empty_like(z)
        for c in range(k):
            others = np.delete(z, c, axis=1)
            m = others.max(axis=1, keepdims=True)
            lse = m[:, 0] + np.log(np.exp(others - m).sum(axis=1))
            res[:, c] = z[:, c] - lse
        return res

    def positive_class(self, classes: list[str], named: Any) -> Any:
        """The bundle's positive class, given its class list and what the metadata names."""
        return named

    # -- the decision rule (Prediction) ----------------------------------------------------
    def uses_threshold(self, pred: Prediction) -> bool:
        """True when a two-class decision thresholds the positive class's probability."""
        return (
            pred.threshold is not None
            and pred.positive_class in pred.class_names
            and len(pred.class_names) == 2
        )

    def positive_index(self, pred: Prediction) -> int | None:
        if pred.positive_class in pred.class_names:
            return pred.class_names.index(pred.positive_class)
        return None

    def predicted_index(self, pred: Prediction) -> int:
        if self.uses_threshold(pred):
            pos = self.positive_index(pred)
            t = pred.decision_threshold
            assert pos is not None and t is not None
            return pos if pred.probabilities[pos] >= t else 1 - pos
        return int(np.argmax(pred.probabilities))

    def predicted_class(self, pred: Prediction) -> str:
        return pred.class_names[self.predicted_index(pred)]

    def threshold_of(self, pred: Prediction, index: int) -> float | None:
        if self.uses_threshold(pred) and index == self.positive_index(pred):
            return pred.decision_threshold
        return None

    def positive_findings(self, pred: Prediction) -> list[int]:
        return []

    def rule_text(self, pred: Prediction) -> str:
        """The headline decision in words."""
        p = pred.probabilities
        if self.uses_threshold(pred):
            pos = self.positive_index(pred)
            t = pred.decision_threshold
            assert pos is not None and t is not None
            name = pred.class_names[pos]
            if p[pos] >= t:
                return f"{name.upper()} — p {p[pos]:.2f} ≥ threshold {t:.2f}"
            other = pred.class_names[1 - pos]
            return f"{other.upper()} — p({name}) {p[pos]:.2f} < threshold {t:.2f}"
        top = self.predicted_index(pred)
        return (
            f"{pred.class_names[top].upper()} — p {p[top]:.2f}, the highest of "
            f"{len(pred.class_names)} classes"
        )

    def headline(self, pred: Prediction) -> str:
        return self.rule_text(pred)

    def is_near_threshold(self, pred: Prediction) -> bool:
        pos = self.positive_index(pred)
        return self.uses_threshold(pred) and pos is not None and pred.near_threshold(pos)


class SoftmaxHead(HeadKind):
    """N ≥ 2 mutually exclusive classes; one probability per class, summing to 1."""

    name = "softmax"
    label = "softmax: exclusive classes"
    activations = ("softmax", "linear")
    schema_1 = True

    def describe(self, units: int, activation: str) -> str:
        return f"{units} exclusive classes ({activation}) — one name per class"

    def check(self, head: Head) -> None:
        if head.units < 2:
            raise BundleError("A softmax head needs at least two outputs", f"got {head.units}.")
        if head.activation == "sigmoid":
            raise BundleError(
                "Sigmoid outputs are not mutually exclusive classes",
                "a softmax head needs a softmax (or linear) final layer.",
                "Import the model as multi-label (one finding per output).",
            )


class BinaryHead(HeadKind):
    """One sigmoid unit: p is the positive finding's probability; the class list is
    ``[negative, positive]`` with probabilities ``[1 − p, p]``. The negative class is unit 0
    with sign −1 (its logit is −z, its probability 1 − p)."""

    name = "binary"
    label = "binary: one sigmoid unit (positive finding)"
    default_threshold = 0.5
    single_unit = True

    def describe(self, units: int, activation: str) -> str:
        return (
            "one sigmoid unit: a binary model — name its positive finding "
            "(optionally the negative first)"
        )

    link_for_logits = "sigmoid"
    activations = ("sigmoid", "linear")

    def check(self, head: Head) -> None:
        if head.units != 1:
            raise BundleError(
                "A binary sigmoid head has one output unit", f"this one has {head.units}."
            )
        super().check(head)

    def n_classes(self, units: int) -> int:
        return 2

    def units_for(self, n_classes: int) -> int:
        return 1

    def class_probabilities(self, p: np.ndarray) -> np.ndarray:
        p1 = p[:, :1]
        return np.concatenate([1.0 - p1, p1], axis=1)

    def unit_for(self, class_index: int) -> tuple[int, float]:
        return 0, (1.0 if int(class_index) == 1 else -1.0)

    def log_odds_from_logits(self, z: np.ndarray) -> np.ndarray:
        return np.concatenate([-z[:, :1], z[:, :1]], axis=1)

    def positive_class(self, classes: list[str], named: Any) -> Any:
        return classes[1]

    def uses_threshold(self, pred: Prediction) -> bool:
        return True

    def positive_index(self, pred: Prediction) -> int | None:
        return 1


class MultilabelHead(HeadKind):
    """N independent sigmoid units (CheXNet style): each output is a finding with its own
    probability and threshold; there is no arg-max "predicted class"."""

    name = "multilabel"
    label = "multi-label: independent findings"
    findings = True

    def describe(self, units: int, activation: str) -> str:
        return f"{units} independent sigmoid findings (multi-label) — one name per finding"

    link_for_logits = "sigmoid"
    activations = ("sigmoid", "linear")

    def log_odds_from_logits(self, z: np.ndarray) -> np.ndarray:
        return z

    def uses_threshold(self, pred: Prediction) -> bool:
        return False

    def predicted_index(self, pred: Prediction) -> int:
        """The most probable finding at or above its threshold, else the most probable one
        (the finding explained by default — *not* a prediction that it is the only one)."""
        found = self.positive_findings(pred)
        return found[0] if found else int(np.argmax(pred.probabilities))

    def predicted_class(self, pred: Prediction) -> str:
        found = [pred.class_names[i] for i in self.positive_findings(pred)]
        return "; ".join(found) if found else "no finding above threshold"

    def threshold_of(self, pred: Prediction, index: int) -> float | None:
        return 0.5 if pred.thresholds is None else float(pred.thresholds[index])

    def positive_findings(self, pred: Prediction) -> list[int]:
        return [i for i in pred.order() if pred.above(i)]

    def rule_text(self, pred: Prediction) -> str:
        found = self.positive_findings(pred)
        if not found:
            top = pred.order()[0]
            return f"No finding above threshold (highest: {pred.rule_text(top)})"
        n = len(pred.class_names)
        return f"{len(found)} of {n} above threshold: " + "; ".join(
            pred.rule_text(i) for i in found
        )

    def headline(self, pred: Prediction) -> str:
        found = self.positive_findings(pred)
        n = len(pred.class_names)
        if not found:
            return f"No finding above threshold (0 of {n})"
        names = ", ".join(pred.class_names[i] for i in found[:3])
        more = f" +{len(found) - 3}" if len(found) > 3 else ""
        return f"{len(found)} of {n} findings above threshold: {names}{more}"

    def is_near_threshold(self, pred: Prediction) -> bool:
        return any(pred.near_threshold(i) for i in range(len(pred.class_names)))


#: name → head kind, in the order the importer offers them
HEADS: dict[str, HeadKind] = {}


def register_head(kind: HeadKind) -> HeadKind:
    """Make ``kind`` known (bundles may name it in ``output.kind``); returns it."""
    if not kind.name:
        raise ValueError("a head kind needs a name")
    HEADS[kind.name] = kind
    if kind.name not in HEAD_KIND_NAMES:
        HEAD_KIND_NAMES.append(kind.name)
    return kind


for _kind in (SoftmaxHead(), BinaryHead(), MultilabelHead()):
    register_head(_kind)

#: the names of the registered head kinds (a live view: a kind registered later is in it)
HEAD_KINDS = HEAD_KIND_NAMES


def head_kind(name: str) -> HeadKind:
    """The registered head kind ``name``; BundleError for an unknown one."""
    kind = HEADS.get(name)
    if kind is None:
        raise BundleError(
            f"Unknown output head '{name}'",
            f"CXR Lens knows {', '.join(HEADS)}.",
            "Re-export or re-import the model.",
        )
    return kind


@dataclass(frozen=True)
class Head:
    """A classifier head: its kind, the model's output units and final activation.

    Attributes
    ----------
    kind:
        The name of a registered :class:`HeadKind` (:data:`HEADS`).
    units:
        Output units of the model (1 for ``binary``).
    activation:
        The model's own final activation (:data:`ACTIVATIONS`); ``linear`` means logits.
    """

    kind: str = "softmax"
    units: int = 2
    activation: str = "softmax"

    def __post_init__(self) -> None:
        spec = head_kind(self.kind)
        if self.activation not in ACTIVATIONS:
            raise BundleError(
                f"Unknown output activation '{self.activation}'",
                f"CXR Lens knows {', '.join(ACTIVATIONS)}.",
            )
        spec.check(self)

    @property
    def spec(self) -> HeadKind:
        """The head kind's plug-in object (its facts and decision rule)."""
        return HEADS[self.kind]

    @property
    def link(self) -> str:
        """What turns the model's outputs into probabilities: identity, softmax or sigmoid."""
        if self.activation != "linear":
            return "identity"
        return self.spec.link_for_logits

    @property
    def n_classes(self) -> int:
        """Entries of the viewer's class list (2 for a binary head)."""
        return self.spec.n_classes(self.units)

    @property
    def multilabel(self) -> bool:
        """The entries are independent findings (each with its own threshold)."""
        return self.spec.findings

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """(n, n_classes) probabilities from the model's (n, units) outputs."""
        out = np.asarray(outputs, np.float32)
        if out.ndim == 1:
            out = out[:, None]
        if self.link == "softmax":
            out = softmax(out)
        elif self.link == "sigmoid":
            out = sigmoid(out)
        return np.asarray(self.spec.class_probabilities(out), np.float32)

    def unit_for(self, class_index: int) -> tuple[int, float]:
        """(output unit, sign) whose score explains ``class_index`` of the class list."""
        return self.spec.unit_for(class_index)

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
        units = int(out.get("units", head_kind(kind).units_for(n_classes)))
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
