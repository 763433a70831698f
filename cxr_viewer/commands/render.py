"""Write the 8-bit display image of a study, exactly as the viewer shows it.

The display pipeline (modality LUT → VOI window/LUT → MONOCHROME1 inversion, DICOM PS3.3
C.11) is :func:`cxr_viewer.core.io.display.display_image`; this command only quantises its
result with :func:`~cxr_viewer.core.io.display.to_uint8` and saves it. Exit status 2 when the
input cannot be read, 1 when the output cannot be written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cxr_viewer.core.errors import StudyLoadError


def _window_width(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"window width must be positive, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cxr_viewer.core.io.formats import format_names

    parser.add_argument("path", help=f"an image file ({format_names()})")
    parser.add_argument("-o", "--output", required=True, help="where to write the image (.png)")
    parser.add_argument(
        "--window",
        nargs=2,
        type=float,
        metavar=("CENTER", "WIDTH"),
        help="VOI window in modality units (default: the file's own, else automatic)",
    )
    parser.add_argument(
        "--frame", type=int, default=0, help="frame of a multi-frame DICOM (0-based)"
    )
    parser.add_argument(
        "--invert",
        action="store_true",
        help="invert relative to the default display (as the viewer's Invert button does)",
    )


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.io.display import display_image, to_uint8
    from cxr_viewer.core.io.study import Window

    window = None
    if args.window is not None:
        center, width = args.window
        try:
            window = Window(center, _window_width(str(width)), "LINEAR", "command line")
        except (ValueError, argparse.ArgumentTypeError) as exc:
            print(f"cxr-viewer render: invalid --window: {exc}", file=sys.stderr)
            return 2
    try:
        study = load_study(args.path, frame=args.frame)
    except StudyLoadError as exc:
        print(f"cxr-viewer render: {exc}", file=sys.stderr)
        return 2
    invert = (not study.invert) if args.invert else None
    image = to_uint8(display_image(study, window=window, invert=invert))
    out = Path(args.output)
    try:
        Image.fromarray(image, mode="L").save(out, format=None if out.suffix else "PNG")
    except (OSError, ValueError, KeyError) as exc:
        print(f"cxr-viewer render: cannot write {out}: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({study.columns}×{study.rows}, frame {study.frame} of {study.n_frames})")
    return 0
