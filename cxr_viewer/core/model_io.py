"""Loading Keras models safely, and where TensorFlow runs.

TensorFlow is imported here and only when called, so importing the rest of the core (and
opening the window) does not wait ~4 s for it.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ModelLoadError


def import_tensorflow():
    """Import TensorFlow quietly (its C++ log chatter is not the user's business)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def load_keras_model(path: str | Path):
    """Load a ``.keras`` (or flat Keras 2 ``.h5``) model with ``safe_mode=True``.

    Safe mode refuses to deserialise Python lambdas, so a model file can never run code.
    """
    path = Path(path)
    import_tensorflow()
    import keras

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except ValueError as exc:
        msg = str(exc)
        if "Lambda" in msg or "safe_mode" in msg or "unsafe" in msg.lower():
            raise ModelLoadError(
                f"Refusing to load {path.name}",
                "it contains a Lambda layer (arbitrary Python code), which safe mode does not run.",
                "Rebuild the model without Lambda layers (use a named Keras layer) and re-export.",
            ) from exc
        raise ModelLoadError(
            f"Cannot load the model {path.name}",
            msg,
            "Check that it is a Keras 3 .keras file written by `cxr-train`.",
        ) from exc
    except (OSError, TypeError, KeyError, AttributeError) as exc:
        raise ModelLoadError(
            f"Cannot load the model {path.name}",
            f"{type(exc).__name__}: {exc}",
            "The file may be truncated or from an incompatible Keras version; re-export it.",
        ) from exc


def describe_device() -> str:
    """Where TensorFlow runs: 'GPU: <name>' for the first visible GPU, else 'CPU'."""
    tf = import_tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    try:
        details = tf.config.experimental.get_device_details(gpus[0])
        name = details.get("device_name", gpus[0].name)
    except (ValueError, RuntimeError):
        name = gpus[0].name
    more = f" (+{len(gpus) - 1} more)" if len(gpus) > 1 else ""
    return f"GPU: {name}{more}"
