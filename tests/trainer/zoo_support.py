"""Models built the way tutorials build them, saved in each format, for the importer's tests.

Shared by ``test_import_activations.py`` and ``test_import_zoo.py``. Keras 2 models are built
with ``tf_keras`` (Keras 2 itself) and their weights — batch-norm statistics and PReLU slopes
included — randomised, so a weight loaded into the wrong place changes the outputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def randomize(model: Any, seed: int = 0) -> None:
    """Random weights everywhere (nested models too), BN variances and scales positive."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if hasattr(layer, "layers"):  # a nested model
            randomize(layer, seed + 1)
            continue
        ws = layer.get_weights()
        if not ws:
            continue
        if type(layer).__name__ == "BatchNormalization":
            new = [
                rng.uniform(0.5, 1.5, w.shape) if i in (0, 3) else rng.normal(0, 0.2, w.shape)
                for i, w in enumerate(ws)
            ]
        else:
            fan_in = max(1, int(np.prod(ws[0].shape[:-1]))) if ws[0].ndim > 1 else 1
            scale = min(0.3, 1.5 / np.sqrt(fan_in))  # deep backbones stay finite and varied
            new = [rng.normal(0, scale, w.shape) for w in ws]
        layer.set_weights([n.astype(np.float32) for n in new])


def _strip(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {
            k: _strip(v)
            for k, v in obj.items()
            if k not in ("module", "registered_name", "build_config")
        }
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def as_keras_2_10(path: Path) -> Path:
    """Rewrite a tf_keras ``.h5`` the way Keras 2.10 wrote it: objects as ``{class_name, config}``.

    Keras 2.10–2.12 serialised an activation object (``activation=LeakyReLU()``) without the
    ``module`` / ``registered_name`` keys later versions add; Keras 3 cannot resolve such a bare
    class name. The weights are untouched; tf_keras still loads the file.
    """
    import h5py

    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        f.attrs["model_config"] = json.dumps(_strip(config))
        f.attrs["keras_version"] = "2.10.0"
    return path


def rename_class(path: Path, old: str, new: str) -> Path:
    """Rename every object of class ``old`` in an ``.h5``'s architecture to ``new`` (a class
    Keras does not know, as a custom class saved without its code would be)."""
    import h5py

    with h5py.File(path, "r+") as f:
        text = f.attrs["model_config"]
        text = text.decode() if isinstance(text, bytes) else str(text)
        f.attrs["model_config"] = text.replace(f'"class_name": "{old}"', f'"class_name": "{new}"')
    return path
