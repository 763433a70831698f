"""Trust figures on held-out paediatric films: is a faithfulness verdict measured, which maps
are faithful, and do the maps agree?

Chooses ``--n`` films that the demo bundle never saw in training: the bundle's own split
(``metadata.json``: ``config.seed``, ``config.split``) is rebuilt from the data set's
``labels.csv`` with the trainer's ``split_by_patient`` — the patient counts are checked against
the bundle's ``data_splits`` — and ``--n`` patients of the *test* split are drawn (seeded), one
film each. Links to those films go into ``OUT/films/``, then ``cxr-viewer batch`` runs on them
with every method at its defaults (the command is printed), and the summary is computed from
``OUT/batch/predictions.csv``:

* the share of films whose every map has a measured faithfulness verdict (anything but
  "not measurable"),
* per method: the share judged faithful / inconclusive / not faithful, the median log-odds
  margin (top-20 % removal vs random) with a bootstrap 95 % interval of the median, the median
  log-odds deletion AUC, and the share of films where it is the most faithful map,
* per pair of methods: median Spearman ρ, median top-10 % overlap, share of films where the
  two agree; the most common agreement lines,
* how many films are saturated (p > 0.99 or p < 0.01) — where the old test on p was silent.

Usage (from the repository root; ``CXR_SHARED_DATA`` or ``../shared/data``)::

    python benchmarks/trust_heldout.py --n 300 --out /tmp/trust-heldout
    python benchmarks/trust_heldout.py --out /tmp/trust-heldout --summary-only   # while it runs

``--resume`` continues a stopped run (``cxr-viewer batch --resume``); ``--summary-only``
summarises the rows written so far (``predictions.csv``, or the ``.partial`` journal of a run
still going). The summary is printed as Markdown and written to ``OUT/summary.json``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
METHODS = "gradcam,lime,shap,occlusion"
LABELS = {"gradcam": "Grad-CAM", "lime": "LIME", "shap": "SHAP", "occlusion": "Occlusion"}


def held_out_films(data_root: Path, bundle: Path, n: int, seed: int) -> list[Path]:
    """``n`` films of the bundle's test split, one per patient, patients drawn with ``seed``."""
    sys.path.insert(0, str(ROOT))
    from trainer.datasets import read_pediatric_pneumonia
    from trainer.splits import split_by_patient

    meta = json.loads((bundle / "metadata.json").read_text(encoding="utf-8"))
    cfg = meta["config"]
    manifest = read_pediatric_pneumonia(data_root)
    manifest["split"] = split_by_patient(
        manifest,
        val_fraction=float(cfg["split"]["val_fraction"]),
        test_fraction=float(cfg["split"]["test_fraction"]),
        seed=int(cfg["seed"]),
    )
    for split, recorded in meta["data_splits"].items():
        part = manifest[manifest["split"] == split]
        got = (len(part), part["patient_id"].nunique())
        if got != (recorded["images"], recorded["patients"]):
            raise SystemExit(
                f"the rebuilt {split} split has {got[0]} images of {got[1]} patients, the bundle "
                f"records {recorded['images']} of {recorded['patients']}: not the demo's split"
            )
    test = manifest[manifest["split"] == "test"].sort_values("path")
    patients = sorted(test["patient_id"].unique())
    if n > len(patients):
        raise SystemExit(f"--n {n}: the test split has only {len(patients)} patients")
    chosen = np.random.default_rng(seed).choice(patients, size=n, replace=False)
    first = test.groupby("patient_id")["path"].first()
    return [Path(first[p]) for p in sorted(chosen)]


