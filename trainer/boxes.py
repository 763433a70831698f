"""Box supervision: radiologists' boxes teach the classifier where its class evidence lies.

The model has the class-activation head of :func:`trainer.models._cam_head`: a 1×1
convolution gives a logit per class at every location of the last feature map and the class
score is their mean, so the map *is* the decision. Training adds a per-location
multiple-instance loss on that map (Li et al., CVPR 2018, *Thoracic disease identification and
localization with limited supervision*), with ``d`` = the boxed class's per-location logit
minus the log-sum-exp of the other classes' (for two classes: the logit difference, whose
sigmoid is that location's own probability of the class):

* a **boxed film of the class**: the locations inside its boxes should say "class"
  (``softplus(-d)``), those outside "not the class" (``softplus(d)``), each side averaged over
  its own area so that a small box weighs as much as the rest of the lung;
* a **film of another class**: "nothing anywhere" (``softplus(d)`` averaged over the map),
  weighted by ``boxes.negative_weight``;
* a film of the class whose boxes are not used (``boxes.share`` < 1, or a film without boxes):
  no map loss, only the classification loss.

The map loss is weighted by ``boxes.loss_weight`` beside the cross-entropy on the pooled
output. Box masks go through the same geometric augmentation as their films (they ride along as
an extra channel), then are averaged onto the feature grid: a cell's target is the share of it
inside a box.

Why this and not GAIN or "right for the right reasons" (input-gradient penalties): with a CAM
head the supervised map and the explained map are the same tensor, the loss needs no second
forward pass nor a double backward pass (CPU budget), and Grad-CAM of the exported model
returns that map exactly — what is trained is what the viewer shows.

Boxes of validation films are only used to score localization in the report
(:mod:`trainer.localization`); boxes of test films are never read here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxr_viewer.core.errors import TrainingError
from cxr_viewer.core.model.preprocess import InputSpec

from .config import Config, resolve_path


@dataclass
class BoxTargets:
    """Per training film: its box mask at input size and how its map is supervised."""

    masks: np.ndarray  # (n, h, w) uint8, 1 inside a box
    weight: np.ndarray  # (n,) float32: 0 = no map loss
    boxed_class: np.ndarray  # (n,) float32: 1 = the film is of the boxed class
    class_index: int  # the class the boxes are evidence for
    used: int  # boxed films whose boxes are used
    available: int  # boxed films of the class in the split


def read_boxes_by_path(cfg: Config, class_names: Sequence[str]) -> tuple[dict, int]:
    """Boxes of ``boxes.csv`` grouped by resolved image path, and the class index they are
    evidence for (one class: the finding ↔ class map must name a class of the model)."""
    from cxr_viewer.core.evaluate.localize import read_boxes

    path = resolve_path(cfg.boxes.csv)
    if not path.is_file():
        raise TrainingError(
            f"Box file not found: {path}", "boxes.csv names a file that does not exist."
        )
    boxes = read_boxes(path)
    cmap = cfg.boxes.class_map
    classes = {cmap.get(b.finding, b.finding) for b in boxes}
    unknown = sorted(c for c in classes if c not in class_names)
    if unknown or len(classes) != 1:
        raise TrainingError(
            "The boxes' findings do not map to one class of the model",
            f"findings map to {sorted(classes)}; the classes are {list(class_names)}.",
            'Set [boxes] class_map, e.g. {"Lung Opacity" = "lung_opacity"}.',
        )
    by_path: dict[str, list] = {}
    for b in boxes:
        key = str((path.parent / b.filename).resolve())
        by_path.setdefault(key, []).append(b)
    return by_path, class_names.index(next(iter(classes)))


def box_targets(
    cfg: Config, manifest_part, spec: InputSpec, class_names: Sequence[str]
) -> BoxTargets:
    """The box targets of one split's films (``manifest_part``: path, y), choosing
    ``boxes.share`` of the boxed films of the class with the run's seed."""
    from cxr_viewer.core.evaluate.localize import box_mask

    by_path, c = read_boxes_by_path(cfg, class_names)
    paths = manifest_part["path"].astype(str).tolist()
    y = manifest_part["y"].to_numpy(np.int64)
    n = len(paths)
    masks = np.zeros((n, spec.height, spec.width), np.uint8)
    weight = np.where(y == c, 0.0, cfg.boxes.negative_weight).astype(np.float32)
    boxed = [i for i, p in enumerate(paths) if y[i] == c and p in by_path]
    rng = np.random.default_rng([int(cfg.seed), 7])
    keep = int(round(cfg.boxes.share * len(boxed)))
    chosen = sorted(rng.permutation(boxed)[:keep].tolist()) if boxed else []
    for i in chosen:
        masks[i] = box_mask(by_path[paths[i]], (spec.height, spec.width)).astype(np.uint8)
        weight[i] = 1.0
    return BoxTargets(masks, weight, (y == c).astype(np.float32), c, len(chosen), len(boxed))


