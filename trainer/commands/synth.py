"""Write synthetic chest-X-ray phantoms (PNG and DICOM MONOCHROME1/2) with lesion masks.

Each phantom is one "patient"; the manifest ``manifest.csv`` in the output folder lists every
file with its label (``no_lesion``/``lesion``), patient id and mask, and can be trained on with
the generic CSV reader (``[data] format = "csv"``). With ``--multilabel`` the phantoms carry two
independent findings (a nodule and an effusion), PNG only, labelled "nodule|effusion",
"nodule", "effusion" or "no_finding" (``[model] head = "multilabel"``).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=200, help="number of phantoms (default 200)")
    parser.add_argument("--size", type=int, default=128, help="side in pixels (default 128)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--positive-fraction", type=float, default=0.5, help="fraction with a lesion (0.5)"
    )
    parser.add_argument(
        "--formats",
        default="png,dicom",
        help="comma-separated subset of png,dicom (default png,dicom)",
    )
    parser.add_argument(
        "--photometrics",
        default="MONOCHROME2,MONOCHROME1",
        help="DICOM photometric interpretations to write (default both)",
    )
    parser.add_argument("--prefix", default="phantom", help="file and patient id prefix")
    parser.add_argument(
        "--multilabel",
        action="store_true",
        help="two independent findings per phantom (nodule, effusion), PNG only",
    )


def run(args: argparse.Namespace) -> int:
    from trainer.synth import (
        make_multilabel_phantoms,
        make_phantoms,
        write_multilabel_phantoms,
        write_phantoms,
    )

    if args.multilabel:
        try:
            ml = make_multilabel_phantoms(
                args.n, args.size, seed=args.seed, fraction=args.positive_fraction
            )
            manifest = write_multilabel_phantoms(args.out, ml, prefix=args.prefix)
        except (ValueError, OSError) as exc:
            print(f"cxr-train synth: could not write phantoms: {exc}", file=sys.stderr)
            return 2
        totals = ml.labels.sum(axis=0)
        counts = f"{int(totals[0])} with a nodule, {int(totals[1])} with an effusion"
        print(f"wrote {len(ml)} phantoms ({counts}) → {manifest}")
        return 0
    try:
        phantoms = make_phantoms(
            args.n, args.size, seed=args.seed, positive_fraction=args.positive_fraction
        )
        manifest = write_phantoms(
            args.out,
            phantoms,
            formats=tuple(f.strip() for f in args.formats.split(",") if f.strip()),
            photometrics=tuple(
                p.strip().upper() for p in args.photometrics.split(",") if p.strip()
            ),
            prefix=args.prefix,
        )
    except (ValueError, OSError) as exc:
        print(f"cxr-train synth: could not write phantoms: {exc}", file=sys.stderr)
        return 2
    n_pos = int(phantoms.labels.sum())
    print(f"wrote {len(phantoms)} phantoms ({n_pos} with a lesion) → {manifest}")
    return 0
