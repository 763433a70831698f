"""Wrap a classifier trained elsewhere (Keras 3 .keras or Keras 2 .h5) into a CXR Lens bundle.

The model is rebuilt as one flat Keras 3 graph (a backbone nested as one layer is inlined so
Grad-CAM and SHAP can reach its layers), its outputs are checked against the original's, and
a bundle is written with the default Grad-CAM layer, the SHAP layers and a SHAP background set
(from --background images, else synthetic phantoms). The output head (softmax, one sigmoid
unit, several independent sigmoid units, or logits) and the input preprocessing are read from
the model; --head and --preprocess override them. Examples::

    cxr-train import covid_resnet.h5 --classes non-COVID COVID --positive-class COVID -o b1
    cxr-train import pneumonia_sigmoid.h5 --classes normal pneumonia -o b2   # 1 sigmoid unit
    cxr-train import chexnet.h5 --classes Atelectasis Cardiomegaly ... -o b3  # 14 sigmoid units
"""

from __future__ import annotations

import argparse
import sys

from cxr_viewer.core.model.heads import HEAD_KINDS
from cxr_viewer.core.model.preprocess import INTENSITY_STAGES, INTERPOLATIONS, PREPROCESSINGS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL_FILE", help="the .keras or .h5 model file")
    parser.add_argument(
        "--classes",
        nargs="+",
        required=True,
        metavar="NAME",
        help="class names, one per model output, in output order (one sigmoid unit: the "
        "positive finding, or NEGATIVE POSITIVE)",
    )
    parser.add_argument(
        "--preprocess",
        choices=tuple(PREPROCESSINGS),
        default=None,
        help="input values the model was trained on: unit [0, 1], symmetric [-1, 1], raw "
        "[0, 255], caffe (BGR, ImageNet mean), torch (ImageNet mean/std) (default: proposed "
        "from the model: a Rescaling layer, its backbone, else unit)",
    )
    parser.add_argument(
        "--interpolation",
        choices=tuple(INTERPOLATIONS),
        default=None,
        help="the resize the model was trained with: bilinear for cv2.resize's default and "
        "Keras' image_dataset_from_directory (default: auto, area when shrinking, cubic when "
        "enlarging; or the best match on --reference-predictions)",
    )
    parser.add_argument(
        "--intensity",
        nargs=2,
        type=float,
        metavar=("SCALE", "OFFSET"),
        default=None,
        help="a linear intensity step of the training pipeline, v*SCALE+OFFSET (e.g. 1.3 0 for "
        "a contrast step)",
    )
    parser.add_argument(
        "--intensity-stage",
        choices=INTENSITY_STAGES,
        default="pixels",
        help="pixels: on 0-255 values before the /255, saturating like uint8 (default); "
        "unit: on [0, 1] values after it",
    )
    parser.add_argument(
        "--reference-predictions",
        metavar="CSV",
        default=None,
        help="the model's outputs on a few films through your own pipeline (columns: file, then "
        "one per output): the import tries every preprocessing not stated, uses the best and "
        "warns when even that one does not reproduce them",
    )
    parser.add_argument(
        "--head",
        choices=HEAD_KINDS,
        default=None,
        help="output head (default: from the model: one sigmoid unit = binary, softmax = "
        "softmax, several sigmoid units = multilabel)",
    )
    parser.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="[NAME=]P",
        help="decision threshold: P for a binary model, NAME=P per finding (repeatable)",
    )
    parser.add_argument(
        "--input-size",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        help="input rows and columns (default: read from the model)",
    )
    parser.add_argument(
        "--background",
        metavar="DIR",
        help="folder of chest X-rays (PNG/JPEG/DICOM) for the SHAP background set "
        "(default: synthetic phantoms)",
    )
    parser.add_argument(
        "--near-band",
        type=float,
        default=None,
        metavar="P",
        help="the viewer flags a probability within P of its threshold (default 0.05)",
    )
    parser.add_argument("--n-background", type=int, default=16, help="background images (16)")
    parser.add_argument("--positive-class", metavar="NAME", help="the positive class")
    parser.add_argument("--name", help="bundle name (default: the model file's stem)")
    parser.add_argument("-o", "--out", required=True, metavar="BUNDLE", help="bundle folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bundle")


