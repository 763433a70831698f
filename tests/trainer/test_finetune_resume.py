"""Fine-tuning resumes bit for bit: a run killed mid-epoch in its fine-tuning phase, run again,
ends with the uninterrupted run's history and weights (its own file, so that pytest-xdist can
run it beside test_finetune.py: each trains a MobileNet several times)."""

from __future__ import annotations

import numpy as np
import pytest
from finetune_support import mobilenet_config, write_mobilenet_weights

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mobilenet_weights(tmp_path_factory):
    return write_mobilenet_weights(tmp_path_factory.mktemp("weights"))


def test_killed_and_resumed_equals_uninterrupted_bit_for_bit(
    phantom_csv_small, mobilenet_weights, tmp_path
):
    """Kill mid-epoch (in the fine-tuning phase, augmentation and dropout on), re-run: the
    data order, augmentation and dropout draws are those of the uninterrupted run."""
    import keras

    from trainer.data import prepare_data
    from trainer.train import read_history, train_model

    path, _ = mobilenet_weights
    cfg = mobilenet_config(
        phantom_csv_small, path, **{"train.head_epochs": 1, "train.epochs": 2,
                                    "model.dropout": 0.5}
    )  # fmt: skip
    data_a = prepare_data(cfg, tmp_path / "a", progress=False)
    whole = train_model(cfg, data_a, tmp_path / "a").model.get_weights()

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
    hist_a = read_history(tmp_path / "a" / "history.csv")
    hist_b = read_history(tmp_path / "b" / "history.csv")
    assert list(hist_b["epoch"]) == [0, 1, 2]
    np.testing.assert_array_equal(hist_a["loss"].to_numpy(), hist_b["loss"].to_numpy())
    for a, b in zip(whole, resumed.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
