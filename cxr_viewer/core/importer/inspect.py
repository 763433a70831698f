"""What a model file says about itself, read from its configuration only (no TensorFlow).

:func:`inspect_model` reads the architecture JSON of a ``.keras`` or ``.h5`` file and reports
the input shape, the output head (units and final activation, hence the likely head kind) and
the likely input preprocessing:

* a ``Rescaling`` layer right after the input means the model rescales pixels itself; the
  range it expects is the one its scale and offset map onto [0, 1] or [-1, 1] — usually raw
  [0, 255] pixels (``Rescaling(1/255)``), sometimes [0, 1] (``Rescaling(2, offset=-1)``);
* a ``Normalization`` layer right after the input: raw pixels when its stored mean is above 2
  (a mean in pixel units), else [0, 1];
* otherwise a nested keras.applications backbone's name gives its ``preprocess_input``
  convention (DenseNet → torch, VGG / ResNet V1 → caffe, ResNet V2 / MobileNet / Inception /
  Xception → symmetric, EfficientNet / ConvNeXt / RegNet → raw: they rescale inside);
* otherwise [0, 1] (``unit``), what custom CNNs trained from scratch mostly use.

The proposal is a guess to be confirmed: the import dialog shows the predictions of every
candidate on sample images.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxr_viewer.core.errors import BundleError, ModelLoadError
from cxr_viewer.core.io import jsonio
from cxr_viewer.core.model.heads import propose_head

from .configs import NESTED_CLASSES, declared_input_shape

#: preprocessings offered for import, most common first
CANDIDATES = ("unit", "symmetric", "raw", "caffe", "torch")

#: (pattern on a nested backbone's name, preprocessing of its keras.applications preprocess_input)
_BACKBONE_RULES = (
    (r"densenet", "torch"),
    (r"efficientnet|convnext|regnet", "raw"),
    (r"vgg|^resnet\d+$|^resnet\d+_?v1|resnet50$", "caffe"),
    (r"resnet\d+_?v2|mobilenet|inception|xception|nasnet", "symmetric"),
)
_PASS_THROUGH = {"InputLayer", "Cropping2D", "ZeroPadding2D", "Resizing", "CenterCrop"}


@dataclass
class ModelSummary:
    """What :func:`inspect_model` found.

    Attributes
    ----------
    input_shape:
        (batch, rows, columns, channels) as declared (None entries: any size).
    units:
        Output units of the final layer (None if not read from the configuration).
    activation:
        The final activation ("softmax", "sigmoid", "linear") or None if not recognised.
    head:
        The proposed head kind (``softmax``, ``binary`` or ``multilabel``), or None.
    preprocessing:
        The proposed preprocessing name, and ``preprocessing_reason`` why.
    """

    input_shape: tuple[Any, ...] | None
    units: int | None
    activation: str | None
    head: str | None
    preprocessing: str
    preprocessing_reason: str
    notes: list[str] = field(default_factory=list)

    @property
    def channels(self) -> int | None:
        shape = self.input_shape
        return int(shape[-1]) if shape and shape[-1] is not None else None


def read_config(path: str | Path) -> dict[str, Any]:
    """The serialised model ``{"class_name", "config"}`` of a ``.keras`` or ``.h5`` file."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".keras":
            from cxr_viewer.core.io.archive import KERAS_LIMITS, read_member

            with zipfile.ZipFile(path) as zf:  # capped: no zip bomb is inflated
                raw_config = read_member(zf, path, "config.json", KERAS_LIMITS)
            config: dict[str, Any] = jsonio.loads(raw_config)
            return config
        if suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                raw = f.attrs.get("model_config")
            if raw is None:
                raise BundleError(
                    f"{path.name} holds weights only",
                    "the .h5 file has no model_config: the architecture is not in it.",
                    "Save the whole model with model.save('model.h5') and import that.",
                )
            legacy: dict[str, Any] = jsonio.loads(raw if isinstance(raw, bytes) else str(raw))
            return legacy
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as e:
        raise ModelLoadError(
            f"Cannot read {path.name}",
            f"it is not a readable Keras model file ({type(e).__name__}: {e}).",
            "Save the model again with model.save(...).",
        ) from e
    raise BundleError(
        f"Cannot import {path.name}",
        f"'{suffix or path.name}' is not a Keras model format CXR Lens reads.",
        "Import a Keras 3 .keras file or a Keras 2 .h5 file (saved with model.save()).",
    )


def inspect_model(path: str | Path) -> ModelSummary:
    """Read ``path``'s configuration and propose a head and a preprocessing."""
    return summarize_config(read_config(path))


def summarize_config(config: dict[str, Any]) -> ModelSummary:
    shape = declared_input_shape(config)
    units, activation = output_head(config)
    head = propose_head(units, activation) if units else None
    pre, why = propose_preprocessing(config)
    return ModelSummary(shape, units, activation, head, pre, why)


# -- the output head ---------------------------------------------------------------------------


def _layers(config: dict[str, Any]) -> list[dict[str, Any]]:
    inner = config.get("config", {}) if isinstance(config, dict) else {}
    layers = inner.get("layers", []) if isinstance(inner, dict) else []
    return [ld for ld in layers if isinstance(ld, dict)]


def _name(ld: dict[str, Any]) -> str:
    return str(ld.get("name") or ld.get("config", {}).get("name", ""))