def _thresholds(values: list[str]) -> tuple[float | None, dict[str, float]]:
    single, per = None, {}
    for v in values:
        name, sep, p = v.rpartition("=")
        try:
            prob = float(p)
        except ValueError:
            raise ValueError(f"--threshold {v}: '{p}' is not a number") from None
        if sep:
            per[name] = prob
        else:
            single = prob
    return single, per


def run(args: argparse.Namespace) -> int:
    from cxr_viewer.core.errors import CxrError
    from cxr_viewer.core.importer import import_model

    def progress(fraction: float, message: str) -> None:
        print(f"[{fraction:4.0%}] {message}", file=sys.stderr)

    try:
        threshold, thresholds = _thresholds(args.threshold)
    except ValueError as exc:
        print(f"cxr-train import: {exc}", file=sys.stderr)
        return 2
    try:
        from cxr_viewer.core.model.preprocess import Intensity

        intensity = (
            Intensity(args.intensity[0], args.intensity[1], args.intensity_stage)
            if args.intensity
            else None
        )
        bundle = import_model(
            args.model,
            args.classes,
            out_dir=args.out,
            preprocessing=args.preprocess,
            input_size=tuple(args.input_size) if args.input_size else None,
            background_dir=args.background,
            positive_class=args.positive_class,
            head=args.head,
            threshold=threshold,
            thresholds=thresholds or None,
            near_band=args.near_band,
            n_background=args.n_background,
            name=args.name,
            overwrite=args.overwrite,
            progress=progress,
            interpolation=args.interpolation,
            intensity=intensity,
            reference_predictions=args.reference_predictions,
        )
    except CxrError as exc:
        lines = [f"cxr-train import: {exc.what}", exc.why, exc.hint]
        print("\n  ".join(line for line in lines if line), file=sys.stderr)
        return 2
    meta = bundle.metadata
    check = meta["verification"]
    print(f"wrote {bundle.root}")
    print(f"  source       {meta['source_file']} ({meta['source_format']})")
    if meta["flattened_nested_models"]:
        print(f"  flattened    {', '.join(meta['flattened_nested_models'])}")
    head = bundle.head
    print(f"  head         {head.kind}: {head.units} {head.activation} output(s), link {head.link}")
    print(f"  classes      {', '.join(bundle.class_names)}")
    spec = bundle.input_spec
    given = (
        ""
        if meta["preprocessing_given"]
        else f" (proposed: {meta['preprocessing_reason']}; pass --preprocess to change)"
    )
    print(f"  input        {spec.height}x{spec.width}x{spec.channels}, {spec.preprocessing}{given}")
    step = "" if spec.intensity.identity else f", intensity {spec.intensity.describe()}"
    print(f"  resize       {spec.interpolation}{step}")
    pipeline = meta.get("preprocessing_check") or {}
    if pipeline.get("checked"):
        best = pipeline["best"]
        print(
            f"  pipeline     best match on {pipeline['films']} film(s): Spearman "
            f"{best['spearman_rho']:.4f}, max |Δp| {best['max_abs_dp']:.3g}"
        )
        if pipeline.get("warning"):
            print(f"cxr-train import: warning: {pipeline['warning']}", file=sys.stderr)
    print(f"  Grad-CAM at  {bundle.gradcam_layer or '(does not apply)'}")
    print(f"  SHAP layers  {', '.join(bundle.shap_layers) or '(none)'}")
    print(f"  background   {meta['background_source']}")
    for method, reason in (meta.get("methods_unavailable") or {}).items():
        print(f"  no {method:<10} {reason}")
    for note in meta.get("import_notes") or []:
        print(f"  adapted      {note}")
    print(
        f"  verified     max |Δ| {check['max_abs_diff']:.2g} on {check['inputs']} inputs "
        f"vs {check['reference']}"
    )
    return 0
