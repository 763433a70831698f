"""Command line of CXR Lens.

``cxr-viewer [PATH ...] [--model BUNDLE]`` opens the desktop viewer; the sub-commands run
headless::

    cxr-viewer info PATH                   one JSON object per study
    cxr-viewer render PATH -o OUT.png      the 8-bit display image, as the viewer shows it
    cxr-viewer batch PATH --model B ...    predictions and explanations for many files
    cxr-viewer localize BOXES --model B    where the maps point, against radiologist boxes
    cxr-viewer --self-test                 headless end-to-end check of an install

Each sub-command lives in ``cxr_viewer/commands/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int``. Every command also takes ``--device auto|cpu|gpu:N``, ``--gpu-memory MB``
and ``--verbose`` (:func:`add_runtime_arguments`, shared with ``cxr-train``), applied before
anything imports TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from cxr_viewer import __version__

#: sub-command name → module in cxr_viewer.commands
COMMANDS = {
    "info": "info",
    "render": "render",
    "batch": "batch",
    "localize": "localize",
}


def _device(text: str) -> str:
    from cxr_viewer.core.model_io import DeviceRequest

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


def apply_runtime_arguments(args: argparse.Namespace) -> None:
    """Hand ``--device`` / ``--gpu-memory`` / ``--verbose`` to the one place TensorFlow starts."""
    from cxr_viewer.core.model_io import configure

    configure(
        getattr(args, "device", None) or "auto",
        getattr(args, "gpu_memory", None),
        bool(getattr(args, "verbose", False)),
        bool(getattr(args, "mixed_precision", False)),
    )


def _gui_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cxr-viewer",
        description="CXR Lens: view chest X-rays and why a classifier said what it said. "
        f"Headless sub-commands: {', '.join(COMMANDS)} (try `cxr-viewer info -h`).",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__} (CXR Lens)")
    p.add_argument("paths", nargs="*", help="image files or folders to open (PNG, JPEG, DICOM)")
    p.add_argument("--model", help="model bundle folder or .zip (default: the demo bundle)")
    p.add_argument("--no-model", action="store_true", help="open without loading a model")
    p.add_argument(
        "--self-test",
        action="store_true",
        help="headless end-to-end check of this install; writes a JSON report",
    )
    p.add_argument("--report", help="where --self-test writes its JSON report")
    p.add_argument(
        "--quit-after",
        type=_positive_seconds,
        metavar="SECONDS",
        help="close the viewer cleanly after SECONDS and exit 0 (smoke tests of an install)",
    )
    p.add_argument(
        "--quit-when-ready",
        action="store_true",
        help="close the viewer cleanly once the model is ready (exit 0) or failed to load "
        "(exit 1); with --quit-after, a model not ready by then also exits 1",
    )
    add_runtime_arguments(p, device_default=None)
    return p


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        name = argv[0]
        module = importlib.import_module(f"cxr_viewer.commands.{COMMANDS[name]}")
        parser = argparse.ArgumentParser(prog=f"cxr-viewer {name}", description=module.__doc__)
        module.add_arguments(parser)
        add_runtime_arguments(parser)
        args = parser.parse_args(argv[1:])
        apply_runtime_arguments(args)
        return int(module.run(args) or 0)
    args = _gui_parser().parse_args(argv)
    if args.device or args.gpu_memory or args.verbose or args.mixed_precision or args.self_test:
        # the viewer otherwise applies its saved device setting when it starts
        apply_runtime_arguments(args)
    if args.self_test:
        from .commands import selftest

        return int(selftest.run(args) or 0)
    from .gui.app import run_app

    return int(run_app(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
