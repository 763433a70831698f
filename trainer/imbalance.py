"""Class imbalance: class weights, random oversampling, and training-time augmentation.

The seeds' ``get_class_weights`` turned the weight dict into a *list* as soon as a multiplier
was given (Keras then ignored or mis-indexed it) and relied on the histogram being in class-index
order. Here the weights are always a dict keyed by class index, computed from
``np.bincount(..., minlength=n_classes)``, and a multiplier is looked up by class *name*.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from cxr_viewer.core.errors import TrainingError

from .config import AugmentConfig


def class_weights(
    labels: np.ndarray,
    class_names: Sequence[str],
    multipliers: Mapping[str, float] | None = None,
) -> dict[int, float]:
    """Inverse-frequency class weights × per-class multipliers.

    ``w_c = n / (k · n_c) · m_c`` for ``n`` images, ``k`` classes and ``n_c`` images of class
    ``c`` (the "balanced" heuristic of King & Zeng 2001, as in scikit-learn's
    ``compute_class_weight``), so a balanced set gets weight 1 everywhere.

    Parameters
    ----------
    labels:
        Integer class indices of the training images.
    class_names:
        Names, index = class index.
    multipliers:
        Class name → factor; names not given get 1. Unknown names raise.
    """
    labels = np.asarray(labels, dtype=np.int64)
    k = len(class_names)
    counts = np.bincount(labels, minlength=k)
    if len(counts) > k:
        raise TrainingError(
            "A label index is outside the class list", f"{k} classes, got {counts}."
        )
    if (counts == 0).any():
        empty = [class_names[int(i)] for i in np.flatnonzero(counts == 0)]
        raise TrainingError(
            "Cannot weight classes that have no training images",
            f"no training images for {empty}.",
            "Check the data and the split fractions.",
        )
    multipliers = dict(multipliers or {})
    unknown = sorted(set(multipliers) - set(class_names))
    if unknown:
        raise TrainingError(
            "imbalance.class_multipliers names unknown classes",
            f"{unknown} not in {list(class_names)}.",
        )
    n = counts.sum()
    return {
        i: float(n / (k * counts[i]) * float(multipliers.get(name, 1.0)))
        for i, name in enumerate(class_names)
    }


def oversample_indices(labels: np.ndarray, seed: int) -> np.ndarray:
    """Training-set row indices with minority classes repeated until all classes are equal.

    Uses imbalanced-learn's :class:`~imblearn.over_sampling.RandomOverSampler` on the row
    indices (not on images: the cache is shared, only the index list grows).
    """
    from imblearn.over_sampling import RandomOverSampler

    labels = np.asarray(labels)
    idx = np.arange(len(labels)).reshape(-1, 1)
    sampler = RandomOverSampler(random_state=seed)
    resampled, _ = sampler.fit_resample(idx, labels)
    return resampled.ravel().astype(np.int64)


def augmentation_layers(aug: AugmentConfig, value_range: tuple[float, float], seed: int) -> list:
    """Keras preprocessing layers for on-the-fly augmentation (empty when disabled).

    Rotation, shift, zoom and brightness; horizontal flip only when asked for (chest anatomy
    is not mirror-symmetric). Fill mode "constant" at the value range's low end (black border,
    as a collimated film) rather than reflection, which would invent anatomy.
    """
    if not aug.enabled:
        return []
    import keras

    low = float(value_range[0])
    layers: list = []
    if aug.rotation > 0:
        layers.append(
            keras.layers.RandomRotation(
                aug.rotation / 360.0, fill_mode="constant", fill_value=low, seed=seed
            )
        )
    if aug.shift > 0:
        layers.append(
            keras.layers.RandomTranslation(
                aug.shift, aug.shift, fill_mode="constant", fill_value=low, seed=seed + 1
            )
        )
    if aug.zoom > 0:
        layers.append(
            keras.layers.RandomZoom(aug.zoom, fill_mode="constant", fill_value=low, seed=seed + 2)
        )
    if aug.brightness > 0:
        layers.append(
            keras.layers.RandomBrightness(aug.brightness, value_range=value_range, seed=seed + 3)
        )
    if aug.horizontal_flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed + 4))
    return layers
