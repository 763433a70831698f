"""Model configurations as data: what a saved model declares, and what is refused.

Everything here reads the JSON a Keras file stores (``model_config`` of a Keras 2 ``.h5``,
``config.json`` of a ``.keras``, or ``keras.saving.serialize_keras_object(model)``) without
building or running anything, so a model can be refused before any of it loads.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

from cxr_viewer.core.errors import BundleError

#: configurations of these classes are models to inline, not layers
NESTED_CLASSES = {"Functional", "Model", "Sequential"}

#: layer class → why it cannot be imported
REFUSED_CLASSES = {
    "Lambda": (
        "it holds arbitrary Python code (a Lambda layer), which safe mode refuses to load: "
        "opening it could run code from the file"
    ),
    "TFOpLambda": (
        "it calls a raw TensorFlow function on Keras tensors (a TFOpLambda layer, e.g. "
        "tf.math.truediv from an in-model preprocess_input), which Keras 3 cannot rebuild"
    ),
    "SlicingOpLambda": (
        "it slices a Keras tensor with raw TensorFlow (a SlicingOpLambda layer), which Keras 3 "
        "cannot rebuild"
    ),
}
REFUSED_HINT = (
    "Rebuild the model with standard Keras layers (e.g. keras.layers.Rescaling instead of a "
    "Lambda or in-graph preprocess_input), copy the weights over, and save it again."
)


#: Keras activation *layers* a Keras 2 layer may hold as its ``activation`` object
#: (``Conv2D(8, 3, activation=LeakyReLU(0.1))``, common in tutorials); the importer rebuilds
#: each as a layer of its own after the layer that held it (:mod:`.rebuild`)
ACTIVATION_LAYERS = (
    "LeakyReLU",
    "PReLU",
    "ELU",
    "ReLU",
    "ThresholdedReLU",
    "Softmax",
    "Activation",
)


def nested_activation(cfg: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(class, config) of the activation *object* a layer configuration holds, or None.

    A string (``"relu"``) or a serialised built-in function (``{"class_name": "function",
    "config": "relu"}``) is not an object and gives None.
    """
    act = cfg.get("activation") if isinstance(cfg, dict) else None
    if isinstance(act, dict) and isinstance(act.get("config"), dict):
        cls = act.get("class_name")
        if cls in ACTIVATION_LAYERS:
            return str(cls), copy.deepcopy(act["config"])
    return None


