"""Write the viewer's sample studies: synthetic phantoms as PNG and DICOM MONOCHROME1/2.

The files are made by :mod:`trainer.synth` (never copies of real data), 384 × 384 px, and named
after their content (``lesion`` / ``no_lesion``); phantom 2 is written both as MONOCHROME1 and
MONOCHROME2 so the two photometric interpretations can be compared side by side (they must look
identical). A README in the folder says they are synthetic. Other files in the folder are left
alone.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

SIZE = 384
SEED = 2024
#: phantom index → the files it is written as (format, photometric)
#: phantom slot → the files written from it: None a PNG, else a DICOM with that photometric
#: interpretation
LAYOUT: dict[int, list[str | None]] = {
    0: [None],
    1: ["MONOCHROME1", "MONOCHROME2"],
    2: ["MONOCHROME2"],
    3: [None],
}

README = """# Sample studies (synthetic)

Every image in this folder is a **synthetic phantom** drawn by CXR Lens itself
(`trainer.synth`): no patient, no real radiograph. They exist so the viewer opens with
something to show and so the file readers are exercised on PNG and on DICOM MONOCHROME1 /
MONOCHROME2 (12 bits stored, VOI window centre 2048 / width 4096).

`sample-NN_<label>...`: `lesion` phantoms carry one bright opacity in a lung field,
`no_lesion` ones none. `sample-02_lesion_monochrome1.dcm` and
`sample-02_lesion_monochrome2.dcm` hold the same picture (MONOCHROME1 stores inverted
values), so a correct viewer shows them identically.

The demo model was trained on real radiographs, not on these phantoms: its predictions on
them mean nothing.

Rebuild: `cxr-train samples --out resources/samples` (seeded, reproducible). Other files here
(e.g. `phantom_*.dcm`, written by `python -m trainer.sample_studies` for the self-test) are
made the same way.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cxr_viewer.core.paths import samples_dir

    parser.add_argument("--out", default=str(samples_dir()), help="folder (resources/samples)")


def write_samples(out_dir: str | Path) -> list[Path]:
    """Write the sample studies and README into ``out_dir``; return the files written."""
    import numpy as np

    from trainer.synth import PHANTOM_CLASSES, PhantomSet, make_phantoms, write_phantoms

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ph = make_phantoms(len(LAYOUT), SIZE, seed=SEED, positive_fraction=0.5)
    # fix the label of each slot (lesion, lesion, no lesion, no lesion) whatever the shuffle
    order = list(np.flatnonzero(ph.labels == 1)) + list(np.flatnonzero(ph.labels == 0))
    ph = PhantomSet(ph.images[order], ph.labels[order], ph.masks[order])
    written = []
    with tempfile.TemporaryDirectory(prefix="cxr-samples-") as tmp:
        write_phantoms(tmp, ph, prefix="s")
        for i, files in LAYOUT.items():
            label = PHANTOM_CLASSES[int(ph.labels[i])]
            for photometric in files:
                if photometric is None:
                    src, name = f"s-{i:05d}.png", f"sample-{i + 1:02d}_{label}.png"
                else:
                    p = photometric.lower()
                    src, name = f"s-{i:05d}_{p}.dcm", f"sample-{i + 1:02d}_{label}_{p}.dcm"
                shutil.copyfile(Path(tmp) / "images" / src, out / name)
                written.append(out / name)
    (out / "README.md").write_text(README, encoding="utf-8")
    return [*written, out / "README.md"]


def run(args: argparse.Namespace) -> int:
    try:
        files = write_samples(args.out)
    except (OSError, ValueError) as exc:
        print(f"cxr-train samples: could not write the samples: {exc}", file=sys.stderr)
        return 1
    for f in files:
        print(f"{f} ({f.stat().st_size // 1024} KiB)")
    return 0
