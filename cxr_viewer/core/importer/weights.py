"""Copy weights into a rebuilt flat model, layer by layer, matched by the original layer names.

Two sources: the ``model_weights`` group of a Keras 2 ``.h5`` file (read with h5py as plain
arrays; one group per top-level layer, a nested model's group holding its inner layers' weights
named ``<inner layer>/<weight>:0``), or the layers of a loaded Keras 3 model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from cxr_viewer.core.errors import BundleError

from .rebuild import FlatModel

#: Keras 2 → Keras 3 weight names that changed
_ALIASES = {"depthwise_kernel": "kernel"}

WeightSource = Callable[[tuple[str, ...]], list[tuple[str, np.ndarray]]]


def h5_weight_source(path: Path, known: Iterable[tuple[str, ...]] = ()) -> WeightSource:
    """Weights of the layer at a name path, read from a Keras 2 ``.h5`` model file.

    The file is opened once per top-level group and each group's weight names are read once
    (a ResNet50V2 backbone is one group of ~270 layers). ``known`` are the name paths of every
    layer (:attr:`.rebuild.FlatModel.sources`): a weight of a nested model belongs to the
    *longest* inner layer name it is prefixed with, since Keras 2 names may hold "/" (tf_keras'
    DenseNet has both ``bn`` and ``conv1/bn``, whose weight ``conv1/bn/gamma:0`` is not
    ``bn``'s).
    """
    import h5py

    names_of: dict[str, list[str]] = {}
    leaves: dict[str, list[str]] = {}
    for known_path in known:
        if len(known_path) > 1:
            leaves.setdefault(known_path[0], []).append(known_path[-1])

    owners: dict[tuple[str, str], str | None] = {}

    def owner(name: str, group: str) -> str | None:
        key = (group, name)
        if key not in owners:  # computed once per weight name
            padded = "/" + name
            found = [leaf for leaf in leaves.get(group, []) if f"/{leaf}/" in padded]
            owners[key] = max(found, key=len) if found else None
        return owners[key]

    def read(layer_path: tuple[str, ...]) -> list[tuple[str, np.ndarray]]:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            if layer_path[0] not in root:
                return []
            group = root[layer_path[0]]
            if layer_path[0] not in names_of:
                names_of[layer_path[0]] = [_text(n) for n in group.attrs.get("weight_names", [])]
            names = names_of[layer_path[0]]
            if len(layer_path) > 1:  # an inner layer of a nested model
                leaf = layer_path[-1]
                if leaves.get(layer_path[0]):
                    names = [n for n in names if owner(n, layer_path[0]) == leaf]
                else:
                    names = [n for n in names if leaf in n.split("/")[:-1]]
            return [(n, np.asarray(group[n][()])) for n in names]

    return read


def keras_weight_source(model: Any) -> WeightSource:
    """Weights of the layer at a name path in a loaded Keras 3 model."""

    def read(layer_path: tuple[str, ...]) -> list[tuple[str, np.ndarray]]:
        layer = model
        for name in layer_path:
            layer = layer.get_layer(name)
        return [(v.path, np.asarray(v.numpy())) for v in layer.weights]

    return read


def load_weights(flat: FlatModel, source: WeightSource) -> int:
    """Assign every layer of ``flat.model`` its original weights; returns how many were set.

    Weights are matched in order with a shape check (the order within one layer is the same in
    Keras 2 and 3), falling back to matching by weight name. Any layer whose weights cannot be
    matched raises :class:`BundleError` — a half-loaded model must never be exported.
    """
    count = 0
    for layer in flat.model.layers:
        variables = list(layer.weights)
        if not variables:
            continue
        src_path = flat.sources.get(layer.name)
        stored = source(src_path) if src_path else []
        if layer.name in flat.weight_slices:  # a layer split in two: its part of the weights
            start, stop = flat.weight_slices[layer.name]
            stored = stored[start:stop]
        arrays = _match(variables, stored)
        if arrays is None:
            raise BundleError(
                f"Cannot load the weights of layer '{layer.name}'",
                f"the layer has {len(variables)} weights "
                f"{[tuple(v.shape) for v in variables]}, the file has {len(stored)} "
                f"{[tuple(a.shape) for _, a in stored]} for '{'/'.join(src_path or ())}'.",
                "The file may be damaged or use a layout this importer does not know; re-save "
                "the model with Keras 3 (model.save('model.keras')).",
            )
        for var, arr in zip(variables, arrays, strict=True):
            var.assign(arr.astype(var.dtype, copy=False))
            count += 1
    return count


def _match(variables: list[Any], stored: list[tuple[str, np.ndarray]]) -> list[np.ndarray] | None:
    if len(stored) != len(variables):
        return None
    if all(tuple(a.shape) == tuple(v.shape) for v, (_, a) in zip(variables, stored, strict=True)):
        return [a for _, a in stored]
    by_name = {_base(n): a for n, a in stored}
    out: list[np.ndarray] = []
    for v in variables:
        a = by_name.get(_base(v.name))
        if a is None or tuple(a.shape) != tuple(v.shape):
            return None
        out.append(a)
    return out


def _base(name: str) -> str:
    base = name.rsplit("/", 1)[-1].split(":", 1)[0]
    return _ALIASES.get(base, base)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
