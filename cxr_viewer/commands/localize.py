"""Where does the map point? Score explanations against radiologist boxes.

``cxr-viewer localize BOXES_CSV --model BUNDLE --out DIR`` explains, for every (image, finding)
of the box CSV, the model class that finding maps to (``--map "Pneumonia=PNEUMONIA"``; findings
named like a class match it without a map; other findings are left out) with each method of
``--explain``, and scores every map against the finding's boxes: pointing game (strict and with
the 15 px at 224 tolerance, scaled), share of the positive map mass inside the boxes, and IoU of
the map's top-k % area (k chosen per method on this data, or fixed with ``--topk``). Three
baselines that never look at the image are scored in the same run: a centre-prior Gaussian, a
uniform random map and the anatomy prior (mean box mask of the finding over the other patients).

Writes ``DIR/rows.csv`` (one row per image, finding and method), ``DIR/summary.csv`` (per
finding and overall: mean, bootstrap 95 % CI over patients, and the paired difference against
the anatomy prior), ``DIR/report.md`` and ``DIR/montage.png`` (maps with the boxes drawn).
Exit status 0 when at least one image was scored, 2 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxr_viewer.core.errors import CxrError
from cxr_viewer.core.evaluate import localize as loc
from cxr_viewer.core.io.resize import resize_map

ROW_COLUMNS = [
    "filename",
    "patient_id",
    "finding",
    "explained_class",
    "p_class",
    "n_boxes",
    "box_area_percent",
    "method",
    "status",
    "error",
    "pointing_strict",
    "pointing_tolerant",
    "energy_inside",
    "iou_topk",
    "topk_percent",
    "peak_x",
    "peak_y",
    "seconds",
]
MONTAGE_SIDE = 256


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("boxes", help="box CSV: filename, finding, x, y, w, h [, image_width, ...]")
    parser.add_argument("--model", required=True, help="model bundle folder or .zip")
    parser.add_argument("--out", required=True, help="output folder (created if needed)")
    parser.add_argument(
        "--images",
        default=None,
        help="folder the CSV's filenames are relative to (default: its own)",
    )
    from cxr_viewer.core.explain.registry import ALIASES, EXPLAINERS

    parser.add_argument(
        "--explain",
        default="gradcam",
        help=f"comma-separated methods: {', '.join([*EXPLAINERS, *ALIASES])} (default: gradcam)",
    )
    parser.add_argument(
        "--map",
        dest="class_map",
        default=None,
        help='finding → model class, e.g. "Pneumonia=PNEUMONIA,Infiltrate=PNEUMONIA" '
        "(unmapped findings are matched to classes by name, or left out)",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="score only N (image, finding) pairs, a seeded random choice (for LIME / SHAP)",
    )
    parser.add_argument(
        "--topk",
        type=float,
        default=None,
        help="fix the top-k %% area of the IoU (default: chosen per method on this data from "
        f"{', '.join(f'{k:g}' for k in loc.TOPK_GRID)})",
    )
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--montage", type=int, default=6, help="images in the montage (0: none)")
    from cxr_viewer.commands.batch import add_method_options

    add_method_options(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed for LIME, SHAP, --limit, CIs")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _select_groups(groups: dict, findings: dict[str, int], limit: int | None, seed: int) -> list:
    keys = sorted(k for k in groups if k[1] in findings)
    if limit is not None:
        if limit <= 0:
            raise CxrError("--limit must be a positive number", f"got {limit}.", "")
        rng = random.Random(seed)
        keys = sorted(rng.sample(keys, min(limit, len(keys))))
    return keys


def _round(v: float, nd: int = 4) -> Any:
    return "" if v is None or not np.isfinite(v) else round(float(v), nd)


def _small(values: np.ndarray) -> np.ndarray:
    return resize_map(values, MONTAGE_SIDE, MONTAGE_SIDE)


@dataclass
class _Setup:
    """What the run reads before it explains anything: methods, boxes, model, the pairs."""

    methods: list[str]
    settings: dict[str, dict[str, Any]]
    boxes: list[Any]
    groups: dict[Any, Any]
    clf: Any
    finding_class: dict[str, int]
    keys: list[Any]
    root: Path


def _setup(args: argparse.Namespace) -> _Setup:
    """Check the arguments and read the boxes and the model; raises CxrError."""
    from cxr_viewer.commands.batch_core import method_options, method_settings, parse_methods

    methods = parse_methods(args.explain)
    layers, samples = method_options(args)
    mapping = loc.parse_class_map(args.class_map)
    boxes = loc.read_boxes(args.boxes)
    if not boxes:
        raise loc.AnnotationError(f"No boxes in {args.boxes}", "the CSV has no rows.", "")
    if args.topk is not None and not 0 < args.topk <= 100:
        raise CxrError("--topk must be a percentage in (0, 100]", f"got {args.topk}.", "")
    root = Path(args.images) if args.images else Path(args.boxes).resolve().parent
    if not root.is_dir():
        raise CxrError(f"Image folder {root} not found", "", "Pass it with --images DIR.")
    from cxr_viewer.core.model.inference import load_classifier

    clf = load_classifier(args.model)
    groups = loc.group_boxes(boxes)
    findings = sorted({b.finding for b in boxes})
    finding_class = loc.resolve_classes(findings, clf.class_names, mapping)
    if not finding_class:
        raise CxrError(
            "No finding of the box CSV maps to a class of the model",
            f"findings: {', '.join(findings)}; classes: {', '.join(clf.class_names)}.",
            'Map them with --map "Finding=CLASS,...".',
        )
    keys = _select_groups(groups, finding_class, args.limit, args.seed)
    settings = {m: method_settings(m, args.seed, layers, samples) for m in methods}
    return _Setup(methods, settings, boxes, groups, clf, finding_class, keys, root)


def _make_out_dir(out_dir: Path) -> bool:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(
            f"cxr-viewer localize: cannot create the output folder {out_dir}: {exc.strerror}. "
            "Choose another --out.",
            file=sys.stderr,
        )
        return False
    return True


@dataclass
class _Scores:
    """Rows scored so far, their IoU per top-k (parallel to ``rows``) and the montage items."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    ious: list[dict[float, float]] = field(default_factory=list)
    montage: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def add(self, row: dict[str, Any], ious: dict[float, float] | None = None) -> None:
        self.rows.append(row)
        self.ious.append(ious or {})


