"""The compressed sample studies the self-test opens: a phantom as JPEG 2000 and JPEG-LS DICOM.

Frozen apps commonly lose pydicom's decoder plugins (pylibjpeg finds them through package entry
points), so ``cxr-viewer --self-test`` opens one file per codec family it must keep. This module
writes them with pydicom's own encoders (``Dataset.compress``; PS3.5 A.4.4 JPEG-LS lossless via
pyjpegls, A.4.4 JPEG 2000 lossless via pylibjpeg-openjpeg) from a :mod:`trainer.synth` phantom
with a lesion, and checks that each file decodes back to the exact stored values::

    python -m trainer.sample_studies            # → resources/samples/

Files written (all from the same phantom, 256 × 256, 12 bits stored in 16, VOI window set):

* ``phantom_j2k.dcm`` — MONOCHROME2, JPEG 2000 Image Compression (Lossless Only)
* ``phantom_jpegls.dcm`` — MONOCHROME1, JPEG-LS Lossless Image Compression
* ``phantom_selftest.png`` — 8-bit PNG of the same picture
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

#: file name → (photometric interpretation of the source DICOM, transfer syntax keyword)
COMPRESSED = {
    "phantom_j2k.dcm": ("MONOCHROME2", "JPEG2000Lossless"),
    "phantom_jpegls.dcm": ("MONOCHROME1", "JPEGLSLossless"),
}
PNG_NAME = "phantom_selftest.png"
SIZE = 256
SEED = 6


def write_sample_studies(out_dir: str | Path, *, size: int = SIZE, seed: int = SEED) -> list[Path]:
    """Write the compressed DICOM samples and the PNG into ``out_dir``; return their paths.

    Parameters
    ----------
    out_dir:
        Folder to write into (created if needed); existing files of the same names are replaced.
    size:
        Side of the phantom in pixels (kept ≤ 512 so the samples stay small).
    seed:
        Seed of :func:`trainer.synth.make_phantoms`.

    Raises
    ------
    RuntimeError
        When an encoder is missing or a written file does not decode to the stored values.
    """
    import pydicom
    import pydicom.uid
    from pydicom.pixels import get_encoder

    from trainer.synth import make_phantoms, write_phantoms

    if not 16 <= size <= 512:
        raise ValueError(f"size must be within 16..512 pixels, got {size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    phantoms = make_phantoms(1, size, seed=seed, positive_fraction=1.0)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="cxr-samples-") as tmp:
        photometrics = tuple(sorted({p for p, _ in COMPRESSED.values()}))
        write_phantoms(tmp, phantoms, photometrics=photometrics, prefix="sample")
        images = Path(tmp) / "images"
        for name, (photometric, syntax) in COMPRESSED.items():
            uid = getattr(pydicom.uid, syntax)
            encoder = get_encoder(uid)
            if not encoder.is_available:
                raise RuntimeError(
                    f"cannot write {name}: no {uid.name} encoder "
                    f"({'; '.join(encoder.missing_dependencies)})"
                )
            ds = pydicom.dcmread(images / f"sample-00000_{photometric.lower()}.dcm")
            stored = ds.pixel_array.copy()
            ds.compress(uid)
            ds.DerivationDescription = f"Lossless {uid.name} of a CXR Lens phantom"
            path = out / name
            ds.save_as(path, enforce_file_format=True)
            back = pydicom.dcmread(path)
            if str(back.file_meta.TransferSyntaxUID) != uid or not np.array_equal(
                back.pixel_array, stored
            ):
                raise RuntimeError(f"{path} does not decode to the values it was written from")
            written.append(path)
        png = out / PNG_NAME
        shutil.copyfile(images / "sample-00000.png", png)
        written.append(png)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m trainer.sample_studies [--out DIR]``."""
    from cxr_viewer.core.paths import samples_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(samples_dir()), help="folder (resources/samples)")
    args = parser.parse_args(argv)
    try:
        paths = write_sample_studies(args.out)
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"could not write the sample studies: {exc}", file=sys.stderr)
        return 1
    for p in paths:
        print(f"{p} ({p.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
