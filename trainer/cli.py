"""``cxr-train``: build, evaluate and export the classifier CXR Lens explains.

Each sub-command lives in ``trainer/commands/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: sub-command name → (module in trainer.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "import": ("import_model", "wrap a .keras/.h5 model into a bundle"),
    "synth": ("synth", "write synthetic chest X-ray phantoms with lesion masks (PNG + DICOM)"),
    "samples": ("samples", "write the viewer's synthetic sample studies (resources/samples)"),
    "split": ("split", "read a dataset and preview its patient-level split (no training)"),
    "evaluate": ("evaluate", "evaluate a model bundle on a dataset with the bundle's threshold"),
    "train": ("train", "train, evaluate and export a model bundle (resumes an interrupted run)"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cxr-train", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"trainer.commands.{module_name}")
        p = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    args = parser.parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
