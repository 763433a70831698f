"""Class weights (the seeds' bug avoided), oversampling and augmentation layers."""

from __future__ import annotations

import numpy as np
import pytest

from cxr_viewer.core.errors import TrainingError
from trainer.config import AugmentConfig
from trainer.imbalance import augmentation_layers, class_weights, oversample_indices


def test_inverse_frequency_weights():
    labels = np.array([0] * 30 + [1] * 10)
    w = class_weights(labels, ["neg", "pos"])
    assert isinstance(w, dict) and set(w) == {0, 1}
    assert w[0] == pytest.approx(40 / (2 * 30)) and w[1] == pytest.approx(40 / (2 * 10))
    # the weighted class totals are equal
    assert 30 * w[0] == pytest.approx(10 * w[1])
    # balanced data: weight 1 everywhere
    assert class_weights(np.array([0, 1, 2, 0, 1, 2]), ["a", "b", "c"]) == {0: 1.0, 1: 1.0, 2: 1.0}


def test_multipliers_by_name_keep_a_dict_in_class_index_order():
    # majority class listed last, so a histogram in frequency order would swap the weights
    labels = np.array([1] * 30 + [0] * 10)
    w = class_weights(labels, ["rare", "common"], {"rare": 3.0})
    assert isinstance(w, dict)
    assert w[0] == pytest.approx(40 / (2 * 10) * 3.0)
    assert w[1] == pytest.approx(40 / (2 * 30))


def test_weight_errors():
    with pytest.raises(TrainingError, match="no training images"):
        class_weights(np.array([0, 0]), ["a", "b"])
    with pytest.raises(TrainingError, match="unknown classes"):
        class_weights(np.array([0, 1]), ["a", "b"], {"c": 2.0})


def test_oversampling_equalises_classes():
    labels = np.array([0] * 12 + [1] * 3 + [2] * 5)
    idx = oversample_indices(labels, seed=0)
    counts = np.bincount(labels[idx])
    assert list(counts) == [12, 12, 12]
    assert set(idx) == set(range(20))  # every original row kept
    assert np.array_equal(idx, oversample_indices(labels, seed=0))


def test_augmentation_layers():
    assert augmentation_layers(AugmentConfig(enabled=False), (0.0, 1.0), 0) == []
    names = [type(layer).__name__ for layer in augmentation_layers(AugmentConfig(), (0.0, 1.0), 0)]
    assert names == ["RandomRotation", "RandomTranslation", "RandomZoom", "RandomBrightness"]
    flip = augmentation_layers(AugmentConfig(horizontal_flip=True), (-1.0, 1.0), 0)
    assert type(flip[-1]).__name__ == "RandomFlip"