def make_mil_loss(class_index: int, n_classes: int):
    """The per-location loss (see the module docstring) on ``head_cam``'s logits, as a Keras
    loss (per-film values, batch mean).

    ``y_true`` is (batch, rows, cols, 3): the box share of each cell, the film's map-loss
    weight and whether the film is of the boxed class (both broadcast over the cells).
    """
    from keras import ops

    others = [k for k in range(n_classes) if k != class_index]

    def box_mil(y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        own = y_pred[..., class_index]
        if len(others) == 1:
            rest = y_pred[..., others[0]]
        else:
            rest = ops.logsumexp(ops.take(y_pred, others, axis=-1), axis=-1)
        d = own - rest
        m, w, pos = y_true[..., 0], y_true[:, 0, 0, 1], y_true[:, 0, 0, 2]
        inside = ops.sum(m * ops.softplus(-d), axis=(1, 2)) / (ops.sum(m, axis=(1, 2)) + 1e-6)
        outside = ops.sum((1 - m) * ops.softplus(d), axis=(1, 2)) / (
            ops.sum(1 - m, axis=(1, 2)) + 1e-6
        )
        nothing = ops.mean(ops.softplus(d), axis=(1, 2))
        return w * (pos * (inside + outside) + (1 - pos) * nothing)

    return box_mil


def make_box_dataset(
    images: np.ndarray,
    rows: np.ndarray,
    labels: np.ndarray,
    targets: BoxTargets,
    n_classes: int,
    spec: InputSpec,
    grid: tuple[int, int],
    *,
    batch_size: int,
    seed: int,
    augment: Sequence = (),
    clock=None,
    sample_weight: np.ndarray | None = None,
):
    """Training batches ``(x, (one-hot, map target)[, sample weight])`` with the same epoch
    order and augmentation draws as :func:`trainer.pipeline.make_dataset`; geometric
    augmentation moves each mask with its film."""
    from cxr_viewer.core.model.model_io import import_tensorflow

    from .pipeline import EpochClock, epoch_order, gather_inputs, one_hot

    tf = import_tensorflow()
    rows = np.asarray(rows, dtype=np.int64)
    y = one_hot(labels, n_classes)
    info = np.stack([targets.weight, targets.boxed_class], axis=1).astype(np.float32)
    sw = (
        np.ones(len(rows), np.float32)
        if sample_weight is None
        else np.asarray(sample_weight, np.float32)
    )
    masks = targets.masks
    n = len(rows)
    own_clock = clock or EpochClock()
    h, w, ch = spec.height, spec.width, spec.channels
    low, high = (float(v) for v in spec.value_range)
    gr, gc = grid

    def order() -> np.ndarray:
        return epoch_order(n, seed, own_clock.epoch)

    def load(idx):
        x = gather_inputs(images, rows[idx], spec)
        m = masks[idx].astype(np.float32)[..., None]
        return x, m

    def one_epoch(_):
        idx = tf.numpy_function(order, [], tf.int64, stateful=True)
        idx.set_shape([n])
        return tf.data.Dataset.from_tensor_slices(idx)

    ds = tf.data.Dataset.from_tensors(0).flat_map(one_epoch)
    ds = ds.apply(tf.data.experimental.assert_cardinality(n))
    ds = ds.batch(batch_size)
    y_t, info_t, sw_t = tf.constant(y), tf.constant(info), tf.constant(sw)

    def fetch(idx):
        x, m = tf.numpy_function(load, [idx], (tf.float32, tf.float32), stateful=False)
        x.set_shape((None, h, w, ch))
        m.set_shape((None, h, w, 1))
        return x, m, tf.gather(y_t, idx), tf.gather(info_t, idx), tf.gather(sw_t, idx)

    ds = ds.map(fetch, num_parallel_calls=tf.data.AUTOTUNE)
    geometric = [a for a in augment if type(a).__name__ != "RandomBrightness"]
    photometric = [a for a in augment if type(a).__name__ == "RandomBrightness"]

    def finish(x, m, yy, inf, s):
        if geometric:
            # the mask rides along as a channel scaled to the value range, so the layers' fill
            # value (the range's low end) means "outside every box"
            z = tf.concat([x, low + m * (high - low)], axis=-1)
            for layer in geometric:
                z = layer(z, training=True)
            x, m = z[..., :ch], (z[..., ch:] - low) / (high - low)
        for layer in photometric:
            x = layer(x, training=True)
        cell = tf.image.resize(tf.clip_by_value(m, 0.0, 1.0), (gr, gc), method="area")
        b = tf.shape(x)[0]
        extra = tf.broadcast_to(inf[:, None, None, :], tf.stack([b, gr, gc, 2]))
        target = tf.concat([cell, extra], axis=-1)
        return x, (yy, target), s

    ds = ds.map(finish)  # sequential: batches draw from the generators in a fixed order
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def alias_metrics_callback():
    """A callback (put first) that copies a two-output model's ``output_*`` logs to the plain
    names (``auc``, ``val_auc``, …) the checkpoint, early stopping and history use."""
    import keras

    class _Alias(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs is None:
                return
            for key in list(logs):
                for prefix in ("output_", "val_output_"):
                    if key.startswith(prefix) and not key.endswith("_loss"):
                        plain = key.replace("output_", "", 1)
                        logs[plain] = logs[key]

    return _Alias()


def cam_grid(model) -> tuple[int, int]:
    """(rows, columns) of the ``head_cam`` map."""
    from .models import CAM_LAYER

    shape = model.get_layer(CAM_LAYER).output.shape
    return int(shape[1]), int(shape[2])


def describe(targets: BoxTargets, cfg: Config) -> dict:
    """What the box supervision used (for the report and the model card)."""
    return {
        "boxes_file": str(Path(cfg.boxes.csv)),
        "loss_weight": cfg.boxes.loss_weight,
        "negative_weight": cfg.boxes.negative_weight,
        "share": cfg.boxes.share,
        "boxed_training_films_used": targets.used,
        "boxed_training_films_available": targets.available,
        "method": f"class-activation head (1x1 conv, {_pooling(cfg)}) + per-location "
        "multiple-instance loss on box masks (Li et al., CVPR 2018)",
    }


def _pooling(cfg: Config) -> str:
    r = cfg.model.cam_pool
    if r > 0:
        return f"softmax(r*e)-weighted sum of per-location evidence, r = {r:g}"
    return "mean of per-location logits"
