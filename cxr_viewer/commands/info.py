"""Describe image files: one JSON object per line per study (or an ``error`` for files that fail).

Exit status 0 when at least one file could be read, 2 when none could.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from cxr_viewer.core.errors import StudyLoadError
from cxr_viewer.core.io.study import Study


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cxr_viewer.core.io.formats import format_names

    parser.add_argument("path", help=f"an image file ({format_names()}) or a folder of them")


def study_record(study: Study) -> dict[str, Any]:
    """The JSON-ready description of a study that ``info`` prints."""
    return {
        "path": str(study.path),
        "format": study.format,
        "rows": study.rows,
        "columns": study.columns,
        "frames": study.n_frames,
        "photometric_interpretation": study.photometric,
        "bits_stored": study.bits_stored,
        "transfer_syntax": study.transfer_syntax,
        "windows": [
            {
                "center": float(w.center),
                "width": float(w.width),
                "function": w.function,
                "name": w.name,
            }
            for w in study.windows
        ],
        "voi_luts": len(study.voi_luts),
        "invert": study.invert,
        "is_color": study.is_color,
        "pixel_spacing": list(study.pixel_spacing) if study.pixel_spacing else None,
        "modality": study.metadata.get("Modality"),
        "view": study.metadata.get("ViewPosition"),
    }


def run(args: argparse.Namespace) -> int:
    from cxr_viewer.core.io import format_names, list_study_files, load_study

    try:
        files = list_study_files(args.path)
    except StudyLoadError as exc:
        print(json.dumps({"path": str(args.path), "error": str(exc)}))
        return 2
    if not files:
        print(f"cxr-viewer info: no {format_names()} files in {args.path}", file=sys.stderr)
        return 2
    readable = 0
    try:
        for file in files:
            try:
                record = study_record(load_study(file))
                readable += 1
            except StudyLoadError as exc:
                record = {"path": str(file), "error": str(exc), "error_type": type(exc).__name__}
            print(json.dumps(record), flush=True)
    except BrokenPipeError:  # e.g. `cxr-viewer info DIR | head`: the reader went away
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0 if readable else 2
    return 0 if readable else 2
