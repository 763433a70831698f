"""The adult model's held-out table: AUC, localization and faithfulness on the *test* films.

For each finished ``cxr-train`` run folder given (e.g. the box-supervised run and its ablation
without boxes), the test films' boxes are written from the run's ``splits.csv`` and scored with
``cxr-viewer localize`` on the run's bundle (Grad-CAM at the bundle's default layer), the anatomy
prior fitted on the run's *training* boxes (``--prior-boxes``). The table adds the run's test AUC
and the deletion test of its report (Grad-CAM top 20 % vs a random map of the layer's grid).
Run it once per chosen model, after tuning on validation: it reads the test boxes.

    CXR_SHARED_DATA=../shared/data python benchmarks/adult_table.py \\
        runs/adult_opacity=resources/adult_bundle runs/adult_noboxes --out runs/adult_table

``RUN[=BUNDLE]``: the bundle defaults to ``RUN/bundle``. Writes ``OUT/<run name>/`` (the
localize outputs) and ``OUT/table.md``; prints the tables: localization against the prior, AUC
by view, the deletion test by predicted class and by what the removed pixels become (blur,
the image mean, black; log-odds: a confident prediction's p barely moves whatever is removed),
and the viewer's own faithfulness verdict on each test film's default map (``cxr-viewer batch``).
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
from pathlib import Path


def _test_boxes(run: Path, boxes_csv: Path, out: Path) -> int:
    splits = {r["path"]: r["split"] for r in csv.DictReader(open(run / "splits.csv"))}
    n = 0
    with open(boxes_csv, newline="") as fh, open(out, "w", newline="") as dst:
        reader = csv.DictReader(fh)
        w = csv.DictWriter(dst, fieldnames=list(reader.fieldnames or []))
        w.writeheader()
        for row in reader:
            path = str((boxes_csv.parent / row["filename"]).resolve())
            if splits.get(path) == "test":
                w.writerow({**row, "filename": path})
                n += 1
    return n


def _test_inputs(run: Path, bundle: Path):
    """The bundle's classifier, the run's test rows (``splits.csv``) and their model inputs."""
    import numpy as np

    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.model.inference import load_classifier
    from cxr_viewer.core.model.preprocess import study_to_input

    clf = load_classifier(bundle)
    rows = [r for r in csv.DictReader(open(run / "splits.csv")) if r["split"] == "test"]
    return clf, rows, np.stack([study_to_input(load_study(r["path"]), clf.spec) for r in rows])


def _view_aucs(clf, rows: list[dict], x) -> dict[str, float]:
    """Test AUC overall, within PA films, within AP films, and of the view alone (AP = 1): is
    the model more than a view detector? (245 of the 302 positives are AP films.)"""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    pos = clf.class_names.index("lung_opacity")
    p = clf.predict_inputs(x)[:, pos]
    y = np.array([r["label"] == "lung_opacity" for r in rows])
    view = np.array([r["view"] for r in rows])
    out = {"all": roc_auc_score(y, p), "view_alone": roc_auc_score(y, view == "AP")}
    for v in ("PA", "AP"):
        sel = view == v
        out[v] = roc_auc_score(y[sel], p[sel])
        out[f"n_{v}"] = int(sel.sum())
        out[f"pos_{v}"] = int(y[sel].sum())
    return out


def _deletion_by_class(clf, x) -> list[tuple[str, dict]]:
    """The report's deletion test (``trainer.gradcam_check.measure_gradcam``: Grad-CAM's top
    20 % removed vs a random map of the layer's grid, the predicted class explained; the removed
    pixels blurred, set to the image mean and to black) on *all* test films, and separately
    on the films predicted Lung Opacity (their maps are the ones the localization scores) and
    those predicted no opacity."""
    import numpy as np

    from trainer.gradcam_check import measure_gradcam

    pos = clf.class_names.index("lung_opacity")
    pred = np.array([clf.make_prediction(q).predicted_index for q in clf.predict_inputs(x)])
    groups = (
        ("all test films", np.ones(len(x), bool)),
        ("predicted Lung Opacity", pred == pos),
        ("predicted no opacity", pred != pos),
    )
    return [(name, measure_gradcam(clf, x[sel], seed=0)) for name, sel in groups]


def _viewer_verdicts(run: Path, bundle: Path, rows: list[dict], dest: Path) -> list[tuple]:
    """The viewer's own faithfulness verdict on every test film's default map: ``cxr-viewer
    batch --explain gradcam`` (the predicted class; the top 20 % blurred against 8 removals of
    as many scattered random pixels, with a 95 % interval; ``trust.verdicts``) on a folder of
    links to the test films. Returns (films, n, faithful, inconclusive, not faithful, median
    margin) per group of films."""
    import numpy as np
    import pandas as pd

    from cxr_viewer.commands import batch

    films = dest / "test_films"
    films.mkdir(parents=True, exist_ok=True)
    for r in rows:
        link = films / Path(r["path"]).name
        if not link.is_symlink():
            link.symlink_to(Path(r["path"]).resolve())
    argv = [str(films), "--model", str(bundle), "--out", str(dest / "batch")]
    argv += ["--explain", "gradcam", "--quiet", "--overwrite"]
    parser = argparse.ArgumentParser()
    batch.add_arguments(parser)
    print(f"{run.name}: cxr-viewer batch {shlex.join(argv)}", file=sys.stderr)
    if batch.run(parser.parse_args(argv)) != 0:
        raise SystemExit(f"{run.name}: batch failed")
    d = pd.read_csv(dest / "batch" / "predictions.csv")
    pred_pos = (d["predicted_class"] == "lung_opacity").to_numpy()
    out = []
    for name, sel in (
        ("all test films", np.ones(len(d), bool)),
        ("predicted Lung Opacity", pred_pos),
        ("predicted no opacity", ~pred_pos),
    ):
        g = d[sel]
        words = g["gradcam_faithfulness"].fillna("no signal")
        out.append(
            (name, len(g), *(float((words == w).mean()) for w in ("faithful", "inconclusive",
             "not faithful")), float(g["gradcam_margin"].median()))
        )  # fmt: skip
    return out


def _run_and_bundle(spec: str) -> tuple[Path, Path]:
    """``RUN[=BUNDLE]`` → (run folder, bundle folder; default ``RUN/bundle``)."""
    run_s, _, bundle_s = spec.partition("=")
    run = Path(run_s)
    return run, Path(bundle_s) if bundle_s else run / "bundle"


def _cell(rec: dict, m: str) -> str:
    return f"{rec[m]:.2f} [{rec[m + '_lo']:.2f}, {rec[m + '_hi']:.2f}]"


def _delta(rec: dict, m: str) -> str:
    k = f"{m}_vs_anatomy_prior"
    return f"{rec[k]:+.2f} [{rec[k + '_lo']:+.2f}, {rec[k + '_hi']:+.2f}]"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="RUN[=BUNDLE]")
    p.add_argument("--out", required=True)
    p.add_argument("--boxes", default=None, help="box CSV (default: the runs' [boxes] csv)")
    p.add_argument("--bootstrap", type=int, default=2000)
    args = p.parse_args(argv)

    import tomllib

    from cxr_viewer.commands import localize
    from trainer.config import resolve_path
    from trainer.localization import read_summary

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "| run | test AUC | Grad-CAM energy inside | prior energy | Δ energy | Grad-CAM pointing "
        "±15 px@224 | prior pointing | Δ pointing | deletion: median drop Grad-CAM / random |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    runs = [_run_and_bundle(spec) for spec in args.runs]
    for run, bundle in runs:
        cfg = tomllib.loads((run / "config.resolved.toml").read_text())
        boxes_csv = Path(args.boxes) if args.boxes else resolve_path(cfg["boxes"]["csv"])
        dest = out / run.name
        dest.mkdir(parents=True, exist_ok=True)
        test_csv = dest / "test_boxes.csv"
        n = _test_boxes(run, boxes_csv, test_csv)
        prior = run / "localization" / "train_boxes.csv"
        cmap = ",".join(f"{k}={v}" for k, v in cfg["boxes"]["class_map"].items())
        largv = [str(test_csv), "--model", str(bundle), "--out", str(dest / "test")]
        largv += ["--prior-boxes", str(prior), "--quiet", "--bootstrap", str(args.bootstrap)]
        largv += ["--map", cmap, "--montage", "8"]
        parser = argparse.ArgumentParser()
        localize.add_arguments(parser)
        print(
            f"{run.name}: {n} test boxes; cxr-viewer localize {shlex.join(largv)}", file=sys.stderr
        )
        if localize.run(parser.parse_args(largv)) != 0:
            print(f"{run.name}: localize failed", file=sys.stderr)
            return 2
        summ = read_summary(dest / "test" / "summary.csv")
        g, a = summ["gradcam"], summ["anatomy_prior"]
        metrics = json.loads((run / "metrics.json").read_text())["evaluation"]
        gc = metrics.get("gradcam_check") or {}
        deletion = (
            f"{gc['median_drop_gradcam']:.3f} / {gc['median_drop_random']:.3f}" if gc else "–"
        )
        lines.append(
            f"| {run.name} | {metrics['test']['auc']:.3f} | {_cell(g, 'energy_inside')} | "
            f"{_cell(a, 'energy_inside')} | {_delta(g, 'energy_inside')} | "
            f"{_cell(g, 'pointing_tolerant')} | {_cell(a, 'pointing_tolerant')} | "
            f"{_delta(g, 'pointing_tolerant')} | {deletion} |"
        )
    lines += [
        "",
        "| run | test AUC (bundle) | within PA films | within AP films | view alone (AP) |",
        "|---|---|---|---|---|",
    ]
    inputs = {run: _test_inputs(run, bundle) for run, bundle in runs}
    for run, _ in runs:
        v = _view_aucs(*inputs[run])
        lines.append(
            f"| {run.name} | {v['all']:.3f} | {v['PA']:.3f} ({v['n_PA']} films, {v['pos_PA']} "
            f"positive) | {v['AP']:.3f} ({v['n_AP']} films, {v['pos_AP']} positive) | "
            f"{v['view_alone']:.3f} |"
        )
    lines += [
        "",
        "| run | films (explained class: the predicted one) | n | removed pixels become | "
        "median drop of log-odds, Grad-CAM / random | median of (Grad-CAM − random) per film | "
        "Grad-CAM beats random |",
        "|---|---|---|---|---|---|---|",
    ]
    for run, _ in runs:
        clf, _rows, x = inputs[run]
        for name, d in _deletion_by_class(clf, x):
            for fill, f in d["by_fill"].items():
                lines.append(
                    f"| {run.name} | {name} | {d['images']} | {fill} | "
                    f"{f['median_log_odds_drop_gradcam']:.3f} / "
                    f"{f['median_log_odds_drop_random']:.3f} | "
                    f"{f['median_log_odds_margin']:+.3f} | "
                    f"{f['share_gradcam_beats_random']:.0%} |"
                )
    lines += [
        "",
        "| run | films (the viewer's default map: the predicted class) | n | faithful | "
        "inconclusive | not faithful | median margin (log-odds) |",
        "|---|---|---|---|---|---|---|",
    ]
    for run, bundle in runs:
        for name, n, good, unsure, bad, margin in _viewer_verdicts(
            run, bundle, inputs[run][1], out / run.name
        ):
            lines.append(
                f"| {run.name} | {name} | {n} | {good:.0%} | {unsure:.0%} | {bad:.0%} | "
                f"{margin:+.3f} |"
            )
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