def find_class(obj: Any, cls: str, path: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """The key path inside ``obj`` of the first object serialised with class ``cls``, or None."""
    if isinstance(obj, dict):
        if obj.get("class_name") == cls:
            return path
        for key, value in obj.items():
            found = find_class(value, cls, (*path, str(key)))
            if found is not None:
                return found
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found = find_class(value, cls, (*path, f"[{i}]"))
            if found is not None:
                return found
    return None


#: keras.applications module → the convention (core/model/preprocess.py) its ``preprocess_input``
#: computes from 0–255 pixels of a grey image (R = G = B, so caffe's BGR flip changes nothing)
APPLICATION_CONVENTIONS = {
    "resnet": "caffe",
    "resnet50": "caffe",
    "vgg16": "caffe",
    "vgg19": "caffe",
    "resnet_v2": "symmetric",
    "mobilenet": "symmetric",
    "mobilenet_v2": "symmetric",
    "inception_v3": "symmetric",
    "inception_resnet_v2": "symmetric",
    "xception": "symmetric",
    "nasnet": "symmetric",
    "densenet": "torch",
    "efficientnet": "raw",
    "efficientnet_v2": "raw",
    "convnext": "raw",
    "mobilenet_v3": "raw",
}
_APP_MODULE = re.compile(r"^(?:tf_keras|keras|tensorflow\.keras)(?:\.src)?\.applications\.(\w+)$")


def preprocess_lambda(layer: dict[str, Any]) -> tuple[str | None, str] | None:
    """(keras.applications module or None, evidence) if ``layer`` is a Lambda wrapping a
    keras.applications ``preprocess_input``, else None.

    Read from the configuration only — nothing stored is executed or unmarshalled:

    * Keras 2 (tf_keras ``.h5``): the Lambda's ``module`` names the application
      (``tf_keras.src.applications.densenet``), and the function is either named
      (``function_type`` "function": ``preprocess_input``) or stored as byte code whose
      base64-decoded bytes name ``preprocess_input`` (searched as plain bytes);
    * Keras 3 (``.keras``): the function is stored by name only (``{"class_name": "function",
      "config": "preprocess_input"}``); the application is unknown (None) and is told by the
      backbone the Lambda feeds (:mod:`.rebuild`).
    """
    if not isinstance(layer, dict) or layer.get("class_name") != "Lambda":
        return None
    cfg = layer.get("config") or {}
    fn = cfg.get("function")
    if isinstance(fn, dict):  # Keras 3
        if fn.get("class_name") == "function" and fn.get("config") == "preprocess_input":
            return None, (
                "a Keras 3 Lambda of a function stored by the name preprocess_input only (Keras 3 "
                "does not record its module: a user function of that name would pass for it)"
            )
        return None
    match = _APP_MODULE.match(str(cfg.get("module") or ""))
    if match is None or match.group(1) not in APPLICATION_CONVENTIONS:
        return None
    app = match.group(1)
    kind = cfg.get("function_type")
    if kind == "function" and fn == "preprocess_input":
        return app, f"a Lambda of {cfg.get('module')}.preprocess_input"
    if kind == "lambda" and isinstance(fn, list) and fn and isinstance(fn[0], str):
        import base64
        import binascii

        try:
            code = base64.b64decode(fn[0], validate=False)
        except (binascii.Error, ValueError):
            return None
        if b"preprocess_input" in code:
            return app, f"a Lambda whose stored code, from {cfg.get('module')}, is preprocess_input"
    return None


def iter_layer_configs(
    config: dict[str, Any], path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], str, dict[str, Any]]]:
    """Yield ``(path, class_name, layer_config)`` for every layer, descending into nested models."""
    inner = config.get("config", {}) if isinstance(config, dict) else {}
    for layer in inner.get("layers", []) if isinstance(inner, dict) else []:
        if not isinstance(layer, dict):
            continue
        cls = str(layer.get("class_name", ""))
        name = str(layer.get("name") or layer.get("config", {}).get("name", "?"))
        yield (*path, name), cls, layer
        if cls in NESTED_CLASSES:
            yield from iter_layer_configs(layer, (*path, name))


def refuse_unsupported(config: dict[str, Any], source_name: str) -> None:
    """Raise :class:`BundleError` if any object is of a class in :data:`REFUSED_CLASSES`.

    The whole document is searched, not only the layer lists, so a Lambda wrapped in another
    layer (``TimeDistributed(Lambda(...))``) is found too.
    """
    allowed = {id(obj) for obj in _walk_objects(config) if preprocess_lambda(obj) is not None}
    for path, cls, obj in _walk_classes(config, ()):
        if cls == "Lambda" and id(obj) in allowed:
            continue  # replaced by its convention in :mod:`.rebuild`, never loaded
        if cls in REFUSED_CLASSES:
            raise BundleError(
                f"Cannot import {source_name}: layer '{'/'.join(path)}' is a {cls}",
                REFUSED_CLASSES[cls] + ".",
                REFUSED_HINT,
            )


def _walk_classes(
    obj: Any, path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], str, dict[str, Any]]]:
    if isinstance(obj, dict):
        cls = obj.get("class_name")
        cfg = obj.get("config")
        name = obj.get("name") or (cfg.get("name") if isinstance(cfg, dict) else None)
        here = (*path, str(name)) if isinstance(cls, str) and name else path
        if isinstance(cls, str):
            yield here or ("?",), cls, obj
        for value in obj.values():
            yield from _walk_classes(value, here)
    elif isinstance(obj, list):
        for value in obj:
            yield from _walk_classes(value, path)


