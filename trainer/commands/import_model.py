"""Wrap a classifier trained elsewhere (Keras 3 .keras or Keras 2 .h5) into a CXR Lens bundle.

The model is rebuilt as one flat Keras 3 graph (a backbone nested as one layer is inlined so
Grad-CAM and SHAP can reach its layers), its outputs are checked against the original's, and
a bundle is written with the default Grad-CAM layer, the SHAP layers and a SHAP background set
(from --background images, else synthetic phantoms). Example::

    cxr-train import covid_resnet.h5 --classes non-COVID COVID --preprocess symmetric \\
        --positive-class COVID -o bundles/covid_resnet
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL_FILE", help="the .keras or .h5 model file")
    parser.add_argument(
        "--classes",
        nargs="+",
        required=True,
        metavar="NAME",
        help="class names, one per model output, in output order",
    )
    parser.add_argument(
        "--preprocess",
        choices=("unit", "symmetric"),
        default=None,
        help="input values the model was trained on: unit = [0, 1], symmetric = [-1, 1] "
        "(default: unit, recorded as assumed)",
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
    parser.add_argument("--n-background", type=int, default=16, help="background images (16)")
    parser.add_argument("--positive-class", metavar="NAME", help="the positive class")
    parser.add_argument("--name", help="bundle name (default: the model file's stem)")
    parser.add_argument("-o", "--out", required=True, metavar="BUNDLE", help="bundle folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bundle")


def run(args: argparse.Namespace) -> int:
    from cxr_viewer.core.errors import CxrError
    from cxr_viewer.core.importer import import_model

    def progress(fraction: float, message: str) -> None:
        print(f"[{fraction:4.0%}] {message}", file=sys.stderr)

    try:
        bundle = import_model(
            args.model,
            args.classes,
            out_dir=args.out,
            preprocessing=args.preprocess,
            input_size=tuple(args.input_size) if args.input_size else None,
            background_dir=args.background,
            positive_class=args.positive_class,
            n_background=args.n_background,
            name=args.name,
            overwrite=args.overwrite,
            progress=progress,
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
    print(f"  classes      {', '.join(bundle.class_names)}")
    spec = bundle.input_spec
    given = "" if meta["preprocessing_given"] else " (assumed: pass --preprocess)"
    print(f"  input        {spec.height}x{spec.width}x{spec.channels}, {spec.preprocessing}{given}")
    print(f"  Grad-CAM at  {bundle.gradcam_layer}")
    print(f"  SHAP layers  {', '.join(bundle.shap_layers) or '(none)'}")
    print(f"  background   {meta['background_source']}")
    print(
        f"  verified     max |Δ| {check['max_abs_diff']:.2g} on {check['inputs']} inputs "
        f"vs {check['reference']}"
    )
    return 0
