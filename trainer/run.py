"""One ``cxr-train train`` run end to end: data → (search →) train → evaluate → report → bundle.

Outputs in the run folder: ``config.resolved.toml`` (every key; re-running it reproduces the
run), ``splits.csv``, ``history.csv``, ``checkpoints/``, ``logs/`` (TensorBoard), ``model.keras``,
``metrics.json``, ``report/`` (``report.md`` + figures) and, unless configured elsewhere,
``bundle/``. Re-running the same command continues an interrupted run; a finished run is
re-evaluated and re-exported without retraining.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cxr_viewer.core.errors import TrainingError
from cxr_viewer.core.model.bundle import Bundle

from .config import Config, config_from_dict, resolve_path, write_config
from .data import PreparedData, prepare_data
from .distribute import Cluster
from .evaluate import evaluate_model, evaluate_multilabel
from .export import export_bundle
from .figures import learning_curves_figure, write_figures
from .imbalance import class_weights
from .report import write_multilabel_report, write_report
from .search import random_search
from .train import (
    BOX_FILE,
    FINAL_MODEL,
    HISTORY_FILE,
    TIME_FILE,
    train_model,
    training_seconds,
)

RESOLVED_CONFIG = "config.resolved.toml"
#: keys that may differ between an interrupted (or finished) run and its re-run: they do not
#: change what is trained — evaluation and export are redone from the trained model
_NON_SEMANTIC = {
    ("run_dir",), ("name",), ("evaluate",), ("export",), ("train", "verbose"), ("data", "workers"),
    ("train", "worker_timeout"),
    ("data", "max_skipped_fraction"),
}  # fmt: skip


@dataclass
class RunOutcome:
    run_dir: Path
    bundle: Bundle
    evaluation: dict
    training: dict
    report: Path


def _semantic(cfg: Config) -> dict:
    d = cfg.to_dict()
    for path in _NON_SEMANTIC:
        node = d
        for key in path[:-1]:
            node = node[key]
        node.pop(path[-1], None)
    return d


def _check_same_config(cfg: Config, run_dir: Path) -> None:
    import tomllib

    path = run_dir / RESOLVED_CONFIG
    if not path.is_file():
        return
    try:
        old = config_from_dict(tomllib.loads(path.read_text(encoding="utf-8")), str(path))
    except (TrainingError, tomllib.TOMLDecodeError):
        old = None
    if old is None or _semantic(old) != _semantic(cfg):
        raise TrainingError(
            f"{run_dir} holds a run with a different configuration",
            f"its {RESOLVED_CONFIG} differs from the current config; resuming would mix them.",
            "Use a new --out folder, or pass --fresh to discard the old run.",
        )


def run_training(
    cfg: Config,
    run_dir: str | Path,
    *,
    bundle_dir: str | Path | None = None,
    fresh: bool = False,
    progress: bool = True,
) -> RunOutcome | None:
    """Train, evaluate and export as ``cfg`` says; see the module docstring for the outputs.

    With ``train.distribute = "multiworker"`` every worker calls this; only the chief writes
    ``run_dir`` and returns the outcome, the others train in a temporary folder and return
    None (see :mod:`trainer.distribute`).
    """
    run_dir = Path(run_dir)
    workers = 1
    if cfg.train.distribute == "multiworker":
        from .distribute import barrier, multiworker_strategy

        # before anything else: TensorFlow wants this strategy before its first op
        _, cluster = multiworker_strategy(cfg.train.worker_timeout)
        workers = cluster.num_workers
        if not cluster.is_chief:
            _train_as_worker(cfg, run_dir, cluster, fresh=fresh, progress=progress)
            barrier()  # stay in the cluster until the chief has exported
            return None
    if fresh and run_dir.exists():
        for name in (RESOLVED_CONFIG, "splits.csv"):
            (run_dir / name).unlink(missing_ok=True)
    _check_same_config(cfg, run_dir)
    write_config(cfg, run_dir / RESOLVED_CONFIG)
    t0 = time.perf_counter()
    data: PreparedData = prepare_data(cfg, run_dir, progress=progress)
    trials = None
    if cfg.search.trials > 0:
        chosen_cfg, result, trials = random_search(cfg, data, run_dir)
    else:
        chosen_cfg, result = cfg, train_model(cfg, data, run_dir, fresh=fresh)
    model = result.model
    if cfg.train.distribute == "multiworker" and result.resumed_from != -1:
        # the chief alone evaluates and exports: a model outside the strategy, whose predict()
        # neither shards the data over the workers nor waits for them
        from cxr_viewer.core.model.model_io import load_keras_model

        model = load_keras_model(run_dir / FINAL_MODEL)
    if data.head.findings:  # a threshold per finding
        evaluation = evaluate_multilabel(model, data, rule=cfg.evaluate.threshold_rule)
    else:
        evaluation = evaluate_model(
            model,
            data,
            positive_class=cfg.evaluate.positive_class,
            rule=cfg.evaluate.threshold_rule,
            target_sensitivity=cfg.evaluate.target_sensitivity,
            baseline=cfg.evaluate.pixel_baseline,
        )
    weights = None
    if cfg.imbalance.strategy == "class_weight" and not data.head.findings:
        weights = class_weights(
            data.labels("train"), data.class_names, cfg.imbalance.class_multipliers
        )
    training = {
        "parameters": int(model.count_params()),
        "epochs_run": int(len(result.history)),
        "best_epoch": int(result.best_epoch) + 1,
        "monitor": cfg.train.monitor,
        "imbalance": cfg.imbalance.strategy,
        "class_weight": {data.class_names[i]: round(w, 4) for i, w in (weights or {}).items()},
        "resumed_from_epoch": int(max(result.resumed_from, 0)),
        "distribute": cfg.train.distribute,
        "workers": workers,
        "wall_time_s": round(time.perf_counter() - t0, 1),
        "fit_seconds_all_invocations": training_seconds(run_dir),
        "reused_trained_model": result.resumed_from == -1,
        "chosen_hyperparameters": {
            "learning_rate": chosen_cfg.train.learning_rate,
            "dropout": chosen_cfg.model.dropout,
            "dense_units": chosen_cfg.model.dense_units,
        },
    }
    if trials is not None:
        training["search_trials"] = trials

    if bundle_dir is None:
        bundle_dir = resolve_path(cfg.export.bundle_dir) if cfg.export.bundle_dir else None
    bundle_dir = Path(bundle_dir) if bundle_dir else run_dir / "bundle"
    bundle = export_bundle(model, chosen_cfg, data, evaluation, bundle_dir, training=training)
    if cfg.evaluate.gradcam_check > 0:  # on the exported bundle, through the viewer's Grad-CAM
        from .gradcam_check import gradcam_check

        evaluation["gradcam_check"] = gradcam_check(
            bundle_dir, data, limit=cfg.evaluate.gradcam_check, seed=cfg.seed
        )
    if cfg.boxes.csv:
        _box_reports(cfg, data, bundle_dir, run_dir, evaluation, training)

    report_dir = run_dir / "report"
    if data.head.findings:
        report_dir.mkdir(parents=True, exist_ok=True)
        curve = learning_curves_figure(result.history, report_dir / "learning_curves.png")
        figures = [curve] if curve is not None else []
        report = write_multilabel_report(
            report_dir / "report.md", chosen_cfg, data.summary(), data.class_names, evaluation,
            training, figures,
        )  # fmt: skip
    else:
        labels = {s: data.labels(s) for s in ("val", "test")}
        figures = write_figures(report_dir, evaluation, labels, data.class_names, result.history)
        report = write_report(
            report_dir / "report.md", chosen_cfg, data.summary(), data.class_names, evaluation,
            training, figures, trials,
        )  # fmt: skip
    metrics = {k: v for k, v in evaluation.items() if k != "probs"}
    (run_dir / "metrics.json").write_text(
        json.dumps({"evaluation": metrics, "training": training}, indent=2), encoding="utf-8"
    )
    bundle = export_bundle(
        model, chosen_cfg, data, evaluation, bundle_dir,
        training=training, report_files=[report, *figures],
    )  # fmt: skip
    if cfg.train.distribute == "multiworker":
        from .distribute import barrier

        barrier()  # the other workers wait here for the chief's export
    return RunOutcome(run_dir, bundle, evaluation, training, report)


def _box_reports(cfg: Config, data, bundle_dir, run_dir: Path, evaluation, training) -> None:
    """With ``[boxes]``: the localization on the validation boxes (the prior from the training
    boxes; test boxes stay unread) into ``evaluation`` and what the box supervision used into
    ``training``."""
    if cfg.boxes.report_localization and not data.head.findings:
        from .localization import localization_report

        localization = localization_report(cfg, data, bundle_dir, run_dir)
        if localization is not None:
            evaluation["localization"] = localization
    box_file = run_dir / BOX_FILE
    if box_file.is_file():
        training["box_supervision"] = json.loads(box_file.read_text(encoding="utf-8"))


#: what a non-chief worker copies from the chief's run folder to restore the same state
_RESTORE = ("checkpoints", HISTORY_FILE, FINAL_MODEL, TIME_FILE)


def _train_as_worker(
    cfg: Config, run_dir: Path, cluster: Cluster, *, fresh: bool, progress: bool
) -> None:
    """A non-chief worker's share of a multi-worker run: it trains in step with the chief in a
    temporary folder (deleted at the end) that starts as a copy of the chief's checkpoints,
    so every worker restores the same epoch; evaluation and export are the chief's."""
    # named after the run, so a re-run clears what a killed worker could not delete
    key = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:12]
    work = (
        Path(tempfile.gettempdir())
        / f"cxr-train-worker-{key}-{cluster.task_type}{cluster.task_index}"
    )
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        if not fresh:
            for name in _RESTORE:
                src, dst = run_dir / name, work / name
                try:
                    if src.is_dir():
                        shutil.copytree(src, dst)
                    elif src.is_file():
                        shutil.copy2(src, dst)
                except (OSError, shutil.Error):
                    pass  # the chief is discarding stale files: it decides the same way
        # its own image cache: two workers must not write one cache file at once
        own = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, cache_dir=""))
        train_model(own, prepare_data(own, work, progress=progress), work, fresh=fresh)
    finally:
        shutil.rmtree(work, ignore_errors=True)