def _file_maps(
    setup: _Setup, analysis: Any, targets: list[int], shape: tuple[int, int]
) -> dict[tuple[str, int], tuple[np.ndarray | None, float, str]]:
    """(method, class) → (map at the study's size or None, seconds, error) for one file, each
    computed once by the analysis pipeline (no trust figures: the boxes score the maps)."""
    from cxr_viewer.core.analysis import ExplainRequest, explain

    requests = [
        ExplainRequest(m, setup.settings[m], t, trust=False)
        for t in dict.fromkeys(targets)
        for m in setup.methods
    ]
    explain(analysis, requests, check_applicable=False)
    out: dict[tuple[str, int], tuple[np.ndarray | None, float, str]] = {}
    for r in analysis.results:
        if r.heatmap is not None:
            out[(r.method, r.target)] = (r.heatmap.resized(*shape).values, r.seconds, "")
        elif isinstance(r.error, CxrError):
            out[(r.method, r.target)] = (None, r.seconds, str(r.error))
        elif r.error is not None:
            raise r.error
    return out


def _score_file(
    args: argparse.Namespace,
    setup: _Setup,
    prior: loc.AnatomyPrior,
    ks: tuple[float, ...],
    filename: str,
    file_keys: list[Any],
    montage_keys: set[Any],
    scores: _Scores,
) -> str | None:
    """Score every (image, finding) pair of one file; the error that stopped it, or None."""
    from cxr_viewer.core.analysis import prepare
    from cxr_viewer.core.io import load_study

    all_methods = [*setup.methods, *loc.BASELINES]
    try:
        analysis = prepare(load_study(setup.root / filename), setup.clf)
    except CxrError as exc:
        for key in file_keys:
            for m in all_methods:
                scores.add(_error_row(key, setup.groups[key], m, str(exc)))
        return str(exc)
    study = analysis.study
    assert analysis.prediction is not None
    probs = analysis.prediction.probabilities
    shape = (study.rows, study.columns)
    cache = _file_maps(setup, analysis, [setup.finding_class[k[1]] for k in file_keys], shape)
    for key in file_keys:
        finding = key[1]
        target = setup.finding_class[finding]
        group = setup.groups[key]
        mask = loc.box_mask(group, shape)
        base = {
            "filename": filename,
            "patient_id": group[0].patient_id,
            "finding": finding,
            "explained_class": setup.clf.class_names[target],
            "p_class": _round(float(probs[target])),
            "n_boxes": len(group),
            "box_area_percent": _round(100.0 * mask.mean(), 3),
        }
        maps = {m: cache[(m, target)] for m in setup.methods}
        maps.update(_baselines(args, prior, filename, finding, group, shape))
        for m in all_methods:
            values, secs, err = maps[m]
            row = {**base, "method": m, "status": "ok", "error": ""}
            if values is None:
                row.update(status="error", error=err)
                scores.add(row)
                continue
            s = loc.score_map(values, mask, ks)
            row.update(
                pointing_strict=_round(s.pointing_strict),
                pointing_tolerant=_round(s.pointing_tolerant),
                energy_inside=_round(s.energy_inside),
                peak_x=s.peak_xy[0],
                peak_y=s.peak_xy[1],
                seconds=_round(secs, 3) if m in setup.methods else "",
            )
            scores.add(row, s.iou_by_k)
        if key in montage_keys:
            scores.montage[key] = {
                "image": _small(_display(study)),
                "boxes": group,
                "shape": shape,
                "maps": {m: _small(v) for m, (v, _, _) in maps.items() if v is not None},
            }
    return None


