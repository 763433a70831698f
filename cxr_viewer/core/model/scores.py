"""The class score that still moves when the probability is saturated: its log-odds.

A confident model's probability sits at 0.99–1.00, where removing a fifth of the image hardly
changes it (the sigmoid is flat there), so a faithfulness test on p cannot tell a good map from
a bad one. The log-odds log(p / (1 − p)) of the explained class is the same information on a
scale that keeps moving: the model's logit for a sigmoid unit (−logit for a binary head's
negative class), and for a softmax head the class logit minus the log-sum-exp of the others
(the log-odds of p_c, exactly). It is computed from the model's pre-activation outputs — the
twin of a final Dense softmax/sigmoid layer without its activation, or the input of a final
Activation/Softmax layer — so it is not clipped where float32 probabilities round to 1.0. A
model whose activation cannot be separated gives the log-odds of its probabilities (clipped
at :data:`P_CLIP`; such scores are flagged ``from_probability``).

:func:`class_log_odds` returns (n, classes) log-odds; ``sigmoid`` of a column is the class
probability the viewer shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cxr_viewer.core.progress import CancelToken

if TYPE_CHECKING:
    from cxr_viewer.core.model.inference import Classifier

#: probabilities are clipped to [P_CLIP, 1 − P_CLIP] when the log-odds come from them
P_CLIP = 1e-7


def _score_fn(classifier: Classifier) -> tuple[Any, str]:
    """(compiled x -> pre-activation outputs, "logit" | "probability") for the classifier."""
    from cxr_viewer.core.model.graph import flat_model, output_fn, output_is_logit

    _, fn, used = output_fn(flat_model(classifier.model), "logit")
    if used == "probability" and output_is_logit(classifier):
        used = "logit"  # a linear head: the model's own output is the logit
    return fn, used


def log_odds_from_outputs(classifier: Classifier, outputs: np.ndarray, used: str) -> np.ndarray:
    """(n, classes) log-odds of each class from the model's (n, units) outputs."""
    z = np.asarray(outputs, np.float64)
    if z.ndim == 1:
        z = z[:, None]
    head = classifier.head
    if used != "logit":
        p = np.clip(head.probabilities(z).astype(np.float64), P_CLIP, 1.0 - P_CLIP)
        out: np.ndarray = np.log(p) - np.log1p(-p)
        return out
    return head.spec.log_odds_from_logits(z)  # the head kind's own rule (core.heads)


def class_log_odds(
    classifier: Classifier, x: np.ndarray, *, cancel: CancelToken | None = None
) -> np.ndarray:
    """(n, classes) log-odds for preprocessed inputs (n, h, w, c), in the classifier's batches."""
    fn, used = _score_fn(classifier)
    x = np.asarray(x, np.float32)
    outs = []
    step = max(1, int(classifier.batch_size))
    for start in range(0, len(x), step):
        if cancel is not None:
            cancel.raise_if_cancelled()
        outs.append(np.asarray(fn(x[start : start + step]), np.float64))
    if not outs:
        return np.zeros((0, len(classifier.class_names)), np.float64)
    return log_odds_from_outputs(classifier, np.concatenate(outs), used)


def score_kind(classifier: Classifier) -> str:
    """ "logit" when the log-odds come from pre-activation outputs, else "probability"."""
    return _score_fn(classifier)[1]


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The probability of log-odds ``z`` (float64)."""
    z = np.asarray(z, np.float64)
    out: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * z))
    return out
