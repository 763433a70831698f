"""Evaluate an exported bundle on a dataset (e.g. an external test set) with its own threshold.

The dataset is described by a config's ``[data]`` section (or --set data.*); every readable image
is used, or only one split of a run's ``splits.csv`` with --splits/--split. Writes
``metrics.json`` and ROC / precision-recall / confusion-matrix figures to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, help="model bundle folder or .zip")
    parser.add_argument("--config", help="TOML config whose [data] section names the dataset")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--splits", help="a run's splits.csv, to evaluate only one split")
    parser.add_argument("--split", default="test", help="which split of --splits (default test)")
    parser.add_argument("--out", required=True, help="folder for metrics.json and figures")
    parser.add_argument("--quiet", action="store_true")


def evaluate_bundle(bundle_path, cfg, out_dir, *, splits=None, split="test", progress=True):
    """Metrics of a bundle on the configured data; returns the metrics dict."""
    import numpy as np
    import pandas as pd

    from cxr_viewer.core.errors import TrainingError
    from cxr_viewer.core.model.bundle import open_bundle
    from trainer.cache import build_cache
    from trainer.datasets import read_dataset
    from trainer.evaluate import compute_metrics
    from trainer.figures import confusion_figure, pr_figure, roc_figure
    from trainer.pipeline import make_dataset

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bundle = open_bundle(bundle_path)
    names = bundle.class_names
    m = read_dataset(cfg.data)
    if splits:
        table = pd.read_csv(splits, dtype=str, keep_default_na=False)
        keep = set(table.loc[table["split"] == split, "path"])
        m = m[m["path"].isin(keep)].reset_index(drop=True)
    unknown = sorted(set(m["label"]) - set(names))
    if unknown or m.empty:
        raise TrainingError(
            "The data does not match the bundle's classes",
            f"labels {unknown} are not among {names}" if unknown else "no images selected",
            "Set data.class_names / the dataset so that labels use the bundle's class names.",
        )
    cache = build_cache(m["path"].tolist(), bundle.input_spec, out / "cache", progress=progress)
    m = m.assign(row=np.arange(len(m)))[cache.ok]
    y = m["label"].map({c: i for i, c in enumerate(names)}).to_numpy(np.int64)
    ds = make_dataset(
        cache.images, m["row"].to_numpy(), y, len(names), bundle.input_spec, batch_size=16
    )
    probs = np.asarray(bundle.load_model().predict(ds, verbose=0), dtype=np.float64)
    pos = names.index(bundle.positive_class) if bundle.positive_class in names else None
    metrics = compute_metrics(y, probs, names, threshold=bundle.threshold, pos=pos)
    metrics["unreadable_images"] = len(cache.failed)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    roc_figure(y, probs, names, pos, out / "roc.png", "ROC")
    pr_figure(y, probs, names, pos, out / "pr.png", "Precision-recall")
    confusion_figure(metrics["confusion_matrix"], names, out / "confusion.png", "Confusion matrix")
    return metrics


def run(args: argparse.Namespace) -> int:
    from cxr_viewer.core.errors import CxrError
    from trainer.config import load_config, parse_override

    try:
        cfg = load_config(args.config, dict(parse_override(s) for s in args.set))
        metrics = evaluate_bundle(
            args.bundle, cfg, args.out, splits=args.splits, split=args.split,
            progress=not args.quiet,
        )  # fmt: skip
    except CxrError as exc:
        print(f"cxr-train evaluate: {exc}", file=sys.stderr)
        return 1
    auc = metrics["auc"]
    print(
        f"{metrics['n']} images: accuracy {metrics['accuracy']:.3f}, "
        f"AUC {'n/a' if auc is None else f'{auc:.3f}'} → {Path(args.out) / 'metrics.json'}"
    )
    return 0