def _activation_name(act: Any) -> str | None:
    if isinstance(act, dict):  # Keras 2.13+ / Keras 3 serialised a built-in function
        act = act.get("config") if isinstance(act.get("config"), str) else act.get("class_name")
    if act is None:
        return "linear"
    name = str(act).lower()
    if name in ("softmax", "sigmoid", "linear"):
        return name
    return None


def _inbound_name(ld: dict[str, Any]) -> str | None:
    nodes = ld.get("inbound_nodes") or []
    if not nodes:
        return None
    node = nodes[0]
    if isinstance(node, dict):  # Keras 3
        args = node.get("args", [])
        first = args[0] if args else None
        if isinstance(first, dict) and first.get("class_name") == "__keras_tensor__":
            return str(first["config"]["keras_history"][0])
        return None
    if isinstance(node, list) and node and isinstance(node[0], list):
        return str(node[0][0])
    return None


def output_head(config: dict[str, Any]) -> tuple[int | None, str | None]:
    """(units, final activation) of the model's output, read from its configuration."""
    layers = _layers(config)
    if not layers:
        return None, None
    by_name = {_name(ld): ld for ld in layers}
    if config.get("class_name") == "Sequential":
        chain = [ld for ld in layers if ld.get("class_name") != "InputLayer"]
        last = chain[-1] if chain else None
        previous = chain[-2] if len(chain) > 1 else None
    else:
        outs = config.get("config", {}).get("output_layers") or []
        if outs and isinstance(outs[0], str):  # a single output written as [name, 0, 0]
            outs = [outs]
        if len(outs) != 1:
            return None, None
        last = by_name.get(str(outs[0][0]))
        previous = by_name.get(_inbound_name(last) or "") if last else None
    if last is None:
        return None, None
    cls = last.get("class_name")
    cfg = last.get("config", {})
    if cls in NESTED_CLASSES:
        return output_head(last)
    if cls == "Dense":
        return int(cfg.get("units", 0)) or None, _activation_name(cfg.get("activation"))
    if cls in ("Activation", "Softmax"):
        act = "softmax" if cls == "Softmax" else _activation_name(cfg.get("activation"))
        units = None
        if previous is not None and previous.get("class_name") == "Dense":
            units = int(previous.get("config", {}).get("units", 0)) or None
            if _activation_name(previous.get("config", {}).get("activation")) != "linear":
                act = None  # two activations in a row: let the outputs decide
        return units, act
    return None, None


# -- the preprocessing -------------------------------------------------------------------------


def _first_layers(config: dict[str, Any], depth: int = 0) -> list[dict[str, Any]]:
    """The layers at the start of the graph, descending into a nested model called first."""
    out = []
    for ld in _layers(config):
        cls = ld.get("class_name")
        if cls in _PASS_THROUGH:
            continue
        if cls in NESTED_CLASSES and depth < 3:
            out.extend(_first_layers(ld, depth + 1))
        else:
            out.append(ld)
        if len(out) >= 2:
            break
    return out


def _rescaling_range(cfg: dict[str, Any]) -> str | None:
    try:
        scale = float(cfg.get("scale", 1.0))
        offset = float(cfg.get("offset", 0.0))
    except (TypeError, ValueError):
        return None
    for name, hi in (("raw", 255.0), ("unit", 1.0)):
        lo_out, hi_out = offset, hi * scale + offset
        for target_lo, target_hi in ((0.0, 1.0), (-1.0, 1.0)):
            if abs(lo_out - target_lo) < 0.05 and abs(hi_out - target_hi) < 0.05:
                return name
    return "raw" if abs(scale) < 0.05 else None


def _nested_names(config: dict[str, Any]) -> list[str]:
    names = []
    for ld in _layers(config):
        if ld.get("class_name") in NESTED_CLASSES:
            names.append(_name(ld).lower())
            names.extend(_nested_names(ld))
    return names


def propose_preprocessing(config: dict[str, Any]) -> tuple[str, str]:
    """(preprocessing name, why) for the model ``config`` describes."""
    first = _first_layers(config)
    if first:
        cls = first[0].get("class_name")
        cfg = first[0].get("config", {})
        if cls == "Rescaling":
            rng = _rescaling_range(cfg)
            if rng is not None:
                return rng, (
                    f"the model starts with a Rescaling layer (scale {_num(cfg.get('scale'))}, "
                    f"offset {_num(cfg.get('offset', 0))}) that expects "
                    + ("raw [0, 255] pixels" if rng == "raw" else "[0, 1] values")
                )
        if cls == "Normalization":
            mean = cfg.get("mean")
            values = mean if isinstance(mean, list) else [mean] if mean is not None else []
            flat = [float(v) for v in _flatten(values) if isinstance(v, int | float)]
            if flat:
                rng = "raw" if max(abs(v) for v in flat) > 2.0 else "unit"
                return rng, "the model starts with a Normalization layer (mean " + (
                    "in pixel units)" if rng == "raw" else "in [0, 1] units)"
                )
            return "raw", "the model starts with a Normalization layer (it normalises itself)"
    for name in _nested_names(config):
        for pattern, pre in _BACKBONE_RULES:
            if re.search(pattern, name):
                return pre, f"its backbone '{name}' is a keras.applications model ({pre} mode)"
    return "unit", "no rescaling layer in the model: [0, 1] is the common choice"


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else str(value)


def _flatten(values: Iterable[Any]) -> Iterator[Any]:
    for v in values:
        if isinstance(v, list):
            yield from _flatten(v)
        else:
            yield v
