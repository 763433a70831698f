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
    """Random weights everywhere (nested models too): kernels at He scale, BN scales and
    variances positive; a Normalization layer's statistics are kept (a variance must stay
    positive, and EfficientNet's are ImageNet's)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if hasattr(layer, "layers"):  # a nested model
            randomize(layer, seed + 1)
            continue
        ws = layer.get_weights()
        if not ws or type(layer).__name__ == "Normalization":
            continue
        names = [getattr(v, "path", v.name).rsplit("/", 1)[-1].split(":")[0] for v in layer.weights]
        new = []
        for name, w in zip(names, ws, strict=True):
            if name == "gamma":
                new.append(rng.uniform(0.5, 1.0, w.shape))
            elif name == "moving_variance":
                new.append(rng.uniform(0.5, 1.5, w.shape))
            elif name in ("beta", "moving_mean", "bias"):
                new.append(rng.normal(0, 0.2, w.shape))
            elif w.ndim > 1:
                fan_in = (
                    int(np.prod(w.shape[:-1]))
                    if "depthwise" not in name
                    else int(np.prod(w.shape[:2]))
                )
                new.append(rng.normal(0, np.sqrt(2.0 / max(fan_in, 1)), w.shape))
            else:  # PReLU slopes and other vectors
                new.append(rng.normal(0, 0.3, w.shape))
        layer.set_weights([n.astype(np.float32) for n in new])


def spread_head(model: Any, feature_layer: str, dense: str, x: np.ndarray, seed: int = 0) -> None:
    """Scale the final Dense layer to the features' magnitude, logits centred on ``x``.

    A random deep backbone's features can be in the hundreds, which would saturate every
    probability; scaling by their root-mean-square (not by their small variation between
    inputs, which would magnify float32 rounding into |Δp|) keeps the logits near ±1.
    """
    k_model = type(model)(model.inputs, model.get_layer(feature_layer).output)
    features = np.asarray(k_model(x, training=False), dtype=np.float64)
    layer = model.get_layer(dense)
    kernel, _ = layer.get_weights()
    rng = np.random.default_rng(seed)
    rms = max(float(np.sqrt(np.mean(features**2))), 1e-12)
    new_kernel = rng.normal(0, 1.0 / (rms * np.sqrt(kernel.shape[0])), kernel.shape)
    logits = features @ new_kernel
    new_bias = rng.normal(0, 0.5, kernel.shape[1]) - logits.mean(axis=0)
    layer.set_weights([new_kernel.astype(np.float32), new_bias.astype(np.float32)])


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