def _walk_objects(obj: Any) -> Iterator[dict[str, Any]]:
    if isinstance(obj, dict):
        yield obj
        for value in obj.values():
            yield from _walk_objects(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _walk_objects(value)


def replace_preprocess_lambdas(config: dict[str, Any], legacy: bool) -> dict[str, Any]:
    """A copy of ``config`` whose recognised preprocess_input Lambdas are identity layers.

    What the original computes *after* the Lambda, loadable with no code: the reference the
    import is verified against, and (Keras 3) the model the weights are read from.
    """
    out = copy.deepcopy(config)
    for obj in list(_walk_objects(out)):
        if preprocess_lambda(obj) is None:
            continue
        cfg = obj.get("config") or {}
        keep = {k: cfg[k] for k in ("name", "trainable", "dtype") if k in cfg}
        if legacy:  # tf_keras has no Identity layer: a linear Activation is one
            obj["class_name"] = "Activation"
            obj["config"] = {**keep, "activation": "linear"}
        else:
            obj["class_name"] = "Identity"
            obj["module"] = "keras.layers"
            obj["registered_name"] = None
            obj["config"] = keep
            for node in obj.get("inbound_nodes") or []:  # Identity takes no mask argument
                if isinstance(node, dict) and isinstance(node.get("kwargs"), dict):
                    node["kwargs"].pop("mask", None)
    return out


def has_nested_model(config: dict[str, Any]) -> bool:
    return any(cls in NESTED_CLASSES for _, cls, _ in iter_layer_configs(config))


def declared_input_shape(config: dict[str, Any]) -> tuple[Any, ...] | None:
    """The (batch, ...) input shape a model configuration declares, or None if it declares none."""
    inner = config.get("config", {})
    layers = inner.get("layers", [])
    if not layers:
        return None
    first = layers[0]
    cfg = first.get("config", {})
    for key in ("batch_shape", "batch_input_shape"):
        if cfg.get(key) is not None:
            return tuple(cfg[key])
    if config.get("class_name") == "Sequential":
        build = inner.get("build_input_shape")
        if build is not None:
            return tuple(build)
    if first.get("class_name") in NESTED_CLASSES:
        return declared_input_shape(first)
    return None


_DROP_SUFFIXES = ("_initializer", "_regularizer", "_constraint")
_DROP_KEYS = ("batch_input_shape", "input_shape", "batch_size", "input_dim")


def sanitize_legacy(cls: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Adapt a Keras 2 layer configuration to Keras 3 (see the module docstring)."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        if key.endswith(_DROP_SUFFIXES) or key in _DROP_KEYS:
            continue
        out[key] = copy.deepcopy(value)
    if cls == "DepthwiseConv2D":
        out.pop("groups", None)  # Keras 2 stored the Conv base's `groups`; depthwise has none
    if cls == "BatchNormalization" and isinstance(out.get("axis"), list) and len(out["axis"]) == 1:
        out["axis"] = int(out["axis"][0])
    dtype = out.get("dtype")
    if isinstance(dtype, dict):  # a mixed-precision Policy object
        out["dtype"] = str(dtype.get("config", {}).get("name", "float32"))
    act = out.get("activation")
    if isinstance(act, dict) and isinstance(act.get("config"), str):
        out["activation"] = act["config"]  # Keras 2.13+ serialised a built-in function
    if cls == "LeakyReLU" and "alpha" in out:  # renamed in Keras 3
        out["negative_slope"] = out.pop("alpha")
    return out


def legacy_activation_layer(cls: str, cfg: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(Keras 3 class, config) for a Keras 2 activation layer Keras 3 no longer has.

    ``ThresholdedReLU(theta)`` (x if x > θ else 0) is ``ReLU(threshold=θ)`` (x if x ≥ θ else 0):
    the two differ only at x = θ exactly, where both are θ or 0.
    """
    if cls == "ThresholdedReLU":
        out = {k: v for k, v in cfg.items() if k in ("name", "trainable", "dtype")}
        out["threshold"] = float(cfg.get("theta", 1.0))
        return "ReLU", out
    return cls, cfg


def unrecognized_keys(msg: str, cfg: dict[str, Any]) -> list[str]:
    if "nrecognized keyword argument" not in msg and "unexpected keyword" not in msg:
        return []
    tail = msg.split("argument", 1)[-1]
    return [k for k in re.findall(r"'(\w+)'", tail) if k in cfg]
