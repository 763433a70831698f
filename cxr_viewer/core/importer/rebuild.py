"""Rebuild a saved Keras model configuration as one flat Keras 3 functional graph.

A backbone used as one layer (``base = MobileNetV2(...); x = base(inputs)``) hides its layers
from Grad-CAM and SHAP. Here the configuration is replayed layer by layer and every nested
``Functional``/``Sequential`` model is *inlined*: its inner layers are called directly on the
outer graph's tensors, so each one becomes a layer of the flat model with a single call node
(``model.get_layer(name).output`` is then a tensor of the flat graph, see
docs/ARCHITECTURE.md). The arithmetic is the same, so the outputs are identical.

Two configuration dialects are read, both as plain JSON (nothing is executed):

* Keras 2 (``tf.keras`` ``.h5`` ``model_config``): nodes are lists
  ``[layer_name, node_index, tensor_index, kwargs]``; layer configurations may carry keys Keras 3
  no longer accepts, which :func:`.configs.sanitize_legacy` adapts or drops (initialisers, regularisers
  and constraints are dropped: the weights are loaded afterwards and they do not affect
  inference).
* Keras 3 (``keras.saving.serialize_keras_object(model)``): nodes are ``{"args", "kwargs"}`` with
  ``__keras_tensor__`` references.

Keras 2 layers are created only from the built-in classes of ``keras.layers`` (by name, with
``from_config``); Keras 3 layers with ``keras.saving.deserialize_keras_object`` in safe mode.
``Lambda`` layers (arbitrary Python) and ``TFOpLambda`` layers (raw TensorFlow calls, which
Keras 3 cannot express) are refused before anything is built.

A Keras 2 layer holding an activation *object* (``Conv2D(..., activation=LeakyReLU(0.1))``,
also ``PReLU``, ``ELU``, ``ReLU(max_value=6)``, or ``Activation(LeakyReLU())``) is stored with
the object's class name only, which Keras 3's ``from_config`` cannot resolve. It is rebuilt as
the layer without activation followed by the activation as a standard layer of its own
(``<layer>_<activation>``; an ``Activation`` layer is replaced by its object under its own
name): the arithmetic is the same, and a ``PReLU``'s slopes, stored under the holding layer,
are loaded into the new layer (:attr:`FlatModel.weight_slices`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cxr_viewer.core.errors import BundleError

from .configs import (
    NESTED_CLASSES,
    REFUSED_CLASSES,
    REFUSED_HINT,
    find_class,
    legacy_activation_layer,
    nested_activation,
    preprocess_lambda,
    sanitize_legacy,
    unrecognized_keys,
)

_KERAS_TENSOR = "__keras_tensor__"

#: a serialised model or layer (JSON); Keras tensors are Any (Keras has no types)
_Config = dict[str, Any]
_Tensors = list[Any]


class _NotReady(Exception):
    """An inbound tensor of a node has not been computed yet (the node waits for a later pass)."""


@dataclass
class FlatModel:
    """A rebuilt flat Keras 3 model and where each of its layers came from.

    Attributes
    ----------
    model:
        The flat ``keras.Model`` (fresh, unweighted until weights are loaded).
    sources:
        Flat layer name → path of names in the original model, outermost first
        (``("mobilenetv2_0.35_32", "Conv1")`` for a layer of a nested backbone).
    nested:
        Names of the nested models that were inlined (empty for a model that was flat).
    renamed:
        Flat name → original name, for inner layers renamed because the name was taken.
    notes:
        What was adapted to Keras 3 (dropped configuration keys, activation objects rebuilt as
        layers), for the bundle metadata.
    weight_slices:
        Flat name → (start, stop) of the stored weights of its source layer that are its own,
        for a layer split in two (a ``PReLU`` activation object's slopes are stored after the
        kernel and bias of the layer that held it); other layers take all of them.
    """

    model: Any
    sources: dict[str, tuple[str, ...]] = field(default_factory=dict)
    nested: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    weight_slices: dict[str, tuple[int, int | None]] = field(default_factory=dict)


def rebuild_flat(config: _Config, *, legacy: bool, input_shape: tuple[int, int, int]) -> FlatModel:
    """Rebuild ``config`` (a serialised Functional or Sequential model) as a flat Keras 3 model.

    Parameters
    ----------
    config:
        ``{"class_name": ..., "config": {...}}`` of the whole model.
    legacy:
        True for a Keras 2 ``model_config`` (h5), False for a Keras 3 serialisation.
    input_shape:
        (rows, columns, channels) of the new model input.
    """
    import keras

    return _Rebuilder(keras, legacy).build(config, input_shape)


class _Rebuilder:
    def __init__(self, keras: Any, legacy: bool) -> None:
        self.keras = keras
        self.legacy = legacy
        self.result = FlatModel(model=None)
        self.leaves: dict[tuple[str, ...], Any] = {}
        #: the activation layer split off a leaf that held an activation object
        self.after: dict[tuple[str, ...], Any] = {}
        self.used: set[str] = set()

    # -- entry point ---------------------------------------------------------------------
    def build(self, config: _Config, input_shape: tuple[int, int, int]) -> FlatModel:
        cls = config.get("class_name")
        if cls not in NESTED_CLASSES:
            raise BundleError(
                f"Cannot flatten a '{cls}' model",
                "only Functional and Sequential models have a layer graph CXR Lens can explain "
                "(a subclassed model's layers are Python code, not data).",
                "Rebuild the model with the functional API and save it again.",
            )
        name = str(config.get("config", {}).get("name") or "input")
        inp = self.keras.Input(shape=tuple(input_shape), name=self._input_name(config, name))
        self.used.add(inp.name)
        outputs = self._inline(config, [inp], ())
        if len(outputs) != 1:
            raise BundleError(
                "The model has several outputs",
                f"it returns {len(outputs)} tensors; CXR Lens explains a classifier with one "
                "output (one value per class or finding).",
                "Export a model with a single output layer (softmax, sigmoid or logits).",
            )
        self.result.model = self.keras.Model(inp, outputs[0], name=config["config"].get("name"))
        return self.result

    def _input_name(self, config: _Config, fallback: str) -> str:
        layers = config.get("config", {}).get("layers", [])
        if layers and layers[0].get("class_name") == "InputLayer":
            return str(layers[0].get("config", {}).get("name") or fallback)
        return f"{fallback}_input"

    # -- models --------------------------------------------------------------------------
    def _inline(self, config: _Config, inputs: _Tensors, scope: tuple[str, ...]) -> _Tensors:
        if config.get("class_name") == "Sequential":
            return self._run_sequential(config["config"], inputs, scope)
        return self._run_functional(config["config"], inputs, scope)

    def _run_sequential(self, cfg: _Config, inputs: _Tensors, scope: tuple[str, ...]) -> _Tensors:
        if len(inputs) != 1:
            raise BundleError("A Sequential model received several inputs", f"at {scope}.")
        x = inputs
        for layer_data in cfg.get("layers", []):
            if layer_data.get("class_name") == "InputLayer":
                continue
            x = self._call(layer_data, x, {}, scope)
        return x

    def _run_functional(self, cfg: _Config, inputs: _Tensors, scope: tuple[str, ...]) -> _Tensors:
        calls: dict[str, list[_Tensors]] = {}
        input_refs = _refs(cfg.get("input_layers", []))
        if len(input_refs) != len(inputs):
            raise BundleError(
                "The model takes several inputs",
                f"'{'/'.join(scope) or cfg.get('name')}' has {len(input_refs)} inputs; CXR Lens "
                "explains single-image classifiers.",
            )
        for (name, _, _), t in zip(input_refs, inputs, strict=True):
            calls.setdefault(name, []).append([t])
        by_name = {str(ld["name"]): ld for ld in cfg.get("layers", [])}
        queue = {
            name: list(ld.get("inbound_nodes", []))
            for name, ld in by_name.items()
            if ld.get("class_name") != "InputLayer" and ld.get("inbound_nodes")
        }
        while queue:
            progressed = False
            for name in list(queue):
                nodes = queue[name]
                while nodes:
                    try:
                        args, kwargs = self._node_inputs(nodes[0], calls, by_name)
                    except _NotReady:
                        break
                    out = self._call(by_name[name], args, kwargs, scope)
                    calls.setdefault(name, []).append(out)
                    nodes.pop(0)
                    progressed = True
                if not nodes:
                    del queue[name]
            if not progressed:
                raise BundleError(
                    "Cannot rebuild the model's layer graph",
                    f"the layers {sorted(queue)[:5]} wait for inputs that are never computed.",
                    "The file may be damaged, or written by an unsupported Keras version.",
                )
        outputs = []
        for ref in _refs(cfg.get("output_layers", [])):
            outputs.append(self._resolve(ref, calls, by_name))
        return outputs

    # -- nodes ---------------------------------------------------------------------------
    def _node_inputs(
        self, node: Any, calls: dict[str, list[_Tensors]], by_name: dict[str, _Config]
    ) -> tuple[_Tensors, dict[str, Any]]:
        if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
            args = self._fill(node.get("args", []), calls, by_name)
            kwargs = self._fill(node.get("kwargs", {}), calls, by_name)
            kwargs.pop("training", None)
            kwargs.pop("mask", None)
            return list(args), kwargs
        # Keras 2: [[layer_name, node_index, tensor_index, kwargs], ...]; the kwargs held
        # `training` flags and masks only, which do not apply to inference.
        tensors = [self._resolve(entry[:3], calls, by_name) for entry in node]
        return [tensors[0] if len(tensors) == 1 else tensors], {}

    def _fill(self, obj: Any, calls: dict[str, list[_Tensors]], by_name: dict[str, _Config]) -> Any:
        if isinstance(obj, dict):
            if obj.get("class_name") == _KERAS_TENSOR:
                return self._resolve(obj["config"]["keras_history"], calls, by_name)
            return {k: self._fill(v, calls, by_name) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self._fill(v, calls, by_name) for v in obj]
        return obj

    def _resolve(
        self, ref: Sequence[Any], calls: dict[str, list[_Tensors]], by_name: dict[str, _Config]
    ) -> Any:
        name, node_index, tensor_index = str(ref[0]), int(ref[1]), int(ref[2])
        made = calls.get(name, [])
        # A nested functional model has a node of its own (input → output) before its first
        # call, and both Keras 2 and 3 count it in node indices (tf_keras
        # `_should_skip_first_node`, Keras 3 `Functional.get_config`).
        index = node_index - self._node_offset(by_name.get(name))
        if not 0 <= index < len(made):
            index = node_index
        if not 0 <= index < len(made):
            raise _NotReady(name)
        return made[index][tensor_index]

    def _node_offset(self, layer_data: _Config | None) -> int:
        if not layer_data:
            return 0
        cls = layer_data.get("class_name")
        if cls in ("Functional", "Model"):
            return 1
        if cls == "Sequential" and self.legacy:
            layers = layer_data.get("config", {}).get("layers", [])
            return int(bool(layers) and layers[0].get("class_name") == "InputLayer")
        return 0

    def _call(
        self, layer_data: _Config, args: _Tensors, kwargs: dict[str, Any], scope: tuple[str, ...]
    ) -> _Tensors:
        cls = str(layer_data.get("class_name") or "")
        name = str(layer_data.get("name") or layer_data.get("config", {}).get("name"))
        if cls in NESTED_CLASSES:
            if name not in self.result.nested:
                self.result.nested.append(name)
            inputs = args[0] if len(args) == 1 and isinstance(args[0], list) else args
            return self._inline(layer_data, list(inputs), (*scope, name))
        layer = self._leaf(layer_data, cls, name, scope)
        out = layer(*args, **kwargs)
        after = self.after.get((*scope, name))
        if after is not None:
            out = after(out)
            n_own = len(after.weights)
            if n_own:  # the holding layer's stored weights end with the activation's
                self.result.weight_slices[after.name] = (-n_own, None)
                self.result.weight_slices[layer.name] = (0, -n_own)
        return list(out) if isinstance(out, list | tuple) else [out]

    # -- layers --------------------------------------------------------------------------
    def _leaf(self, layer_data: _Config, cls: str, name: str, scope: tuple[str, ...]) -> Any:
        key = (*scope, name)
        if key in self.leaves:  # a shared layer: called again, same weights
            return self.leaves[key]
        if cls == "Lambda" and preprocess_lambda(layer_data) is not None:
            # a keras.applications preprocess_input: the bundle's convention does it instead
            flat_name = self._unique(name, scope)
            layer = self.keras.layers.Identity(name=flat_name)
            self.result.sources[flat_name] = key
            self.result.notes.append(
                f"{flat_name} (Lambda of preprocess_input): replaced by the input convention"
            )
            self.leaves[key] = layer
            return layer
        if cls in REFUSED_CLASSES:
            raise BundleError(
                f"Cannot import the model: layer '{'/'.join(key)}' is a {cls}",
                REFUSED_CLASSES[cls] + ".",
                REFUSED_HINT,
            )
        flat_name = self._unique(name, scope)
        activation = nested_activation(layer_data.get("config", {})) if self.legacy else None
        if activation is not None:
            layer = self._split_activation(layer_data, cls, flat_name, key, activation)
        elif self.legacy:
            layer = self._legacy_layer(cls, layer_data.get("config", {}), flat_name, "/".join(key))
        else:
            layer = self._keras3_layer(layer_data, flat_name)
        if flat_name != name:  # a name taken by another layer, or one holding "/"
            self.result.renamed[flat_name] = name
        self.result.sources[flat_name] = key
        self.leaves[key] = layer
        return layer

    def _split_activation(
        self,
        layer_data: _Config,
        cls: str,
        flat_name: str,
        key: tuple[str, ...],
        activation: tuple[str, _Config],
    ) -> Any:
        """The layer without its activation object; the object becomes ``self.after[key]``."""
        act_cls, act_cfg = legacy_activation_layer(*activation)
        if cls == "Activation":  # Activation(LeakyReLU()): the object itself, under this name
            self.result.notes.append(
                f"{flat_name} (Activation holding a {activation[0]} object): rebuilt as a "
                f"{act_cls} layer"
            )
            return self._legacy_layer(act_cls, act_cfg, flat_name, "/".join(key), "activation")
        cfg = dict(layer_data.get("config", {}))
        cfg["activation"] = "linear"
        layer = self._legacy_layer(cls, cfg, flat_name, "/".join(key))
        inner = str(act_cfg.get("name") or act_cls.lower())
        act_name = self._unique(f"{flat_name}_{inner}", ())
        self.after[key] = self._legacy_layer(
            act_cls, act_cfg, act_name, "/".join(key), "activation"
        )
        self.result.sources[act_name] = key
        self.result.notes.append(
            f"{flat_name} ({cls} with activation={activation[0]}(...)): rebuilt as {cls} "
            f"without activation followed by the {act_cls} layer '{act_name}'"
        )
        return layer

    def _unique(self, name: str, scope: tuple[str, ...]) -> str:
        # Keras 2 allowed "/" in layer names (tf_keras' DenseNet: "conv1/conv"); Keras 3 does not
        name = name.replace("/", "_")
        candidate = name
        if candidate in self.used and scope:
            candidate = f"{scope[-1]}_{name}"
        base, i = candidate, 1
        while candidate in self.used:
            candidate, i = f"{base}_{i}", i + 1
        self.used.add(candidate)
        return candidate

    def _keras3_layer(self, layer_data: _Config, flat_name: str) -> Any:
        data = {k: v for k, v in layer_data.items() if k not in ("inbound_nodes", "name")}
        data = copy.deepcopy(data)
        data.setdefault("config", {})["name"] = flat_name
        try:
            return self.keras.saving.deserialize_keras_object(data, safe_mode=True)
        except (TypeError, ValueError) as exc:
            raise BundleError(
                f"Cannot rebuild layer '{flat_name}' ({layer_data.get('class_name')})",
                str(exc).splitlines()[0][:300],
                "A custom layer class must be registered with keras.saving."
                "register_keras_serializable and importable.",
            ) from exc

    def _legacy_layer(
        self, cls: str, cfg: _Config, flat_name: str, owner: str, attr: str | None = None
    ) -> Any:
        """A Keras 3 layer from a Keras 2 configuration.

        ``owner`` is the original layer's name path (``backbone/conv1``); ``attr`` the key of
        its configuration this layer came from (``activation``), for error messages.
        """
        original = cfg
        cfg = sanitize_legacy(cls, cfg)
        cfg["name"] = flat_name
        layer_cls = getattr(self.keras.layers, cls, None)
        if not (isinstance(layer_cls, type) and issubclass(layer_cls, self.keras.layers.Layer)):
            raise _custom_class(cls, owner, ("config", attr) if attr else None)
        layer_class: Any = layer_cls  # a keras.layers.Layer subclass (Keras has no types)
        for _ in range(4):
            try:
                return layer_class.from_config(dict(cfg))
            except TypeError as exc:
                msg = str(exc)
                dropped = unrecognized_keys(msg, cfg)
                if not dropped:
                    raise _legacy_error(cls, owner, msg, original) from exc
                for key in dropped:
                    cfg.pop(key, None)
                self.result.notes.append(
                    f"{flat_name} ({cls}): dropped Keras 2 option(s) {', '.join(dropped)}"
                )
            except ValueError as exc:
                raise _legacy_error(cls, owner, str(exc), original) from exc
        raise _legacy_error(cls, owner, "too many unsupported options", original)


def _custom_class(missing: str, owner: str, path: tuple[str, ...] | None) -> BundleError:
    """The refusal of a class Keras 3 does not know: which class, in which layer, where."""
    if path is None:
        what = f"Cannot import the model: layer '{owner}' is of a custom class '{missing}'"
        where = f"'{missing}' is not a standard Keras layer"
    else:
        what = f"Cannot import the model: layer '{owner}' uses a custom class '{missing}'"
        at = "".join(p if p.startswith("[") else f"[{p!r}]" for p in path)
        where = (
            f"its configuration names '{missing}' at {at}, which is not a standard Keras "
            "layer, activation or initializer"
        )
    return BundleError(
        what,
        f"{where}; the .h5 file stores only its name, not its code, so Keras 3 cannot rebuild it.",
        f"Replace '{missing}' with standard Keras layers and save again, or save the model as a "
        "Keras 3 .keras file with the class registered "
        "(keras.saving.register_keras_serializable).",
    )


def _legacy_error(cls: str, owner: str, msg: str, cfg: _Config) -> BundleError:
    located = re.search(r"Could not locate class '([^']+)'", msg)
    if located:
        missing = located.group(1)
        path = find_class(cfg, missing)
        if missing == cls or path is None:
            return _custom_class(missing, owner, None)
        return _custom_class(missing, owner, ("config", *path))
    return BundleError(
        f"Cannot rebuild layer '{owner}' ({cls}) in Keras 3",
        msg.splitlines()[0][:300] if msg else "",
        "Re-save the model with Keras 3 (model.save('model.keras')) and import that file.",
    )


def _refs(value: Any) -> list[tuple[Any, ...]]:
    """Normalise ``input_layers``/``output_layers`` (one triple, a list, or a dict of them)."""
    if isinstance(value, dict):
        return [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list | tuple) and value and isinstance(value[0], str):
        return [tuple(value[:3])]
    out: list[tuple[Any, ...]] = []
    for v in value or []:
        out.extend(_refs(v))
    return out
