"""Fine-tuning a pretrained backbone in two phases, resuming bit for bit, and the
"imagenet" weights option offline."""

from __future__ import annotations

import numpy as np
import pytest

from cxr_viewer.core.errors import TrainingError
from trainer.config import load_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mobilenet_weights(tmp_path_factory):
    """No-top MobileNet (alpha 0.25) weights in the legacy Keras 2 .h5 layout that Keras
    Applications publishes, written with tf_keras from a seeded random model."""
    import tf_keras

    tf_keras.utils.set_random_seed(3)
    base = tf_keras.applications.MobileNet(
        alpha=0.25, include_top=False, weights=None, input_shape=(32, 32, 3)
    )
    path = tmp_path_factory.mktemp("weights") / "mobilenet_2_5_32_tf_no_top.h5"
    base.save_weights(str(path))
    return path, base.get_weights()


def _mobilenet_config(csv, weights, **over):
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


def _backbone_weights(model):
    """Weights of the backbone layers (not the head), in layer order."""
    from trainer.models import is_head_layer

    return [w for layer in model.layers if not is_head_layer(layer) for w in layer.get_weights()]


def test_two_phases_load_local_weights_fine_tune_and_resume_bit_for_bit(
    phantom_csv_small, mobilenet_weights, tmp_path
):
    """Phase 1 trains the head on the file's backbone, phase 2 fine-tunes the backbone; a run
    killed mid-epoch in phase 2 (augmentation and dropout on) and run again ends with the
    uninterrupted run's history and weights, bit for bit: the data order, augmentation and
    dropout draws are the same."""
    import keras

    from trainer.data import prepare_data
    from trainer.models import build_model
    from trainer.train import read_history, train_model

    path, reference = mobilenet_weights
    # BatchNorm trains here: the file's random "pretrained" weights have no real BatchNorm
    # statistics, so in inference mode every ReLU6 saturates and no gradient flows (frozen
    # BatchNorm is checked on its own below)
    cfg = _mobilenet_config(
        phantom_csv_small, path, **{"train.learning_rate": 0.01, "train.freeze_batchnorm": False,
                                    "train.head_epochs": 1, "train.epochs": 2,
                                    "model.dropout": 0.5}
    )  # fmt: skip
    # the resolved config records the fine-tuning rate really used (learning_rate / 10)
    assert cfg.train.fine_tune_learning_rate == pytest.approx(0.001)
    run = tmp_path / "a"
    data = prepare_data(cfg, run, progress=False)
    model = build_model(cfg.model, data.spec, 2, seed=cfg.seed)
    # grey in, repeated to RGB inside the model; the file's weights are loaded
    assert model.input_shape == (None, 32, 32, 1)
    assert model.get_layer("grey_to_rgb") is not None
    loaded = _backbone_weights(model)
    assert len(loaded) == len(reference)
    for a, b in zip(loaded, reference, strict=True):
        np.testing.assert_array_equal(a, b)

    class Snapshot(keras.callbacks.Callback):
        after_head = after_fine_tune = None

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == cfg.train.head_epochs:  # first fine-tuning epoch
                Snapshot.after_head = [w.copy() for w in self.model.get_weights()]

        def on_epoch_end(self, epoch, logs=None):  # the returned model is the *best* epoch's
            Snapshot.after_fine_tune = [w.copy() for w in self.model.get_weights()]

    result = train_model(cfg, data, run, extra_callbacks=[Snapshot()])
    whole = result.model.get_weights()
    assert list(read_history(run / "history.csv")["epoch"]) == [0, 1, 2]
    # finished: the phase marker is gone, and running again reuses the model
    assert not (run / "checkpoints" / "head.weights.h5").exists()
    assert train_model(cfg, data, run).resumed_from == -1
    # phase 1 trained only the head: the backbone still equals the ImageNet-style file
    names = [v.path for v in result.model.weights]
    head_phase = dict(zip(names, Snapshot.after_head, strict=True))
    backbone_names = [v.path for layer in result.model.layers for v in layer.weights
                      if not layer.name.startswith(("head_", "output"))]  # fmt: skip
    for name, ref in zip(backbone_names, reference, strict=True):
        np.testing.assert_array_equal(head_phase[name], ref)
    # phase 2 trained the backbone's convolutions
    final = dict(zip(names, Snapshot.after_fine_tune, strict=True))
    convs = [n for n in backbone_names if n.endswith("kernel")]
    assert convs and all(not np.array_equal(final[n], head_phase[n]) for n in convs)

    # the same run again, killed in its last (second fine-tuning) epoch, then resumed
    class Kill(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 2 and batch == 1:
                raise KeyboardInterrupt("killed mid-epoch 3")

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    data_b = prepare_data(cfg, tmp_path / "b", progress=False)
    with pytest.raises(KeyboardInterrupt):
        train_model(cfg, data_b, tmp_path / "b", extra_callbacks=[Kill()])
    assert list(read_history(tmp_path / "b" / "history.csv")["epoch"]) == [0, 1]
    resumed = train_model(cfg, data_b, tmp_path / "b")
    assert resumed.resumed_from == 2
    hist_a = read_history(run / "history.csv")
    hist_b = read_history(tmp_path / "b" / "history.csv")
    assert list(hist_b["epoch"]) == [0, 1, 2]
    np.testing.assert_array_equal(hist_a["loss"].to_numpy(), hist_b["loss"].to_numpy())
    for a, b in zip(whole, resumed.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_fine_tune_phase_can_keep_batchnorm_frozen(mobilenet_weights):
    from keras import layers

    from cxr_viewer.core.preprocess import InputSpec
    from trainer.models import build_model, is_head_layer, set_trainable

    cfg = _mobilenet_config("unused.csv", mobilenet_weights[0], **{"model.fine_tune_from": 3})
    model = build_model(cfg.model, InputSpec(32, 32, 1, "symmetric"), 2)
    set_trainable(model, cfg.model, phase="head")
    assert {layer.name for layer in model.layers if layer.trainable} == {
        layer.name for layer in model.layers if is_head_layer(layer)
    }
    set_trainable(model, cfg.model, phase="fine_tune", freeze_batchnorm=True)
    for i, layer in enumerate(model.layers):
        frozen = i < 3 or isinstance(layer, layers.BatchNormalization)
        assert layer.trainable is not frozen, layer.name


def test_epoch_order_depends_only_on_seed_and_epoch():
    from trainer.pipeline import epoch_order

    a = epoch_order(50, 7, 3)
    assert sorted(a) == list(range(50))
    np.testing.assert_array_equal(a, epoch_order(50, 7, 3))
    assert not np.array_equal(a, epoch_order(50, 7, 4))
    assert not np.array_equal(a, epoch_order(50, 8, 3))


def test_imagenet_weights_offline_names_the_file_and_the_local_option(monkeypatch):
    import keras.src.applications.mobilenet as keras_mobilenet

    from cxr_viewer.core.preprocess import InputSpec
    from trainer.models import build_model

    def offline(fname, origin=None, **kwargs):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] name resolution")

    monkeypatch.setattr(keras_mobilenet.file_utils, "get_file", offline)
    cfg = load_config(None, {"model.architecture": "mobilenet", "model.alpha": 0.25,
                             "model.weights": "imagenet", "model.channels": 3})  # fmt: skip
    with pytest.raises(TrainingError) as err:
        build_model(cfg.model, InputSpec(224, 224, 3, "symmetric"), 2)
    text = str(err.value)
    assert "mobilenet_2_5_224_tf_no_top.h5" in text and "model.weights" in text
    assert "offline" in text


def test_missing_local_weights_file_is_a_clear_error(tmp_path):
    from cxr_viewer.core.preprocess import InputSpec
    from trainer.models import build_model

    cfg = load_config(None, {"model.architecture": "mobilenet", "model.alpha": 0.25,
                             "model.weights": str(tmp_path / "nope.h5")})  # fmt: skip
    with pytest.raises(TrainingError, match="not found") as err:
        build_model(cfg.model, InputSpec(224, 224, 3, "symmetric"), 2)
    assert "mobilenet_2_5_224_tf_no_top.h5" in str(err.value)
