"""Fine-tuning a pretrained backbone in two phases (resuming: test_finetune_resume.py), and the
"imagenet" weights option offline."""

from __future__ import annotations

import numpy as np
import pytest
from finetune_support import mobilenet_config, write_mobilenet_weights

from cxr_viewer.core.errors import TrainingError
from trainer.config import load_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mobilenet_weights(tmp_path_factory):
    return write_mobilenet_weights(tmp_path_factory.mktemp("weights"))


def _backbone_weights(model):
    """Weights of the backbone layers (not the head), in layer order."""
    from trainer.models import is_head_layer

    return [w for layer in model.layers if not is_head_layer(layer) for w in layer.get_weights()]


def test_two_phases_load_local_weights_then_fine_tune(
    phantom_csv_small, mobilenet_weights, tmp_path
):
    import keras

    from trainer.data import prepare_data
    from trainer.models import build_model
    from trainer.train import read_history, train_model

    path, reference = mobilenet_weights
    # BatchNorm trains here: the file's random "pretrained" weights have no real BatchNorm
    # statistics, so in inference mode every ReLU6 saturates and no gradient flows (frozen
    # BatchNorm is checked on its own below)
    cfg = mobilenet_config(
        phantom_csv_small, path, **{"train.learning_rate": 0.01, "train.freeze_batchnorm": False}
    )
    # the resolved config records the fine-tuning rate really used (learning_rate / 10)
    assert cfg.train.fine_tune_learning_rate == pytest.approx(0.001)
    run = tmp_path / "run"
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

    snap = Snapshot()
    result = train_model(cfg, data, run, extra_callbacks=[snap])
    assert list(read_history(run / "history.csv")["epoch"]) == [0, 1, 2, 3]
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


def test_fine_tune_phase_can_keep_batchnorm_frozen(mobilenet_weights):
    from keras import layers

    from cxr_viewer.core.model.preprocess import InputSpec
    from trainer.models import build_model, is_head_layer, set_trainable

    cfg = mobilenet_config("unused.csv", mobilenet_weights[0], **{"model.fine_tune_from": 3})
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

    from cxr_viewer.core.model.preprocess import InputSpec
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
    from cxr_viewer.core.model.preprocess import InputSpec
    from trainer.models import build_model

    cfg = load_config(None, {"model.architecture": "mobilenet", "model.alpha": 0.25,
                             "model.weights": str(tmp_path / "nope.h5")})  # fmt: skip
    with pytest.raises(TrainingError, match="not found") as err:
        build_model(cfg.model, InputSpec(224, 224, 3, "symmetric"), 2)
    assert "mobilenet_2_5_224_tf_no_top.h5" in str(err.value)
