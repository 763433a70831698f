"""Localization in the training report: where do the exported model's maps point on the
*validation* films' radiologist boxes?

When ``[boxes] csv`` is set, the run writes the boxes of its training films and of its
validation films to ``<run>/localization/`` and runs the viewer's own benchmark
(``cxr-viewer localize``, :mod:`cxr_viewer.commands.localize`) on the exported bundle: Grad-CAM
at the bundle's default layer against the validation boxes, with the anatomy prior fitted on the
*training* boxes (``--prior-boxes``). Pointing (strict and ±15 px at 224), energy inside the
boxes and top-k IoU, each with a bootstrap CI over patients and the paired difference to the
anatomy prior, go into the report and the model card.

Test films' boxes are never read here: the figures stay usable for choosing between runs
without touching the held-out split.
"""

from __future__ import annotations

import csv
import shlex
from pathlib import Path
from typing import Any

from .boxes import read_boxes_by_path
from .config import Config, resolve_path
from .data import PreparedData

LOCALIZATION_DIR = "localization"
MEASURES = ("pointing_strict", "pointing_tolerant", "energy_inside", "iou_topk")


def write_split_boxes(cfg: Config, data: PreparedData, split: str, out: Path) -> int:
    """Write the rows of ``boxes.csv`` whose film is in ``split`` to ``out`` (absolute
    filenames); return how many boxes."""
    src = resolve_path(cfg.boxes.csv)
    films = set(data.part(split)["path"].astype(str))
    n = 0
    with (
        open(src, newline="", encoding="utf-8") as fh,
        open(out, "w", newline="", encoding="utf-8") as dst,
    ):
        reader = csv.DictReader(fh)
        writer = csv.DictWriter(dst, fieldnames=list(reader.fieldnames or []))
        writer.writeheader()
        for row in reader:
            path = str((src.parent / row["filename"]).resolve())
            if path in films:
                writer.writerow({**row, "filename": path})
                n += 1
    return n


def localization_report(
    cfg: Config, data: PreparedData, bundle_dir: str | Path, run_dir: str | Path
) -> dict[str, Any] | None:
    """Score the bundle's Grad-CAM on the validation boxes (prior from the training boxes);
    None when the validation split has no boxes."""
    import argparse

    from cxr_viewer.commands import localize as command

    out = Path(run_dir) / LOCALIZATION_DIR
    out.mkdir(parents=True, exist_ok=True)
    train_csv, val_csv = out / "train_boxes.csv", out / "val_boxes.csv"
    n_train = write_split_boxes(cfg, data, "train", train_csv)
    n_val = write_split_boxes(cfg, data, "val", val_csv)
    if n_val == 0 or n_train == 0:
        return None
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    cmap = ",".join(f"{k}={v}" for k, v in cfg.boxes.class_map.items())
    argv = [str(val_csv), "--model", str(bundle_dir), "--out", str(out / "val")]
    argv += ["--prior-boxes", str(train_csv), "--quiet", "--bootstrap", "1000"]
    argv += ["--seed", str(cfg.seed), "--montage", "6"]
    if cmap:
        argv += ["--map", cmap]
    args = parser.parse_args(argv)
    if command.run(args) != 0:
        return None
    _, scored = read_boxes_by_path(cfg, data.class_names)
    return {
        "split": "val",
        "boxes": n_val,
        # the class whose maps are scored: the boxes' finding (a map of another class, e.g.
        # "no opacity", is not about these boxes)
        "classes": [data.class_names[scored]],
        "prior_fitted_on": f"training boxes ({n_train} boxes)",
        "command": "cxr-viewer localize " + " ".join(shlex.quote(a) for a in argv),
        "overall": read_summary(out / "val" / "summary.csv"),
        "report": str(out / "val" / "report.md"),
        "montage": str(out / "val" / "montage.png"),
    }


def read_summary(path: Path) -> dict[str, dict[str, float]]:
    """The 'ALL' rows of a localize ``summary.csv``: method → measure (and CI, difference to
    the anatomy prior) → value."""
    out: dict[str, dict[str, float]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row.get("finding") != "ALL":
                continue
            rec: dict[str, float] = {}
            for key, value in row.items():
                if key in ("finding", "method") or value in ("", None):
                    continue
                try:
                    rec[key] = float(value)
                except ValueError:
                    continue
            out[row["method"]] = rec
    return out


def markdown_section(loc: dict[str, Any]) -> list[str]:
    """The report's localization section."""
    overall = loc["overall"]
    lines = [
        "## Localization on the validation boxes",
        "",
        f"Grad-CAM of the exported bundle (its default layer) against {loc['boxes']} radiologist "
        f"boxes of the validation films; the anatomy prior is fitted on the {loc['prior_fitted_on']}"
        " and never sees the image. Test boxes are not used. Mean [95 % bootstrap CI over "
        "patients]; Δ: paired difference to the anatomy prior (▲/▼: CI excludes 0).",
        "",
        "| method | pointing (strict) | pointing (±15 px@224) | energy inside | IoU top-k |",
        "|---|---|---|---|---|",
    ]
    for method, rec in overall.items():
        cells = []
        for m in MEASURES:
            v, lo, hi = rec.get(m), rec.get(f"{m}_lo"), rec.get(f"{m}_hi")
            cell = "–" if v is None else f"{v:.2f} [{lo:.2f}, {hi:.2f}]"
            d = rec.get(f"{m}_vs_anatomy_prior")
            if d is not None:
                dlo, dhi = rec[f"{m}_vs_anatomy_prior_lo"], rec[f"{m}_vs_anatomy_prior_hi"]
                mark = " ▲" if dlo > 0 else (" ▼" if dhi < 0 else "")
                cell += f"; Δ {d:+.2f} [{dlo:+.2f}, {dhi:+.2f}]{mark}"
            cells.append(cell)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", f"Command: `{loc['command']}`", ""]
    return lines


def card_entry(loc: dict[str, Any]) -> dict[str, Any]:
    """The model card's localization figures (Grad-CAM and the anatomy prior)."""
    overall = loc["overall"]
    entry: dict[str, Any] = {
        "split": loc["split"],
        "boxes": loc["boxes"],
        "prior_fitted_on": loc["prior_fitted_on"],
    }
    if loc.get("classes"):
        entry["classes"] = list(loc["classes"])
    for method in ("gradcam", "anatomy_prior", "uniform_random"):
        rec = overall.get(method)
        if rec:
            entry[method] = {m: rec.get(m) for m in MEASURES}
    return entry
