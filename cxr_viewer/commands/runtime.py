"""The options every command of both CLIs takes (``--device``, ``--gpu-memory``,
``--mixed-precision``, ``--verbose``), and handing them to the one place TensorFlow starts.

Qt-free and TensorFlow-free at import, so ``cxr-train`` can share it without reaching into the
viewer's GUI entry point.
"""

from __future__ import annotations

import argparse
from typing import Any


def _device(text: str) -> str:
    from cxr_viewer.core.model.model_io import DeviceRequest

    try:
        return str(DeviceRequest.parse(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _megabytes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number of MB, got {text!r}")
    return value


def add_runtime_arguments(parser: argparse.ArgumentParser, device_default: str | None = "auto"):
    """``--device``, ``--gpu-memory`` and ``--verbose`` (every command of both CLIs)."""
    g = parser.add_argument_group("compute device")
    g.add_argument(
        "--device",
        type=_device,
        default=device_default,
        metavar="auto|cpu|gpu:N|all",
        help="where the model runs: auto = the first GPU if TensorFlow sees one, else the CPU; "
        "all = every GPU"
        + (
            f" (default: {device_default})"
            if device_default
            else " (default: the viewer's setting, auto)"
        ),
    )
    g.add_argument(
        "--gpu-memory",
        type=_megabytes,
        metavar="MB",
        help="cap TensorFlow's GPU memory at MB (default: grow as needed, never take the card)",
    )
    g.add_argument(
        "--mixed-precision",
        action="store_true",
        help="on a GPU, run inference in float16 if it matches float32 within 0.01 on check "
        "inputs at load (else float32 is kept and the reason logged)",
    )
    g.add_argument(
        "--verbose",
        action="store_true",
        help="show TensorFlow's own start-up and CUDA log lines (hidden by default)",
    )


def apply_runtime_arguments(args: Any) -> None:
    """Hand ``--device`` / ``--gpu-memory`` / ``--verbose`` to the one place TensorFlow starts."""
    from cxr_viewer.core.model.model_io import configure

    configure(
        getattr(args, "device", None) or "auto",
        getattr(args, "gpu_memory", None),
        bool(getattr(args, "verbose", False)),
        bool(getattr(args, "mixed_precision", False)),
    )
