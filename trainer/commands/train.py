"""Train a classifier, evaluate it (threshold on validation, figures on test) and export a bundle.

Reads a TOML config (see trainer/configs/default.toml; every key has a default), writes the
resolved config, splits, checkpoints, TensorBoard logs, a Markdown report with figures and the
model bundle. Running the same command again resumes an interrupted run.
"""

from __future__ import annotations

import argparse
import sys
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML config file (default: built-in defaults)")
    parser.add_argument("--out", help="run folder (default: the config's run_dir)")
    parser.add_argument(
        "--bundle", help="bundle folder (default: export.bundle_dir or <out>/bundle)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.epochs=3 (repeatable)",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="discard checkpoints of an earlier run in --out"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from cxr_viewer.core.errors import CxrError
    from trainer.config import load_config, parse_override

    t0 = time.perf_counter()
    try:
        overrides = dict(parse_override(s) for s in args.set)
        if args.quiet:
            overrides.setdefault("train.verbose", 0)
        cfg = load_config(args.config, overrides)
        run_dir = args.out or cfg.run_dir
        if not run_dir:
            print("cxr-train train: give --out or set run_dir in the config", file=sys.stderr)
            return 2
        from trainer.run import run_training

        outcome = run_training(
            cfg, run_dir, bundle_dir=args.bundle, fresh=args.fresh, progress=not args.quiet
        )
    except CxrError as exc:
        print(f"cxr-train train: {exc}", file=sys.stderr)
        return 1
    if outcome is None:  # a non-chief worker of a multi-worker run
        print(
            f"done in {time.perf_counter() - t0:.0f} s: worker finished; the chief writes "
            f"the report and the bundle in {run_dir}"
        )
        return 0
    ev = outcome.evaluation

    def f(v):
        return "n/a" if v is None else f"{v:.3f}"

    print(
        f"done in {time.perf_counter() - t0:.0f} s: validation AUC {f(ev['val']['auc'])}, "
        f"test AUC {f(ev['test']['auc'])}, test accuracy {f(ev['test']['accuracy'])}"
        + (
            f" (threshold {ev['threshold']:.3f} on p({ev['positive_class']}))"
            if ev["threshold"] is not None
            else ""
        )
    )
    print(f"report: {outcome.report}")
    print(f"bundle: {outcome.bundle.root}")
    return 0
