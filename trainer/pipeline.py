"""The ``tf.data`` input pipeline over the image cache.

Per epoch: shuffle row indices → batch → gather the cached [0, 1] images and apply
:func:`cxr_viewer.core.model.preprocess.normalize` (the same function the viewer uses) in a parallel
``map`` → augment (training only, keras preprocessing layers) → ``prefetch`` so the next batch
is ready while the model steps. Decoding happened once, in :mod:`.cache`.

Reproducible across interruptions: the training order of epoch *e* is a permutation drawn from
``(seed, e)`` (an :class:`EpochClock` set by a callback tells the pipeline which epoch it is
feeding), and :class:`EpochClock` also resets every random generator of the augmentation and of
the model (dropout) to a state derived from ``(its seed, e)``. Augmentation runs in a sequential
``map`` so batches draw from the generators in a fixed order. A run resumed at epoch *e* thus
sees exactly the data, augmentation and dropout masks the uninterrupted run saw.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cxr_viewer.core.model.preprocess import InputSpec, normalize


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """float32 (n, n_classes) one-hot rows for integer labels."""
    return np.eye(n_classes, dtype=np.float32)[np.asarray(labels, dtype=np.int64)]


def gather_inputs(images: np.ndarray, rows: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Model inputs (n, h, w, c) float32 for cache rows ``rows`` (the normalize half of
    :func:`~cxr_viewer.core.model.preprocess.study_to_input`)."""
    rows = np.asarray(rows, dtype=np.int64)
    return normalize(np.asarray(images[rows], dtype=np.float32), spec)


class EpochClock:
    """Which epoch the training pipeline is feeding, and a Keras callback that keeps it (and
    every random generator of the augmentation layers and the model) in step with ``fit``."""

    #: generator counter stride per epoch: far more draws than any epoch makes
    STRIDE = 1 << 32

    def __init__(self, augment: Sequence = ()) -> None:
        self.epoch = 0
        self._augment = list(augment)
        self._initial: dict[int, int] = {}

    def _generators(self, model) -> list:
        found: list = []  # keras SeedGenerators
        for owner in [*self._augment, *(model._flatten_layers() if model is not None else [])]:
            for gen in getattr(owner, "_seed_generators", []) or []:
                if all(g is not gen for g in found):
                    found.append(gen)
        return found

    def set_epoch(self, epoch: int, model=None) -> None:
        self.epoch = int(epoch)
        for gen in self._generators(model):
            key = id(gen)
            if key not in self._initial:
                self._initial[key] = int(np.asarray(gen.state.value)[0])
            gen.state.assign(
                np.array([self._initial[key], self.epoch * self.STRIDE], dtype=gen.state.dtype)
            )

    def callback(self):
        import keras

        clock = self

        class _EpochClockCallback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                clock.set_epoch(epoch, self.model)

        return _EpochClockCallback()


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The training order of epoch ``epoch``: a permutation of ``n`` from ``(seed, epoch)``."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n).astype(np.int64)


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
    clock: EpochClock | None = None,
):
    """A batched, prefetched ``tf.data.Dataset`` of (inputs, one-hot labels).

    Parameters
    ----------
    images:
        The cache, float16 (N, h, w) (memory-mapped is fine).
    rows:
        Which cache rows, in order (may repeat: oversampling).
    labels:
        Integer class of each entry of ``rows``, or ready (n, k) targets (multi-label).
    augment:
        Keras preprocessing layers applied in order with ``training=True``.
    clock:
        With ``shuffle``, the epoch whose order is drawn (see :class:`EpochClock`); without
        one, each pass over the dataset draws the next epoch's order.
    """
    from cxr_viewer.core.model.model_io import import_tensorflow

    tf = import_tensorflow()
    rows = np.asarray(rows, dtype=np.int64)
    labels = np.asarray(labels)
    y = labels.astype(np.float32) if labels.ndim == 2 else one_hot(labels, n_classes)
    shape = (None, spec.height, spec.width, spec.channels)

    def load(batch_rows):
        x = tf.numpy_function(
            lambda r: gather_inputs(images, r, spec), [batch_rows], tf.float32, stateful=False
        )
        x.set_shape(shape)
        return x

    n = len(rows)
    if shuffle:
        own_clock = clock or EpochClock()
        passes = [0]

        def order() -> np.ndarray:
            if clock is None:  # no callback keeps the epoch: count the passes
                own_clock.epoch, passes[0] = passes[0], passes[0] + 1
            return epoch_order(n, seed, own_clock.epoch)

        rows_t, y_t = tf.constant(rows), tf.constant(y)

        def one_epoch(_):
            idx = tf.numpy_function(order, [], tf.int64, stateful=True)
            idx.set_shape([n])
            return tf.data.Dataset.from_tensor_slices(idx)

        ds = tf.data.Dataset.from_tensors(0).flat_map(one_epoch)
        ds = ds.map(lambda i: (tf.gather(rows_t, i), tf.gather(y_t, i)))
        ds = ds.apply(tf.data.experimental.assert_cardinality(n))
    else:
        ds = tf.data.Dataset.from_tensor_slices((rows, y))
    ds = ds.batch(batch_size)
    ds = ds.map(lambda r, t: (load(r), t), num_parallel_calls=tf.data.AUTOTUNE)
    if augment:

        def aug(x, t):
            for layer in augment:
                x = layer(x, training=True)
            return x, t

        ds = ds.map(aug)  # sequential: batches draw from the generators in a fixed order
    options = tf.data.Options()
    options.deterministic = True
    # several workers (MultiWorkerMirroredStrategy): every worker runs this same seeded
    # pipeline and keeps its own share of each global batch, so the epoch order stays the
    # one of epoch_order(); one machine is unaffected
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
