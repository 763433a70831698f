"""Read a dataset as the config says and preview its patient-level split (no training).

Writes ``<out>/splits.csv`` (path, label, patient_id, view, source, split) and prints images and
patients per split and class. ``cxr-train train`` makes the same split (same seed) after
dropping unreadable files.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML config file (default: built-in defaults)")
    parser.add_argument("--out", required=True, help="folder for splits.csv")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")


def run(args: argparse.Namespace) -> int:
    from cxr_viewer.core.errors import CxrError
    from trainer.config import load_config, parse_override
    from trainer.datasets import class_names_for, read_dataset
    from trainer.splits import (
        check_no_patient_leak,
        split_by_patient,
        split_summary,
        subsample_by_patient,
    )

    try:
        cfg = load_config(args.config, dict(parse_override(s) for s in args.set))
        m = subsample_by_patient(read_dataset(cfg.data), cfg.data.max_images, cfg.seed)
        names = class_names_for(m, cfg.data)
        m["split"] = split_by_patient(
            m, val_fraction=cfg.split.val_fraction, test_fraction=cfg.split.test_fraction,
            seed=cfg.seed,
        )  # fmt: skip
        check_no_patient_leak(m)
    except CxrError as exc:
        print(f"cxr-train split: {exc}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    m[["path", "label", "patient_id", "view", "source", "split"]].to_csv(
        out / "splits.csv", index=False
    )
    print(json.dumps(split_summary(m, names), indent=2))
    print(f"missing files skipped: {m.attrs.get('missing', 0)}; no patient in two splits")
    print(f"wrote {out / 'splits.csv'}")
    return 0
