"""Fit a classifier on prepared data, resumably.

Two phases when ``train.head_epochs`` > 0 (fine-tuning a pretrained backbone, as the Keras
transfer-learning guide does): the head trains on a frozen backbone for ``head_epochs`` epochs,
then the backbone is unfrozen and everything trains at ``train.fine_tune_learning_rate`` for
``train.epochs`` more (epochs are numbered on through both phases). Otherwise one phase.

Run folder layout (``run_dir``)::

    checkpoints/backup_head/  BackupAndRestore state of the head phase
    checkpoints/head.weights.h5   the head phase's final weights: its presence means "done"
    checkpoints/backup/     keras BackupAndRestore state (weights + optimizer + epoch); it is
                            deleted when fit() completes, so its presence means "interrupted"
    checkpoints/best.weights.h5   best epoch so far on the monitored validation metric
    history.csv             one row per finished epoch (CSVLogger, appended on resume)
    logs/                   TensorBoard
    model.keras             the final (best) model once training has finished

Running the same command again after an interruption resumes at the next epoch with the same
split, weights, optimizer state and early-stopping state (restored from ``history.csv``), and
the same data order, augmentation and dropout draws (:class:`trainer.pipeline.EpochClock`): on
a CPU, killed-and-resumed ends with the same weights as uninterrupted, bit for bit.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxr_viewer.core.model.model_io import import_tensorflow

from .boxes import alias_metrics_callback
from .config import Config
from .data import PreparedData
from .heads import TrainerHead
from .imbalance import augmentation_layers, class_weights, oversample_indices
from .models import build_model, compile_model, set_trainable
from .pipeline import EpochClock, make_dataset

HISTORY_FILE = "history.csv"
FINAL_MODEL = "model.keras"


@dataclass
class TrainResult:
    model: Any  # a keras.Model (Keras ships no type stubs)
    history: pd.DataFrame
    best_epoch: int
    resumed_from: int  # 0 for a fresh run, -1 when a finished run's model was reused
    class_weight: dict[int, float] | None


def _mode(monitor: str) -> str:
    return "min" if monitor.endswith("loss") else "max"


def _best_so_far(history: pd.DataFrame, monitor: str) -> tuple[float | None, int, int]:
    """(best value, its epoch index, epochs waited since) from a history table."""
    if history.empty or monitor not in history:
        return None, 0, 0
    values = history[monitor].to_numpy(dtype=float)
    i = int(np.nanargmin(values) if _mode(monitor) == "min" else np.nanargmax(values))
    return float(values[i]), int(history["epoch"].iloc[i]), len(values) - 1 - i


def _resumable_early_stopping(history_path: Path, monitor: str, patience: int):
    import keras

    class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
        """EarlyStopping whose best value and patience counter survive an interruption."""

        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            best, epoch, wait = _best_so_far(read_history(history_path), self.monitor)
            if best is not None:
                self.best, self.best_epoch, self.wait = best, epoch, wait

    return ResumableEarlyStopping(
        monitor=monitor, mode=_mode(monitor), patience=patience, restore_best_weights=False
    )


def read_history(path: Path) -> pd.DataFrame:
    """The per-epoch history (empty frame when there is none)."""
    if not Path(path).is_file() or Path(path).stat().st_size == 0:
        return pd.DataFrame({"epoch": []})
    return pd.read_csv(path)


def _backup_epoch(backup_dir: Path) -> int:
    meta = backup_dir / "training_metadata.json"
    if not meta.is_file():
        return 0
    try:
        return int(json.loads(meta.read_text())["epoch"])
    except (ValueError, KeyError, OSError):
        return 0


TIME_FILE = "training_seconds.json"


def _add_training_seconds(run_dir: Path, seconds: float) -> None:
    """Accumulate the seconds spent in fit() over every invocation of a run (resumed ones
    included), so the report states what training cost, not what the last invocation did."""
    path = run_dir / TIME_FILE
    total = training_seconds(run_dir) or 0.0
    path.write_text(json.dumps({"fit_seconds": round(total + seconds, 1)}), encoding="utf-8")


def training_seconds(run_dir: Path) -> float | None:
    """Seconds spent in fit() over all invocations of the run (None if not recorded)."""
    try:
        return float(json.loads((Path(run_dir) / TIME_FILE).read_text())["fit_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _strategy_and_precision(cfg: Config):
    """The ``train.distribute`` strategy and the mixed-precision policy (on with a GPU, or
    forced). ``auto`` is MirroredStrategy when GPUs are present, else the default strategy."""
    tf = import_tensorflow()
    import keras

    if cfg.train.distribute == "multiworker":  # first: it must precede every TensorFlow op
        from .distribute import multiworker_strategy

        strategy, _ = multiworker_strategy(cfg.train.worker_timeout)
    gpus = tf.config.list_physical_devices("GPU")
    mixed = cfg.train.mixed_precision == "on" or (cfg.train.mixed_precision == "auto" and gpus)
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    if cfg.train.distribute == "mirrored" or (cfg.train.distribute == "auto" and gpus):
        strategy = tf.distribute.MirroredStrategy()
    elif cfg.train.distribute != "multiworker":
        strategy = tf.distribute.get_strategy()
    return strategy, bool(mixed)


def _build_from_local_batch(model, strategy, spec, n_classes: int, weighted: bool) -> None:
    """Make Keras build the compiled model's metrics and optimizer from a local example batch.

    Keras 3 (3.15) builds them from the first *distributed* batch by averaging it over the
    replicas with ``strategy.reduce``, which fails under MultiWorkerMirroredStrategy with more
    than one worker ("Attempt to convert a value (PerReplica...) to a Tensor"). Only shapes and
    dtypes matter to that build, so a batch of one zero image does it, on every worker alike.
    """
    x = np.zeros((1, spec.height, spec.width, spec.channels), np.float32)
    batch: tuple[np.ndarray, ...] = (x, np.zeros((1, n_classes), np.float32))
    if weighted:
        batch = (*batch, np.ones((1,), np.float32))

    def build(iterator=None, data_batch=None):
        with strategy.scope():
            model._symbolic_build(data_batch=batch)

    object.__setattr__(model, "_maybe_symbolic_build", build)


def _callbacks(cfg: Config, run_dir: Path, backup_dir: Path, *, early_stopping: bool):
    import keras

    ckpt_dir = run_dir / "checkpoints"
    history_path = run_dir / HISTORY_FILE
    monitor = cfg.train.monitor
    best, _, _ = _best_so_far(read_history(history_path), monitor)
    callbacks = [
        keras.callbacks.BackupAndRestore(str(backup_dir)),
        keras.callbacks.CSVLogger(str(history_path), append=True),
        keras.callbacks.ModelCheckpoint(
            str(ckpt_dir / "best.weights.h5"),
            monitor=monitor,
            mode=_mode(monitor),
            save_best_only=True,
            save_weights_only=True,
            initial_value_threshold=best,
        ),  # fmt: skip
    ]
    if early_stopping:
        callbacks.append(_resumable_early_stopping(history_path, monitor, cfg.train.patience))
    if cfg.train.tensorboard:
        if importlib.util.find_spec("tensorboard") is None:
            warnings.warn(
                "train.tensorboard is on but the tensorboard package is not installed: "
                "no TensorBoard logs (pip install tensorboard)",
                stacklevel=3,
            )
        else:
            callbacks.append(keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False))
    return callbacks


def _training_targets(cfg: Config, data: PreparedData) -> tuple[Any, Any, Any, Any, Any]:
    """(training rows, their targets, validation targets, class weights or None, which
    training-split entries the rows are), with the imbalance strategy applied (class weights
    or oversampling; neither for multi-label)."""
    train_rows, train_y = data.rows("train"), data.fit_labels("train")
    val_y = data.fit_labels("val")
    # class weights and oversampling are single-label ideas (config allows them for no head
    # of independent findings)
    single_label = not data.head.findings
    weights = None
    if single_label and cfg.imbalance.strategy == "class_weight":
        weights = class_weights(train_y, data.class_names, cfg.imbalance.class_multipliers)
    picked = np.arange(len(train_rows))
    if single_label and cfg.imbalance.strategy == "oversample":
        picked = oversample_indices(train_y, cfg.seed)
        train_rows, train_y = train_rows[picked], train_y[picked]
    return train_rows, train_y, val_y, weights, picked


def train_model(
    cfg: Config,
    data: PreparedData,
    run_dir: str | Path,
    *,
    extra_callbacks: Sequence = (),
    fresh: bool = False,
) -> TrainResult:
    """Train (or resume training) and return the model with the best validation epoch's
    weights."""
    import keras

    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    backup_dir, head_backup = ckpt_dir / "backup", ckpt_dir / "backup_head"
    head_done = ckpt_dir / "head.weights.h5"
    best_path = ckpt_dir / "best.weights.h5"
    history_path = run_dir / HISTORY_FILE
    head_epochs = cfg.train.head_epochs
    if fresh:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        history_path.unlink(missing_ok=True)
        (run_dir / FINAL_MODEL).unlink(missing_ok=True)
    resumed_from = max(_backup_epoch(backup_dir), _backup_epoch(head_backup))
    final = run_dir / FINAL_MODEL
    # the head phase's weights mark "phase 1 done" only until the run finishes
    started = resumed_from > 0 or (head_epochs > 0 and head_done.is_file() and not final.is_file())
    if not started and final.is_file():  # finished before: reuse, don't retrain
        from cxr_viewer.core.model.model_io import load_keras_model

        history = read_history(history_path)
        _, best_epoch, _ = _best_so_far(history, cfg.train.monitor)
        return TrainResult(load_keras_model(final), history, best_epoch, -1, None)
    if not started:  # a fresh start: nothing stale may leak into it
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        history_path.unlink(missing_ok=True)
    else:  # keep exactly the epochs the checkpoints hold
        kept = resumed_from if resumed_from > 0 else head_epochs
        if head_done.is_file() and _backup_epoch(backup_dir) == 0:
            kept = head_epochs
        hist = read_history(history_path)
        hist[hist["epoch"] < kept].to_csv(history_path, index=False)
    ckpt_dir.mkdir(parents=True, exist_ok=True)

    n_classes = len(data.class_names)
    strategy, _ = _strategy_and_precision(cfg)
    if cfg.train.deterministic:  # process-wide; seeds alone leave CPU kernels' order free
        import_tensorflow().config.experimental.enable_op_determinism()
    try:
        with strategy.scope():
            model = build_model(cfg.model, data.spec, n_classes, seed=cfg.seed)
    finally:
        keras.mixed_precision.set_global_policy("float32")

    train_rows, train_y, val_y, weights, picked_rows = _training_targets(cfg, data)
    aug = augmentation_layers(cfg.augment, data.spec.value_range, cfg.seed)
    clock = EpochClock(aug)
    bs = cfg.train.batch_size
    if cfg.train.distribute == "multiworker":  # batch_size is per replica (worker or GPU)
        bs *= strategy.num_replicas_in_sync
    train_ds = make_dataset(
        data.cache.images, train_rows, train_y, n_classes, data.spec,
        batch_size=bs, shuffle=True, seed=cfg.seed, augment=aug, clock=clock,
    )  # fmt: skip
    val_ds = make_dataset(
        data.cache.images, data.rows("val"), val_y, n_classes, data.spec,
        batch_size=bs,
    )  # fmt: skip
    fit_model, box_info = model, None
    if cfg.boxes.csv:  # box supervision: a two-output view of the same layers
        fit_model, train_ds, val_ds, box_info = _box_supervision(
            cfg, data, model, train_y, weights, picked_rows, aug, clock, bs, val_ds
        )
        weights = None  # folded into the training batches' sample weights

    def fit(phase: str, lr: float, backup: Path, initial_epoch: int, epochs: int) -> None:
        with strategy.scope():
            # BatchNorm is kept frozen only when fine-tuning a pretrained backbone: a model
            # trained from scratch needs its statistics learnt
            freeze_bn = cfg.train.freeze_batchnorm and phase == "fine_tune"
            set_trainable(model, cfg.model, phase=phase, freeze_batchnorm=freeze_bn)
            _compile(cfg, fit_model, lr, n_classes, data.head, box_info)
        if cfg.train.distribute == "multiworker":
            _build_from_local_batch(model, strategy, data.spec, n_classes, weights is not None)
        callbacks = _callbacks(cfg, run_dir, backup, early_stopping=phase != "head")
        if box_info is not None:  # first: the two-output logs get their plain names
            callbacks.insert(0, alias_metrics_callback())
        fit_model.fit(
            train_ds,
            validation_data=val_ds,
            initial_epoch=initial_epoch,
            epochs=epochs,
            class_weight=weights,
            callbacks=[clock.callback(), *callbacks, *extra_callbacks],
            verbose=cfg.train.verbose,
            shuffle=False,  # the dataset orders itself (seeded per epoch)
        )

    started_at = time.perf_counter()
    if head_epochs > 0:
        if head_done.is_file():
            model.load_weights(str(head_done))
        else:
            fit("head", cfg.train.learning_rate, head_backup, 0, head_epochs)
            model.save_weights(str(head_done))
        fit(
            "fine_tune", cfg.train.fine_tune_learning_rate, backup_dir,
            head_epochs, head_epochs + cfg.train.epochs,
        )  # fmt: skip
    else:
        fit("train", cfg.train.learning_rate, backup_dir, 0, cfg.train.epochs)
    if best_path.is_file():
        model.load_weights(str(best_path))
    history = read_history(history_path)
    _, best_epoch, _ = _best_so_far(history, cfg.train.monitor)
    model.save(final)
    head_done.unlink(missing_ok=True)
    _add_training_seconds(run_dir, time.perf_counter() - started_at)
    if box_info is not None:
        (run_dir / BOX_FILE).write_text(json.dumps(box_info["summary"], indent=2), "utf-8")
    return TrainResult(model, history, best_epoch, resumed_from, weights)


BOX_FILE = "box_supervision.json"


def _compile(cfg, fit_model, lr: float, n_classes: int, head: TrainerHead, box_info) -> None:
    """Compile the model that is fitted: with box supervision the two-output view (class
    output + ``head_cam`` map, :mod:`trainer.boxes`), else the classifier itself."""
    if box_info is None:
        compile_model(fit_model, lr, n_classes, head)
        return
    from .boxes import make_mil_loss

    compile_model(
        fit_model, lr, n_classes, head,
        map_loss=make_mil_loss(box_info["class_index"], n_classes),
        map_weight=cfg.boxes.loss_weight,
    )  # fmt: skip


def _box_supervision(cfg, data, model, train_y, class_weight, picked_rows, aug, clock, bs, val_ds):
    """The two-output training model, its training and validation datasets and what the box
    supervision uses (see :mod:`trainer.boxes`)."""
    from .boxes import box_targets, cam_grid, describe, make_box_dataset
    from .models import cam_training_model

    tf = import_tensorflow()
    targets = box_targets(cfg, data.part("train"), data.spec, data.class_names)
    targets.masks, targets.weight = targets.masks[picked_rows], targets.weight[picked_rows]
    targets.boxed_class = targets.boxed_class[picked_rows]
    sw = None
    if class_weight:
        sw = np.array([class_weight[int(k)] for k in train_y], np.float32)
    fit_model = cam_training_model(model)
    grid = cam_grid(model)
    n_classes = len(data.class_names)
    train_ds = make_box_dataset(
        data.cache.images, data.rows("train")[picked_rows], train_y, targets, n_classes,
        data.spec, grid, batch_size=bs, seed=cfg.seed, augment=aug, clock=clock,
        sample_weight=sw,
    )  # fmt: skip
    rows, cols = grid

    def no_map_loss(x, t):
        b = tf.shape(x)[0]
        return x, (t, tf.zeros(tf.stack([b, rows, cols, 3])))

    val_ds = val_ds.map(no_map_loss)
    summary = describe(targets, cfg)
    return fit_model, train_ds, val_ds, {"class_index": targets.class_index, "summary": summary}
