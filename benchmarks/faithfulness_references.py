"""How much the viewer's faithfulness verdict depends on what "random removal" means.

The viewer judges a map by blurring its top 20 % and comparing with blurring 20 % of pixels at
random (:func:`cxr_viewer.core.evaluate.trust.add_trust`: scattered pixels, 8 draws). A map's
top 20 % is a few blobs, scattered pixels are not, and a model may react to the *shape* of a
removal rather than to where it is (Rong et al. 2022, ROAD). This benchmark recomputes the
verdict (the viewer's own :func:`~cxr_viewer.core.evaluate.trust.faithfulness_label` on the same
log-odds figures) with three random references, on each film's default map (Grad-CAM of the
predicted class, as the viewer decides it):

- ``scattered``: 20 % of pixels at random (the viewer's reference today);
- ``same shape``: the map's own top-20 % mask moved to a random place (a cyclic shift), so only
  *where* differs;
- ``grid``: the top 20 % of uniform noise on a 14 × 14 grid, upsampled (the trainer's check,
  :mod:`trainer.gradcam_check`).

Films: a cxr-train run's split (``--split``; validation by default, so that no test film is
looked at) or a folder. One row per bundle and predicted class::

    CXR_SHARED_DATA=../shared/data python benchmarks/faithfulness_references.py \\
        runs/adult_opacity=resources/adult_bundle runs/adult_noboxes --split val

``RUN[=BUNDLE]``: the bundle defaults to ``RUN/bundle``; the films are those of RUN's
``splits.csv`` (or ``--films FOLDER`` for every run).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

import numpy as np

REFERENCES = ("scattered", "same shape", "grid")
GRID = 14


def _films(run: Path, split: str, folder: str | None) -> list[Path]:
    if folder:
        exts = (".png", ".jpg", ".jpeg", ".dcm")
        return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in exts)
    with open(run / "splits.csv", newline="") as fh:
        return [Path(r["path"]) for r in csv.DictReader(fh) if r["split"] == split]


def _masks(top: np.ndarray, k: int, n: int, rng: np.random.Generator) -> dict[str, list]:
    """``n`` random masks of ``k`` pixels per reference (``top``: the map's own mask)."""
    import cv2

    rows, cols = top.shape
    out: dict[str, list] = {r: [] for r in REFERENCES}
    for _ in range(n):
        scattered = np.zeros(top.size, bool)
        scattered[rng.choice(top.size, k, replace=False)] = True
        out["scattered"].append(scattered.reshape(top.shape))
        out["same shape"].append(np.roll(top, (rng.integers(rows), rng.integers(cols)), (0, 1)))
        noise = cv2.resize(rng.random((GRID, GRID)).astype(np.float32), (cols, rows))
        grid = np.zeros(top.size, bool)
        grid[np.argsort(-noise.ravel(), kind="stable")[:k]] = True
        out["grid"].append(grid.reshape(top.shape))
    return out


def verdicts(bundle: Path, films: list[Path], n_random: int = 8, seed: int = 0) -> list[dict]:
    """Per film: the predicted class and the viewer's verdict under each reference."""
    from cxr_viewer.core.evaluate.trust import (
        TOP_FRACTION,
        baseline_image,
        faithfulness_label,
        margin_figures,
        pixel_order,
    )
    from cxr_viewer.core.explain.base import explain_map
    from cxr_viewer.core.explain.registry import create_explainer
    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.model.inference import load_classifier
    from cxr_viewer.core.model.preprocess import study_to_input
    from cxr_viewer.core.model.scores import class_log_odds, sigmoid

    clf = load_classifier(bundle)
    explainer = create_explainer("gradcam", clf)
    rng = np.random.default_rng(seed)
    rows = []
    for path in films:
        x = study_to_input(load_study(str(path)), clf.spec)
        t = int(clf.make_prediction(clf.predict_inputs(x[None])[0]).predicted_index)
        sal = np.asarray(explain_map(explainer, x, t).values, np.float32)  # at input size
        k = int(round(TOP_FRACTION * sal.size))
        top = np.zeros(sal.size, bool)
        top[pixel_order(sal, seed)[:k]] = True
        top = top.reshape(sal.shape)
        base = baseline_image(x, clf.spec, "blur")
        masks = _masks(top, k, n_random, rng)
        stack = [x, np.where(top[..., None], base, x)]
        for ref in REFERENCES:
            stack += [np.where(m[..., None], base, x) for m in masks[ref]]
        z = class_log_odds(clf, np.stack(stack).astype(np.float32))[:, t].astype(np.float64)
        row = {"film": path.name, "class": clf.class_names[t]}
        for i, ref in enumerate(REFERENCES):
            z_random = z[2 + i * n_random : 2 + (i + 1) * n_random]
            figs = margin_figures(float(z[0]), float(z[1]), z_random)
            p0, p_top = float(sigmoid(z[:1])[0]), float(sigmoid(z[1:2])[0])
            figs.update(p=p0, drop_top=p0 - p_top, drop_fraction=TOP_FRACTION)
            row[ref] = faithfulness_label(figs)
            row[f"{ref} margin"] = figs["margin"]
        rows.append(row)
    return rows


def summary(name: str, rows: list[dict]) -> list[str]:
    """Markdown rows: faithful / inconclusive / not faithful per predicted class and reference."""
    lines = []
    for cls in sorted({r["class"] for r in rows}) + ["all"]:
        group = [r for r in rows if cls in ("all", r["class"])]
        cells = []
        for ref in REFERENCES:
            c = Counter(r[ref] for r in group)
            share = [100 * c[w] / len(group) for w in ("faithful", "inconclusive", "not faithful")]
            margin = float(np.median([r[f"{ref} margin"] for r in group]))
            cells.append(" / ".join(f"{v:.0f}" for v in share) + f" %; {margin:+.2f}")
        label = "all" if cls == "all" else f"predicted {cls}"
        lines.append(f"| {name} | {label} ({len(group)}) | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="RUN[=BUNDLE]: a cxr-train run folder (and bundle)")
    p.add_argument("--split", default="val", help="the run's split whose films are used (val)")
    p.add_argument("--films", help="a folder of films instead of the runs' split")
    p.add_argument("--random", type=int, default=8, help="random removals per reference (8)")
    p.add_argument("--out", help="write the per-film verdicts here (CSV, one per run)")
    args = p.parse_args(argv)
    head = "| model | films | " + " | ".join(REFERENCES) + " |"
    lines = [head, "|---|---|" + "---|" * len(REFERENCES)]
    for spec in args.runs:
        run_text, _, bundle_text = spec.partition("=")
        run = Path(run_text)
        bundle = Path(bundle_text) if bundle_text else run / "bundle"
        films = _films(run, args.split, args.films)
        if not films:
            print(f"{run}: no films in split '{args.split}'", file=sys.stderr)
            return 2
        rows = verdicts(bundle, films, args.random)
        if args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            with open(out / f"{run.name}.csv", "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
        lines += summary(run.name, rows)
    print("Each cell: faithful / inconclusive / not faithful (share of films); median margin")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
