"""Helpers shared by the explainers: per-model caches, class checks, layer lookup.

Compiled functions (Grad-CAM per layer, SHAP sub-models) are cached per Keras model object, so
building a new explainer (the GUI does per request) never re-traces (tracing stalls the
interpreter 0.2–1 s). Nothing here imports TensorFlow at import time.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from cxr_viewer.core.errors import ExplainError

from .layers import flatten_model

if TYPE_CHECKING:
    from cxr_viewer.core.inference import Classifier
    from cxr_viewer.core.preprocess import InputSpec

# Keras models, layers and tensors are typed ``Any`` (see .layers).
_CACHES: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def model_cache(model: Any) -> dict[Any, Any]:
    """A dict living as long as ``model``, for compiled functions built from it."""
    with _LOCK:
        try:
            cache = _CACHES.get(model)
        except TypeError:  # unhashable model: fall back to an attribute
            attr: dict[Any, Any] | None = getattr(model, "_cxr_explain_cache", None)
            if attr is None:
                attr = {}
                model._cxr_explain_cache = attr
            return attr
        if cache is None:
            cache = {}
            _CACHES[model] = cache
        return cache


def flat_model(model: Any) -> Any:
    """The model with nested backbones inlined (cached), see :func:`layers.flatten_model`."""
    cache = model_cache(model)
    if "flat" not in cache:
        cache["flat"] = flatten_model(model)
    return cache["flat"]


def get_layer(model: Any, name: str) -> Any:
    """Layer ``name`` of the (flattened) model, or ExplainError listing what exists."""
    try:
        return model.get_layer(name)
    except ValueError as exc:
        raise ExplainError(
            f"The model has no layer '{name}'",
            "the layer name is not in the model (or hidden inside a nested backbone).",
            "Choose one of the layers the explainer offers.",
        ) from exc


def check_target(classifier: Classifier, target_class: int) -> int:
    """``target_class`` as an int within the classifier's classes."""
    n = len(classifier.class_names)
    t = int(target_class)
    if not 0 <= t < n:
        raise ExplainError(
            f"Class index {target_class} is out of range",
            f"the model has {n} classes ({', '.join(classifier.class_names)}).",
            "Choose one of the model's classes.",
        )
    return t


def target_unit(classifier: Classifier, target_class: int) -> tuple[int, float]:
    """(model output unit, sign) whose score explains class ``target_class``.

    Softmax and multi-label heads: the class's own unit. A single-sigmoid (binary) head has one
    unit z for both classes: the positive class is explained by z, the negative by −z.
    """
    head = getattr(classifier, "head", None)
    if head is None:
        return int(target_class), 1.0
    unit, sign = head.unit_for(int(target_class))
    return int(unit), float(sign)


def output_is_logit(classifier: Classifier) -> bool:
    """True when the model's own output is already a logit (a linear head)."""
    head = getattr(classifier, "head", None)
    return head is not None and head.activation == "linear"


def check_input(classifier: Classifier, x: np.ndarray) -> np.ndarray:
    """``x`` as float32 (h, w, c) matching the classifier's input spec."""
    spec = classifier.spec
    x = np.asarray(x, dtype=np.float32)
    if x.shape != (spec.height, spec.width, spec.channels):
        raise ExplainError(
            "The image does not match the model input",
            f"got {x.shape}, the model takes ({spec.height}, {spec.width}, {spec.channels}).",
            "Pass the output of cxr_viewer.core.preprocess.study_to_input.",
        )
    if not np.all(np.isfinite(x)):
        raise ExplainError("The model input contains NaN or infinite values")
    return x


def to_unit(x: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Model input back to the [0, 1] display scale (inverse of ``preprocess.normalize``)."""
    return np.asarray(np.clip(spec.to_unit(x), 0.0, 1.0), dtype=np.float32)


def final_score_parts(model: Any) -> tuple[Any, str, Any]:
    """How to get the class *score* (pre-softmax) for Grad-CAM (Selvaraju et al. §3).

    Returns ``(tensor, kind, layer)``: for a final Dense layer with a softmax/sigmoid activation
    the tensor is that layer's input and ``kind`` is ``"dense_logit"`` (logits = h·W + b); for a
    final Activation layer it is that layer's input (``"logit"``); otherwise the model output
    itself (``"probability"``).
    """
    out = model.outputs[0]
    op, node_index, _ = out._keras_history
    # the input of *this* call (a flattened model calls its head layers a second time)
    node_inputs = op._inbound_nodes[node_index].input_tensors
    cls = type(op).__name__
    act = getattr(op, "activation", None)
    act_name = getattr(act, "__name__", str(act))
    if len(node_inputs) == 1 and cls == "Dense" and act_name in ("softmax", "sigmoid"):
        return node_inputs[0], "dense_logit", op
    is_softmax = cls == "Softmax" or (cls == "Activation" and act_name in ("softmax", "sigmoid"))
    if len(node_inputs) == 1 and is_softmax:
        return node_inputs[0], "logit", op
    return out, "probability", op


def output_fn(model: Any, output: str) -> tuple[Any, Any, str]:
    """(output tensor, compiled x -> output) for the class *score* (SHAP, trust log-odds).

    "logit": the pre-softmax scores (for a final Dense softmax layer a linear twin sharing its
    weights is applied to the Dense layer's input; for a final Activation its input). Along the
    interpolation path of a ReLU network the logit is piecewise linear, so expected gradients
    integrate it accurately with few samples; a saturated softmax is a steep step that needs
    many. "probability": the model output itself. A model without a separable softmax gives
    probabilities either way.
    """
    cache = model_cache(model)
    key = ("shap_output", output)
    if key in cache:
        tensor, fn, used = cache[key]
        return tensor, fn, str(used)
    import keras

    from cxr_viewer.core.model_io import import_tensorflow

    tf = import_tensorflow()
    tensor = model.outputs[0]
    used = "probability"
    if output == "logit":
        score, kind, final = final_score_parts(model)
        if kind == "logit":
            tensor, used = score, "logit"
        elif kind == "dense_logit":
            twin = keras.layers.Dense(
                final.units, activation=None, use_bias=final.use_bias, name=f"{final.name}_logit"
            )
            tensor = twin(score)
            twin.set_weights(final.get_weights())
            used = "logit"
    sub = keras.Model(model.inputs, tensor)
    shape = [None, *model.inputs[0].shape[1:]]
    fn = tf.function(
        lambda x: sub(x, training=False), input_signature=[tf.TensorSpec(shape, tf.float32)]
    )
    cache[key] = (tensor, fn, used)
    return tensor, fn, used
