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
and ``--verbose`` (:func:`cxr_viewer.commands.runtime.add_runtime_arguments`, shared with ``cxr-train``), applied before
anything imports TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from cxr_viewer import __version__
from cxr_viewer.commands.helptext import PlainHelpFormatter
from cxr_viewer.commands.runtime import add_runtime_arguments, apply_runtime_arguments

#: sub-command name → module in cxr_viewer.commands
COMMANDS = {
    "info": "info",
    "render": "render",
    "batch": "batch",
    "localize": "localize",
}


def _gui_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cxr-viewer",
        description="CXR Lens: view chest X-rays and why a classifier said what it said. "
        f"Headless sub-commands: {', '.join(COMMANDS)} (try: cxr-viewer info -h).",
        formatter_class=PlainHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__} (CXR Lens)")
    from cxr_viewer.core.io.formats import format_names

    p.add_argument("paths", nargs="*", help=f"image files or folders to open ({format_names()})")
    p.add_argument("--model", help="model bundle folder or .zip (default: the demo bundle)")
    p.add_argument("--no-model", action="store_true", help="open without loading a model")
    p.add_argument(
        "--self-test",
        action="store_true",
        help="headless end-to-end check of this install: one line per step, the device and the "
        "forward path; exit 0 only if all pass (the JSON report only with --report FILE)",
    )
    p.add_argument(
        "--report",
        metavar="FILE",
        help="with --self-test: save its JSON report to FILE (default: not saved)",
    )
    p.add_argument(
        "--sanity",
        action="store_true",
        help="with --self-test: run the model randomisation sanity check of every method "
        "(cached per model file; without it the self-test reports the cached result)",
    )
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
        parser = argparse.ArgumentParser(
            prog=f"cxr-viewer {name}",
            description=module.__doc__,
            formatter_class=PlainHelpFormatter,
        )
        module.add_arguments(parser)
        add_runtime_arguments(parser)
        args = parser.parse_args(argv[1:])
        apply_runtime_arguments(args)
        return int(module.run(args) or 0)
    parser = _gui_parser()
    args = parser.parse_args(argv)
    if args.report and not args.self_test:
        parser.error("--report FILE saves the --self-test report: add --self-test")
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
