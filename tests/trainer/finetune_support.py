"""The fine-tuning tests' shared parts: random "pretrained" MobileNet weights in the Keras 2
.h5 layout, and the config that fine-tunes from them."""

from __future__ import annotations

from trainer.config import load_config


def write_mobilenet_weights(folder):
    """No-top MobileNet (alpha 0.25) weights in the legacy Keras 2 .h5 layout that Keras
    Applications publishes, written with tf_keras from a seeded random model; returns
    (path, weights)."""
    import tf_keras

    tf_keras.utils.set_random_seed(3)
    base = tf_keras.applications.MobileNet(
        alpha=0.25, include_top=False, weights=None, input_shape=(32, 32, 3)
    )
    path = folder / "mobilenet_2_5_32_tf_no_top.h5"
    base.save_weights(str(path))
    return path, base.get_weights()


def mobilenet_config(csv, weights, **over):
    values = {
        "data.format": "csv",
        "data.root": str(csv),
        "data.class_names": ["no_lesion", "lesion"],
        "model.architecture": "mobilenet",
        "model.alpha": 0.25,
        "model.input_size": 32,
        "model.channels": 1,
        "model.weights": str(weights),
        "model.dense_units": 8,
        "augment.enabled": True,
        "train.head_epochs": 2,
        "train.epochs": 2,
        "train.batch_size": 16,
        "train.verbose": 0,
        "train.tensorboard": False,
        "export.background_size": 4,
    }
    values.update(over)
    return load_config(None, values)