def link_films(films: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for f in films:
        link = folder / f.name
        if not link.exists():
            link.symlink_to(f.resolve())


def read_rows(batch_dir: Path) -> list[dict[str, str]]:
    """The rows so far: ``predictions.csv``, else the journal of a run still going."""
    for name in ("predictions.csv", "predictions.csv.partial"):
        path = batch_dir / name
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            return [r for r in csv.DictReader(io.StringIO(text)) if r.get("status")]
    return []


def _f(v: str | None) -> float:
    try:
        return float(v) if v not in (None, "") else float("nan")
    except ValueError:
        return float("nan")


def median_ci(values: np.ndarray, seed: int = 0, n_boot: int = 2000) -> tuple[float, float, float]:
    """Median and the bootstrap 95 % percentile interval of the median."""
    v = values[np.isfinite(values)]
    if not v.size:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    boots = np.median(rng.choice(v, size=(n_boot, v.size), replace=True), axis=1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(np.median(v)), float(lo), float(hi)


PAIR = re.compile(r"(\w+)~(\w+) rho (-?[\d.]+|nan) top10 ([\d.]+|nan)")


def summarise(rows: list[dict[str, str]], methods: list[str]) -> dict:
    rows = [r for r in rows if r["status"] in ("ok", "partial")]
    out: dict = {"films": len(rows), "methods": {}, "pairs": {}}
    if not rows:
        return out
    p_pos = np.array([_f(r.get("p_PNEUMONIA")) for r in rows])
    out["saturated_films"] = int(np.sum((p_pos > 0.99) | (p_pos < 0.01)))
    measured_all = 0
    for r in rows:
        labels = [r.get(f"{m}_faithfulness", "") for m in methods]
        measured_all += all(lab not in ("", "not measurable") for lab in labels)
    out["share_all_maps_measured"] = measured_all / len(rows)
    best = Counter(r.get("most_faithful", "") for r in rows)
    for m in methods:
        labels = Counter(r.get(f"{m}_faithfulness", "") for r in rows)
        margin = np.array([_f(r.get(f"{m}_margin")) for r in rows])
        dele = np.array([_f(r.get(f"{m}_logit_deletion_auc")) for r in rows])
        med, lo, hi = median_ci(margin)
        entry = {
            "films": sum(labels.values()),
            "measured": 1 - (labels["not measurable"] + labels[""]) / len(rows),
            "faithful": labels["faithful"] / len(rows),
            "inconclusive": labels["inconclusive"] / len(rows),
            "not_faithful": labels["not faithful"] / len(rows),
            "median_margin": med,
            "median_margin_ci": [lo, hi],
            "median_logit_deletion_auc": float(np.nanmedian(dele))
            if np.isfinite(dele).any()
            else None,
            "median_seconds": float(np.nanmedian([_f(r.get(f"seconds_{m}")) for r in rows])),
            "most_faithful_share": best[m] / len(rows),
        }
        if m == "lime":
            conv = [r.get("lime_verdict", "") for r in rows]
            entry["converged"] = sum("LIME converged" in v for v in conv) / len(rows)
            entry["median_samples"] = float(np.nanmedian([_f(r.get("lime_samples")) for r in rows]))
        out["methods"][m] = entry
    out["most_faithful_none"] = best["none"] / len(rows)
    pairs: dict[str, dict[str, list[float]]] = {}
    agree = Counter()
    from cxr_viewer.core.evaluate.agreement import AGREE_OVERLAP, AGREE_RHO

    for r in rows:
        for a, b, rho, top in PAIR.findall(r.get("agreement_pairs", "")):
            d = pairs.setdefault(f"{a}~{b}", {"rho": [], "top10": []})
            d["rho"].append(float(rho))
            d["top10"].append(float(top))
        agree[r.get("agreement", "")] += 1
    for key, d in pairs.items():
        rho, top = np.array(d["rho"]), np.array(d["top10"])
        out["pairs"][key] = {
            "median_rho": float(np.nanmedian(rho)),
            "median_top10_overlap": float(np.nanmedian(top)),
            "share_agree": float(np.mean((rho >= AGREE_RHO) & (top >= AGREE_OVERLAP))),
        }
    out["agreement_lines"] = agree.most_common(6)
    return out


def markdown(s: dict, methods: list[str]) -> str:
    if not s.get("films"):
        return "no films processed yet"
    lines = [
        f"Films: {s['films']} (saturated, p > 0.99 or p < 0.01: {s['saturated_films']}); "
        f"every map with a measured faithfulness verdict: {s['share_all_maps_measured'] * 100:.1f} %",
        "",
        "| Method | measured | faithful | inconclusive | not faithful | median margin (log-odds, 95 % CI) "
        "| median log-odds deletion AUC | most faithful on the film | median s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        e = s["methods"][m]
        lo, hi = e["median_margin_ci"]
        dele = e["median_logit_deletion_auc"]
        lines.append(
            f"| {LABELS.get(m, m)} | {e['measured'] * 100:.1f} % | {e['faithful'] * 100:.1f} % | "
            f"{e['inconclusive'] * 100:.1f} % | {e['not_faithful'] * 100:.1f} % | "
            f"{e['median_margin']:+.2f} ({lo:+.2f} to {hi:+.2f}) | "
            f"{'n/a' if dele is None else f'{dele:.2f}'} | {e['most_faithful_share'] * 100:.1f} % | "
            f"{e['median_seconds']:.2f} |"
        )
    if "lime" in s["methods"]:
        e = s["methods"]["lime"]
        lines += [
            "",
            f"LIME converged on {e['converged'] * 100:.1f} % of films (median "
            f"{e['median_samples']:.0f} samples).",
        ]
    lines += [f"No map judged faithful: {s['most_faithful_none'] * 100:.1f} % of films.", ""]
    lines += ["| Pair | median Spearman ρ | median top-10 % overlap | agree |", "|---|---|---|---|"]
    for key, e in s["pairs"].items():
        a, b = key.split("~")
        lines.append(
            f"| {LABELS.get(a, a)} ~ {LABELS.get(b, b)} | {e['median_rho']:.2f} | "
            f"{e['median_top10_overlap']:.2f} | {e['share_agree'] * 100:.1f} % |"
        )
    lines += ["", "Most common agreement lines:"]
    lines += [f"- {n} × {text or '(none)'}" for text, n in s["agreement_lines"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="output folder")
    ap.add_argument("--n", type=int, default=300, help="held-out films (one per patient)")
    ap.add_argument("--model", type=Path, default=ROOT / "resources" / "demo_bundle")
    ap.add_argument("--data", type=Path, default=None, help="pediatric-pneumonia folder")
    ap.add_argument("--explain", default=METHODS, help=f"methods (default {METHODS})")
    ap.add_argument("--seed", type=int, default=0, help="seed of the patient draw")
    ap.add_argument("--resume", action="store_true", help="continue a stopped batch")
    ap.add_argument("--summary-only", action="store_true", help="summarise the rows so far")
    args = ap.parse_args(argv)
    methods = [m.strip() for m in args.explain.split(",") if m.strip()]
    batch_dir = args.out / "batch"
    if not args.summary_only:
        data = args.data
        if data is None:
            sys.path.insert(0, str(ROOT))
            from cxr_viewer.core.paths import shared_data_dir

            shared = shared_data_dir()
            if shared is None:
                raise SystemExit("no shared data: set CXR_SHARED_DATA or pass --data")
            data = Path(shared) / "pediatric-pneumonia"
        films = held_out_films(data, args.model, args.n, args.seed)
        link_films(films, args.out / "films")
        cmd = [
            sys.executable, "-m", "cxr_viewer", "batch", str(args.out / "films"),
            "--model", str(args.model), "--out", str(batch_dir), "--explain", args.explain,
            "--resume" if args.resume else "--overwrite",
        ]  # fmt: skip
        print("running:", " ".join(cmd), file=sys.stderr, flush=True)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        code = subprocess.call(cmd, env=env)
        if code not in (0,):
            print(f"cxr-viewer batch exited {code}", file=sys.stderr)
    summary = summarise(read_rows(batch_dir), methods)
    (args.out).mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print(markdown(summary, methods))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
