"""Random hyperparameter search (Bergstra & Bengio 2012), selected on validation only.

Each trial samples a learning rate (log-uniform), a dropout rate (uniform) and the head's width
(choice) from ``[search]``, trains in ``<run>/trials/trial_NN`` (resumable like any run) on the
same split, and is scored by its validation AUC. The test set is not touched until the chosen
model is evaluated once, by the caller.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np

from .config import Config
from .data import PreparedData
from .evaluate import compute_metrics, positive_index, predict_split
from .train import TrainResult, train_model


def sample_trials(cfg: Config) -> list[dict]:
    """The seeded list of hyperparameter draws."""
    rng = np.random.default_rng([cfg.seed, 0x5EA])
    s = cfg.search
    lo, hi = (math.log(v) for v in s.learning_rate)
    return [
        {
            "trial": t,
            "learning_rate": float(math.exp(rng.uniform(lo, hi))),
            "dropout": float(rng.uniform(s.dropout[0], s.dropout[1])),
            "dense_units": int(rng.choice(s.dense_units)),
        }
        for t in range(s.trials)
    ]


def trial_config(cfg: Config, draw: dict) -> Config:
    out = copy.deepcopy(cfg)
    out.train.learning_rate = draw["learning_rate"]
    out.model.dropout = draw["dropout"]
    out.model.dense_units = draw["dense_units"]
    if cfg.search.epochs:
        out.train.epochs = cfg.search.epochs
    return out


def random_search(
    cfg: Config, data: PreparedData, run_dir: str | Path
) -> tuple[Config, TrainResult, list[dict]]:
    """Run the trials; return the chosen trial's config and result, and every trial's score."""
    names = data.class_names
    pos = positive_index(names, cfg.evaluate.positive_class) if len(names) == 2 else None
    best: tuple[float, Config, TrainResult] | None = None
    trials = []
    for draw in sample_trials(cfg):
        tcfg = trial_config(cfg, draw)
        result = train_model(tcfg, data, Path(run_dir) / "trials" / f"trial_{draw['trial']:02d}")
        probs = predict_split(result.model, data, "val")
        auc = compute_metrics(data.labels("val"), probs, names, threshold=0.5, pos=pos)["auc"]
        trials.append({**draw, "val_auc": auc, "best_epoch": result.best_epoch})
        score = -math.inf if auc is None else auc
        if best is None or score > best[0]:
            best = (score, tcfg, result)
    assert best is not None  # trials >= 1 is checked by the caller
    return best[1], best[2], trials
