"""``cxr-train``: build, evaluate and export the classifier CXR Lens explains.

Each sub-command lives in ``trainer/commands/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int``. Every sub-command also takes ``--device``, ``--gpu-memory`` and
``--verbose`` (as ``cxr-viewer`` does); those that need TensorFlow start it right after parsing,
through the one place that applies them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from cxr_viewer import __version__
from cxr_viewer.commands.helptext import PlainHelpFormatter
from cxr_viewer.commands.runtime import add_runtime_arguments, apply_runtime_arguments

#: sub-command name → (module in trainer.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "import": ("import_model", "wrap a .keras/.h5 model into a bundle"),
    "synth": ("synth", "write synthetic chest X-ray phantoms with lesion masks (PNG + DICOM)"),
    "samples": ("samples", "write the viewer's synthetic sample studies (resources/samples)"),
    "split": ("split", "read a dataset and preview its patient-level split (no training)"),
    "evaluate": ("evaluate", "evaluate a model bundle on a dataset with the bundle's threshold"),
    "train": ("train", "train, evaluate and export a model bundle (resumes an interrupted run)"),
}
#: sub-commands that run TensorFlow: started (quietly, on the chosen device) before they run
USES_TENSORFLOW = ("import", "evaluate", "train")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cxr-train", description=__doc__.splitlines()[0], formatter_class=PlainHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__} (CXR Lens)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"trainer.commands.{module_name}")
        p = sub.add_parser(
            name, help=help_text, description=module.__doc__, formatter_class=PlainHelpFormatter
        )
        module.add_arguments(p)
        # training spreads over every GPU (MirroredStrategy); the rest use one, as the viewer
        add_runtime_arguments(p, device_default="all" if name == "train" else "auto")
        p.set_defaults(_run=module.run)
    args = parser.parse_args(argv)
    apply_runtime_arguments(args)
    if args.command in USES_TENSORFLOW:
        from cxr_viewer.core.errors import CxrError
        from cxr_viewer.core.model.model_io import import_tensorflow

        try:
            import_tensorflow()
        except CxrError as exc:  # e.g. --device gpu:3 on a machine without it
            print(f"cxr-train: error: {exc}", file=sys.stderr)
            return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