def _baselines(
    args: argparse.Namespace,
    prior: loc.AnatomyPrior,
    filename: str,
    finding: str,
    group: list[Any],
    shape: tuple[int, int],
) -> dict[str, tuple[np.ndarray | None, float, str]]:
    """The maps of the three baselines that never look at the image."""
    anat = prior.map_for(finding, loc.AnatomyPrior.patient_of(group[0]), shape)
    return {
        "centre_prior": (loc.centre_prior(shape), 0.0, ""),
        "uniform_random": (
            loc.uniform_random(shape, loc.seed_for(filename, finding, str(args.seed))),
            0.0,
            "",
        ),
        "anatomy_prior": (
            anat,
            0.0,
            "" if anat is not None else "no other patient has this finding",
        ),
    }


def run(args: argparse.Namespace) -> int:
    def say(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    try:
        setup = _setup(args)
    except CxrError as exc:
        print(f"cxr-viewer localize: {exc}", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    if not _make_out_dir(out_dir):
        return 2
    prior = loc.AnatomyPrior(setup.boxes)
    ks = tuple(sorted({*loc.TOPK_GRID, *([float(args.topk)] if args.topk else [])}))
    all_methods = [*setup.methods, *loc.BASELINES]
    by_file: dict[str, list[tuple[str, str]]] = {}
    for key in setup.keys:
        by_file.setdefault(key[0], []).append(key)
    montage_keys = _montage_keys(setup.keys, args.montage)
    scores = _Scores()
    n_ok = 0
    t_start = time.perf_counter()
    for i, (filename, file_keys) in enumerate(by_file.items(), 1):
        error = _score_file(args, setup, prior, ks, filename, file_keys, montage_keys, scores)
        if error is not None:
            say(f"[{i}/{len(by_file)}] {filename}: {error}")
            continue
        n_ok += 1
        say(f"[{i}/{len(by_file)}] {filename}: {len(file_keys)} finding(s) scored")
    rows = scores.rows
    chosen = _fill_topk(rows, scores.ious, all_methods, args.topk)
    with open(out_dir / "rows.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=ROW_COLUMNS, restval="")
        w.writeheader()
        w.writerows(rows)
    ok_rows = [r for r in rows if r["status"] == "ok"]
    summary = loc.summarize(ok_rows, all_methods, n_boot=args.bootstrap, seed=args.seed)
    for rec in summary:
        rec["topk_percent"] = chosen.get(rec["method"], "")
    _write_summary(out_dir / "summary.csv", summary)
    if scores.montage:
        _write_montage(out_dir / "montage.png", scores.montage, all_methods, setup.clf.class_names)
    _write_report(
        out_dir / "report.md",
        args,
        setup.clf,
        summary,
        chosen,
        all_methods,
        setup.finding_class,
        setup.keys,
        n_ok,
        len(by_file),
        bool(scores.montage),
        time.perf_counter() - t_start,
    )
    say(f"wrote {out_dir / 'report.md'} ({n_ok} of {len(by_file)} images scored)")
    return 0 if n_ok else 2


def _display(study) -> np.ndarray:
    from cxr_viewer.core.io.display import display_image

    return display_image(study)


def _error_row(key, group, method: str, error: str) -> dict[str, Any]:
    return {
        "filename": key[0],
        "patient_id": group[0].patient_id,
        "finding": key[1],
        "n_boxes": len(group),
        "method": method,
        "status": "error",
        "error": error,
    }


def _montage_keys(keys: list, n: int) -> set:
    """Up to ``n`` (image, finding) pairs, taken round-robin over the findings."""
    if n <= 0:
        return set()
    per: dict[str, list] = {}
    for k in keys:
        per.setdefault(k[1], []).append(k)
    picked: list = []
    while len(picked) < n and any(per.values()):
        for f in sorted(per):
            if per[f] and len(picked) < n:
                picked.append(per[f].pop(0))
    return set(picked)


def _fill_topk(rows, ious, methods, fixed: float | None) -> dict[str, float]:
    """Fill iou_topk / topk_percent: with ``fixed`` that k for every row; else k chosen per
    method, cross-fitted (each row's k chosen on the other half of the patients). Returns the
    k per method chosen on all rows (the one to fix with --topk on other data)."""
    chosen: dict[str, float] = {}
    for m in methods:
        idx = [i for i, r in enumerate(rows) if r["method"] == m and ious[i]]
        if not idx:
            continue
        if fixed is not None:
            k_all, ks = float(fixed), [float(fixed)] * len(idx)
        else:
            clusters = [rows[i]["patient_id"] or rows[i]["filename"] for i in idx]
            k_all, ks = loc.crossfit_topk([ious[i] for i in idx], clusters)
        chosen[m] = k_all
        for i, k in zip(idx, ks, strict=True):
            rows[i]["iou_topk"] = _round(ious[i].get(k, float("nan")))
            rows[i]["topk_percent"] = f"{k:g}"
    return chosen


def _write_summary(path: Path, summary: list[dict]) -> None:
    cols: list[str] = []
    for rec in summary:
        for c in rec:
            if c not in cols:
                cols.append(c)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, restval="")
        w.writeheader()
        for rec in summary:
            w.writerow({k: (_round(v) if isinstance(v, float) else v) for k, v in rec.items()})


def _fmt(rec: dict, m: str) -> str:
    v, lo, hi = rec.get(m), rec.get(f"{m}_lo"), rec.get(f"{m}_hi")
    if v is None or not np.isfinite(v):
        return "–"
    return f"{v:.2f} [{lo:.2f}, {hi:.2f}]"


def _fmt_delta(rec: dict, m: str) -> str:
    key = f"{m}_vs_anatomy_prior"
    v = rec.get(key)
    if v is None or not np.isfinite(v):
        return "–"
    lo, hi = rec[f"{key}_lo"], rec[f"{key}_hi"]  # set together with the difference
    mark = " ▲" if lo > 0 else (" ▼" if hi < 0 else "")
    return f"{v:+.2f} [{lo:+.2f}, {hi:+.2f}]{mark}"


MEASURE_TITLES = {
    "pointing_strict": "pointing (strict)",
    "pointing_tolerant": "pointing (±15 px@224)",
    "energy_inside": "energy inside",
    "iou_topk": "IoU top-k",
}


def _write_report(
    path, args, clf, summary, chosen, methods, finding_class, keys, n_ok, n_files, montage, secs
):
    model_name = clf.bundle.name
    mapped = ", ".join(f"{f} → {clf.class_names[c]}" for f, c in sorted(finding_class.items()))
    cmd = "cxr-viewer localize " + " ".join(
        a if " " not in a else f'"{a}"' for a in sys.argv[2:] if sys.argv[1:2] == ["localize"]
    )
    lines = [
        "# Localization benchmark",
        "",
        f"- Model: **{model_name}** (classes {', '.join(clf.class_names)})",
        f"- Boxes: `{args.boxes}`; findings scored: {mapped}",
        f"- Pairs (image, finding): {len(keys)} on {n_files} images, {n_ok} images scored"
        + (f" (a seeded random choice of {args.limit})" if args.limit else ""),
        f"- Methods: {', '.join(methods)}; bootstrap {args.bootstrap} resamples of patients, "
        f"seed {args.seed}; run time {secs:.0f} s",
        "- Top-k % area of the IoU per method: "
        + ", ".join(f"{m} {k:g} %" for m, k in chosen.items())
        + (
            " (fixed with --topk)"
            if args.topk
            else " (chosen on all of this data: fix it with --topk on other data). The IoU "
            "figures below are cross-fitted: each patient's IoU uses the k chosen on the other "
            "half of the patients, so no threshold was tuned on the image it scores."
        ),
    ]
    if cmd.strip() != "cxr-viewer localize":
        lines.append(f"- Command: `{cmd}`")
    lines += [
        "",
        "Mean and bootstrap 95 % CI. Pointing: share of images whose map peak lies in a box "
        "(strict, or within 15 px at 224 px). Energy inside: share of the positive map mass "
        "inside the boxes. IoU top-k: the map's top-k % area against the box mask.",
        "",
    ]
    findings = list(dict.fromkeys(r["finding"] for r in summary))
    for finding in findings:
        recs = [r for r in summary if r["finding"] == finding]
        title = "All findings" if finding == "ALL" else finding
        lines += [
            f"## {title} (n = {recs[0]['n']} image-finding pairs)",
            "",
            "| method | " + " | ".join(MEASURE_TITLES[m] for m in loc.MEASURES) + " |",
            "|---|" + "---|" * len(loc.MEASURES),
        ]
        for r in recs:
            lines.append(
                f"| {r['method']} | " + " | ".join(_fmt(r, m) for m in loc.MEASURES) + " |"
            )
        lines += [
            "",
            "Difference to the anatomy prior (paired, same patients resampled); ▲ / ▼: the CI "
            "excludes 0.",
            "",
            "| method | " + " | ".join(MEASURE_TITLES[m] for m in loc.MEASURES) + " |",
            "|---|" + "---|" * len(loc.MEASURES),
        ]
        for r in recs:
            if r["method"] != "anatomy_prior":
                lines.append(
                    f"| {r['method']} | "
                    + " | ".join(_fmt_delta(r, m) for m in loc.MEASURES)
                    + " |"
                )
        anat = next((r for r in recs if r["method"] == "anatomy_prior"), None)
        if anat is not None and np.isfinite(anat.get("pointing_strict", np.nan)):
            lines += [
                "",
                "No map that ignores the image gets more energy inside the boxes, on average, "
                "than the anatomy prior's strict pointing rate "
                f"(here {_fmt(anat, 'pointing_strict')}): a sharp map parked where the finding "
                "is most often boxed reaches it. Energy above that needs the image.",
            ]
        lines.append("")
    if montage:
        lines += [
            "## Montage",
            "",
            "Each row one image; radiologist boxes in green, the map's peak as a white cross.",
            "",
            "![montage](montage.png)",
            "",
        ]
    lines += [
        "A method tells where the model looks only where it beats the anatomy prior, which "
        "knows where the finding usually is and never sees the image.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def _write_montage(path: Path, montage: dict, methods: list[str], class_names) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    keys = sorted(montage)
    cols = 1 + len(methods)
    fig = Figure(figsize=(1.9 * cols, 2.05 * len(keys)), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(keys), cols, squeeze=False)
    for r, key in enumerate(keys):
        item = montage[key]
        rows_, cols_ = item["shape"]
        sx, sy = MONTAGE_SIDE / cols_, MONTAGE_SIDE / rows_
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.imshow(item["image"], cmap="gray", vmin=0, vmax=1)
            if c > 0:
                m = methods[c - 1]
                v = item["maps"].get(m)
                if v is not None:
                    pos = np.clip(v, 0, None)
                    vmax = float(np.percentile(pos, 99.5)) or 1.0
                    ax.imshow(pos, cmap="jet", alpha=0.45, vmin=0, vmax=vmax)
                    py, px = np.unravel_index(int(np.argmax(v)), v.shape)
                    ax.plot([px], [py], marker="+", color="white", markersize=9, mew=2)
                if r == 0:
                    ax.set_title(m.replace("_", " "), fontsize=8)
            elif r == 0:
                ax.set_title("image + boxes", fontsize=8)
            for b in item["boxes"]:
                x0, y0, x1, y1 = b.scaled(rows_, cols_)
                ax.add_patch(
                    Rectangle(
                        (x0 * sx, y0 * sy),
                        (x1 - x0) * sx,
                        (y1 - y0) * sy,
                        fill=False,
                        edgecolor="lime",
                        linewidth=1.2,
                    )
                )
            ax.set_xlim(0, MONTAGE_SIDE)
            ax.set_ylim(MONTAGE_SIDE, 0)
            if c == 0:
                ax.set_ylabel(f"{Path(key[0]).name}\n{key[1]}", fontsize=7)
    fig.tight_layout(pad=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    from PIL import Image

    # a 256-colour palette: a third of the size, fine for a figure in a report
    with Image.open(buf) as im:
        im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
