"""The classifier's Keras graph: nested backbones inlined, per-model caches, the class score.

* :func:`flatten_model` — a nested backbone (``Model`` used as a layer) hides its layers; this
  re-traces the graph with every nested functional model inlined, so they become addressable
  (same layers, same weights, identical outputs); :func:`flat_model` caches it per model.
* :func:`model_cache` — compiled functions (Grad-CAM per layer, SHAP sub-models, the score
  function) are cached per Keras model object, so building a new explainer (the GUI does per
  request) never re-traces (tracing stalls the interpreter 0.2–1 s).
* :func:`final_score_parts`, :func:`output_fn`, :func:`output_is_logit` — where the class
  *score* (pre-activation logit) is, for Grad-CAM, SHAP and the trust log-odds
  (:mod:`.scores`).

Nothing here imports TensorFlow at import time.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

from cxr_viewer.core.errors import ExplainError

if TYPE_CHECKING:
    from cxr_viewer.core.model.inference import Classifier

# Keras models, layers and tensors are typed ``Any`` (no stable Keras types).
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
    """The model with nested backbones inlined (cached), see :func:`flatten_model`."""
    cache = model_cache(model)
    if "flat" not in cache:
        cache["flat"] = flatten_model(model)
    return cache["flat"]


def _is_submodel(layer: Any) -> bool:
    return hasattr(layer, "_run_through_graph") and hasattr(layer, "_nodes_by_depth")


def has_nested_model(model: Any) -> bool:
    """True if a layer of ``model`` is itself a functional model (a nested backbone)."""
    return any(_is_submodel(layer) for layer in getattr(model, "layers", []))


def flatten_model(model: Any) -> Any:
    """``model`` with every nested functional model inlined (or ``model`` itself if none).

    The flattened model shares the original's layer objects and weights; its outputs are
    identical. A backbone called as one layer hides its layers (190 for ResNet50V2) from
    Grad-CAM/SHAP; re-applying the outer graph to the inlined backbone exposes them.
    """
    if not has_nested_model(model):
        return model
    import keras

    def operation_fn(op: Any) -> Any:
        if _is_submodel(op):

            def inline(*args: Any, **kwargs: Any) -> Any:
                inputs = args[0] if len(args) == 1 else list(args)
                return op._run_through_graph(inputs, operation_fn=operation_fn)

            return inline
        return op

    try:
        new_inputs = [
            keras.Input(shape=tuple(t.shape[1:]), dtype=t.dtype, name=f"flat_{i}")
            for i, t in enumerate(model.inputs)
        ]
        outputs = model._run_through_graph(
            new_inputs if len(new_inputs) > 1 else new_inputs[0], operation_fn=operation_fn
        )
        inputs = new_inputs if len(new_inputs) > 1 else new_inputs[0]
        return keras.Model(inputs, outputs, name=f"{model.name}_flat")
    except (ValueError, TypeError, AttributeError) as exc:
        raise ExplainError(
            "Cannot expose the layers of a nested backbone",
            f"re-tracing the model with its sub-model inlined failed: {exc}",
            "Re-export the model with a flat backbone (build it with input_tensor=).",
        ) from exc


def output_is_logit(classifier: Classifier) -> bool:
    """True when the model's own output is already a logit (a linear head)."""
    head = getattr(classifier, "head", None)
    return head is not None and head.activation == "linear"


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

    from cxr_viewer.core.model.model_io import import_tensorflow

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
