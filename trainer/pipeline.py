"""The ``tf.data`` input pipeline over the image cache.

Per epoch: shuffle row indices → batch → gather the cached [0, 1] images and apply
:func:`cxr_viewer.core.preprocess.normalize` (the same function the viewer uses) in a parallel
``map`` → augment (training only, keras preprocessing layers, parallel ``map``) → ``prefetch``
so the next batch is ready while the model steps. Decoding happened once, in :mod:`.cache`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cxr_viewer.core.preprocess import InputSpec, normalize


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """float32 (n, n_classes) one-hot rows for integer labels."""
    return np.eye(n_classes, dtype=np.float32)[np.asarray(labels, dtype=np.int64)]


def gather_inputs(images: np.ndarray, rows: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Model inputs (n, h, w, c) float32 for cache rows ``rows`` (the normalize half of
    :func:`~cxr_viewer.core.preprocess.study_to_input`)."""
    rows = np.asarray(rows, dtype=np.int64)
    return normalize(np.asarray(images[rows], dtype=np.float32), spec)


def make_dataset(
    images: np.ndarray,
    rows: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    spec: InputSpec,
    *,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    augment: Sequence = (),
):
    """A batched, prefetched ``tf.data.Dataset`` of (inputs, one-hot labels).

    Parameters
    ----------
    images:
        The cache, float16 (N, h, w) (memory-mapped is fine).
    rows:
        Which cache rows, in order (may repeat: oversampling).
    labels:
        Integer class of each entry of ``rows``.
    augment:
        Keras preprocessing layers applied in order with ``training=True``.
    """
    from cxr_viewer.core.model_io import import_tensorflow

    tf = import_tensorflow()
    rows = np.asarray(rows, dtype=np.int64)
    y = one_hot(labels, n_classes)
    shape = (None, spec.height, spec.width, spec.channels)

    def load(batch_rows):
        x = tf.numpy_function(
            lambda r: gather_inputs(images, r, spec), [batch_rows], tf.float32, stateful=False
        )
        x.set_shape(shape)
        return x

    ds = tf.data.Dataset.from_tensor_slices((rows, y))
    if shuffle:
        ds = ds.shuffle(len(rows), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    ds = ds.map(lambda r, t: (load(r), t), num_parallel_calls=tf.data.AUTOTUNE)
    if augment:

        def aug(x, t):
            for layer in augment:
                x = layer(x, training=True)
            return x, t

        ds = ds.map(aug, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
