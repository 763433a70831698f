"""The one tiny model bundle the tests share (unit tests, the self-test, the viewer, the GPU).

``write_tiny_bundle`` writes a real bundle through the trainer's own writer; the session-wide
``tiny_bundle`` fixture (``tests/conftest.py``) and the viewer's variant (``tests/gui/conftest.py``)
call it, so every test that needs "a model" gets the same one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: the tiny model's layers, for tests that name them
GRADCAM_LAYER = "conv_b"
SHAP_LAYERS = ("conv_a", "pool_a")
CLASS_NAMES = ("normal", "pneumonia")


def write_tiny_bundle(
    out_dir: str | Path,
    size: int = 32,
    channels: int = 1,
    *,
    name: str = "tiny-test",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a random-weight ``size``×``size``×``channels`` CNN as a real bundle; return its path.

    conv_a → pool_a → conv_b → GAP → softmax(2) named ``output``, unit-range input, a 4-image
    SHAP background; every explainer runs on it in well under a second. Same seed, same weights.
    """
    from cxr_viewer.core.model.model_io import import_tensorflow

    import_tensorflow()  # the one place TensorFlow starts (device settings before any op)
    import keras
    from keras import layers

    from cxr_viewer.core.model.bundle import write_bundle
    from cxr_viewer.core.model.preprocess import InputSpec

    keras.utils.set_random_seed(0)
    inp = keras.Input((size, size, channels), name="image")
    x = layers.Conv2D(8, 3, activation="relu", padding="same", name="conv_a")(inp)
    x = layers.MaxPooling2D(name="pool_a")(x)
    x = layers.Conv2D(8, 3, activation="relu", padding="same", name="conv_b")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    out = layers.Dense(2, activation="softmax", name="output")(x)
    model = keras.Model(inp, out, name="tiny")
    background = np.random.default_rng(0).random((4, size, size, channels), dtype=np.float32)
    out_path = Path(out_dir)
    write_bundle(
        out_path,
        model,
        name=name,
        class_names=list(CLASS_NAMES),
        input_spec=InputSpec(size, size, channels, "unit"),
        gradcam_layer=GRADCAM_LAYER,
        shap_layers=list(SHAP_LAYERS),
        background=background,
        extra=extra,
        overwrite=True,
    )
    return out_path
