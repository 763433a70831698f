"""A tiny model bundle for the self-test tests (source install and frozen app)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_tiny_bundle(out_dir: str | Path, size: int = 32) -> Path:
    """Write a random-weight ``size``×``size`` greyscale CNN as a real bundle; return its path.

    conv → conv → GAP → softmax(2), with a 4-image SHAP background: every explainer runs on it
    in well under a second, so the self-test's own logic is what the tests measure.
    """
    from cxr_viewer.core.model_io import import_tensorflow

    import_tensorflow()  # the one place TensorFlow starts (device settings before any op)
    import keras
    from keras import layers

    from cxr_viewer.core.bundle import write_bundle
    from cxr_viewer.core.explain.layers import default_gradcam_layer, shap_layers
    from cxr_viewer.core.preprocess import InputSpec

    keras.utils.set_random_seed(3)
    inp = keras.Input((size, size, 1), name="image")
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inp)
    x = layers.MaxPooling2D(name="pool1")(x)
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    out = layers.Dense(2, activation="softmax", name="predictions")(x)
    model = keras.Model(inp, out, name="tiny_selftest")
    background = np.random.default_rng(0).random((4, size, size, 1), dtype=np.float32)
    out_path = Path(out_dir)
    write_bundle(
        out_path,
        model,
        name="tiny-selftest",
        class_names=["no_lesion", "lesion"],
        input_spec=InputSpec(size, size, 1, "unit"),
        gradcam_layer=default_gradcam_layer(model),
        shap_layers=shap_layers(model),
        background=background,
        overwrite=True,
    )
    return out_path
