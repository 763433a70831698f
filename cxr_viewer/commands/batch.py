"""Predict and explain many images headless (covid-cxr's predict.py, grown up).

``cxr-viewer batch PATH --model BUNDLE --explain gradcam,lime,shap --out DIR`` writes
``DIR/predictions.csv`` — one row per input file: file, status, error message, probability per
class, predicted class, explained class, seconds per method and the trust figures (deletion /
insertion AUC, SHAP completeness gap) — and, per image and method, an overlay PNG and the heat
map as ``.npy`` (float32, the study's pixel size). A file that cannot be read gets an error row
and the batch goes on. Exit status 0 if at least one file was predicted, 2 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from cxr_viewer.core.errors import CxrError

DEFAULT_METHODS = "gradcam"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="an image file (PNG, JPEG, DICOM) or a folder of them")
    parser.add_argument("--model", required=True, help="model bundle folder or .zip")
    parser.add_argument("--out", required=True, help="output folder (created if needed)")
    parser.add_argument(
        "--explain",
        default=DEFAULT_METHODS,
        help="comma-separated methods: gradcam, gradcam++, lime, shap, or 'none' "
        f"(default: {DEFAULT_METHODS})",
    )
    parser.add_argument(
        "--class",
        dest="target",
        default=None,
        help="class to explain (name or index; default: the predicted class)",
    )
    parser.add_argument("--gradcam-layer", default=None, help="Grad-CAM layer (bundle default)")
    parser.add_argument("--shap-layer", default=None, help="SHAP layer (bundle's first)")
    parser.add_argument("--shap-samples", type=int, default=None, help="SHAP gradient samples")
    parser.add_argument("--lime-samples", type=int, default=None, help="LIME maximum samples")
    parser.add_argument("--seed", type=int, default=0, help="seed for LIME and SHAP (default 0)")
    parser.add_argument(
        "--no-trust", action="store_true", help="skip the deletion/insertion AUCs (faster)"
    )
    parser.add_argument("--opacity", type=float, default=0.5, help="overlay opacity (0..1)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _methods(spec: str) -> list[str]:
    from cxr_viewer.core.explain.registry import EXPLAINERS

    if spec.strip().lower() in ("", "none"):
        return []
    names = [m.strip().lower() for m in spec.split(",") if m.strip()]
    known = {*EXPLAINERS, "gradcam++"}
    bad = [m for m in names if m not in known]
    if bad:
        raise CxrError(
            f"Unknown explanation method(s): {', '.join(bad)}",
            f"choose from {', '.join(sorted(known))}.",
        )
    return list(dict.fromkeys(names))


def _settings(method: str, args: argparse.Namespace) -> dict[str, Any]:
    if method in ("gradcam", "gradcam++"):
        return {"layer": args.gradcam_layer} if args.gradcam_layer else {}
    if method == "lime":
        s: dict[str, Any] = {"seed": args.seed}
        if args.lime_samples:
            s["num_samples"] = args.lime_samples
        return s
    s = {"seed": args.seed}
    if args.shap_layer:
        s["layer"] = args.shap_layer
    if args.shap_samples:
        s["nsamples"] = args.shap_samples
    return s


def _target(arg: str | None, class_names: tuple[str, ...], predicted: int) -> int:
    if arg is None:
        return predicted
    if arg in class_names:
        return class_names.index(arg)
    if arg.isdigit() and int(arg) < len(class_names):
        return int(arg)
    raise CxrError(f"Unknown class '{arg}'", f"the model's classes are {', '.join(class_names)}.")


def _stem(path: Path, root: Path) -> str:
    rel = path.relative_to(root) if root.is_dir() else Path(path.name)
    stem = "__".join(rel.with_suffix("").parts)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem) or "image"


def _write_overlay(path: Path, study, values: np.ndarray, signed: bool, opacity: float) -> None:
    from PIL import Image

    from cxr_viewer.core.display import display_image
    from cxr_viewer.core.overlay import colorize, composite

    rgb = composite(display_image(study), [(colorize(values, signed=signed), opacity)])
    Image.fromarray(rgb).save(path)


def _columns(class_names, methods: list[str], trust: bool) -> list[str]:
    cols = ["file", "status", "error"]
    cols += [f"p_{c}" for c in class_names]
    cols += ["predicted_class", "explained_class"]
    for m in methods:
        cols.append(f"seconds_{m}")
        if trust:
            cols += [f"{m}_deletion_auc", f"{m}_insertion_auc"]
        if m == "shap":
            cols.append("shap_completeness_gap")
        if m == "lime":
            cols.append("lime_samples")
    return cols


def _explain_one(method, clf, args, x, target, study, out_dir: Path, stem: str, row: dict) -> None:
    from cxr_viewer.core.explain.registry import create_explainer
    from cxr_viewer.core.trust import deletion_insertion

    start = time.perf_counter()
    hm = create_explainer(method, clf, _settings(method, args)).explain(x, target)
    row[f"seconds_{method}"] = round(time.perf_counter() - start, 3)
    if not args.no_trust:
        figs = deletion_insertion(clf, x, hm.values, target, seed=args.seed)
        row[f"{method}_deletion_auc"] = round(figs["deletion_auc"], 4)
        row[f"{method}_insertion_auc"] = round(figs["insertion_auc"], 4)
    if method == "shap":
        row["shap_completeness_gap"] = round(hm.trust.get("completeness_gap", float("nan")), 4)
    if method == "lime":
        row["lime_samples"] = hm.settings.get("samples_used")
    full = hm.resized(study.rows, study.columns)
    tag = method.replace("+", "p")
    np.save(out_dir / f"{stem}_{tag}.npy", full.values.astype(np.float32), allow_pickle=False)
    _write_overlay(out_dir / f"{stem}_{tag}.png", study, full.values, hm.signed, args.opacity)


def run(args: argparse.Namespace) -> int:
    from cxr_viewer.core.io import list_study_files, load_study

    def say(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    try:
        methods = _methods(args.explain)
        files = list_study_files(args.path)
        from cxr_viewer.core.inference import load_classifier

        clf = load_classifier(args.model)
    except CxrError as exc:
        print(f"cxr-viewer batch: {exc}", file=sys.stderr)
        return 2
    if not files:
        print(f"cxr-viewer batch: no PNG, JPEG or DICOM files in {args.path}", file=sys.stderr)
        return 2
    from cxr_viewer.core.preprocess import study_to_input

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    root = Path(args.path)
    cols = _columns(clf.class_names, methods, not args.no_trust)
    n_ok = 0
    with open(out_dir / "predictions.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols, restval="")
        writer.writeheader()
        for i, path in enumerate(files, 1):
            row: dict[str, Any] = {"file": str(path), "status": "ok", "error": ""}
            try:
                study = load_study(path)
                x = study_to_input(study, clf.spec)
                pred = clf.make_prediction(clf.predict_inputs(x[None])[0])
            except CxrError as exc:
                row.update(status="error", error=str(exc))
                writer.writerow(row)
                fh.flush()
                say(f"[{i}/{len(files)}] {path}: {exc}")
                continue
            n_ok += 1
            row.update({f"p_{c}": round(float(p), 6) for c, p in pred.as_dict().items()})
            row["predicted_class"] = pred.predicted_class
            try:
                target = _target(args.target, clf.class_names, pred.predicted_index)
            except CxrError as exc:
                print(f"cxr-viewer batch: {exc}", file=sys.stderr)
                return 2
            row["explained_class"] = clf.class_names[target]
            stem = _stem(path, root)
            errors = []
            for method in methods:
                try:
                    _explain_one(method, clf, args, x, target, study, out_dir, stem, row)
                except CxrError as exc:
                    errors.append(f"{method}: {exc}")
            if errors:
                row.update(status="partial", error="; ".join(errors))
            writer.writerow(row)
            fh.flush()
            say(f"[{i}/{len(files)}] {path}: {pred.predicted_class} {row['status']}")
    say(f"wrote {out_dir / 'predictions.csv'} ({n_ok} of {len(files)} files predicted)")
    return 0 if n_ok else 2
