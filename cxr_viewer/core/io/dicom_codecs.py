"""Decoding DICOM pixel data: which decoder plugins a transfer syntax needs, and one frame.

pydicom 3 picks a decoder plugin per transfer syntax (``pydicom.pixels.get_decoder``); when
none is installed the user is told which pip package provides one, and when every installed
plugin rejects the data the file is reported as damaged, with each plugin's reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder, pixel_array
from pydicom.uid import UID, JPEGExtended12Bit

from cxr_viewer.core.errors import CorruptFileError, ImageTooLargeError, MissingCodecError

_LIBJPEG = "pylibjpeg pylibjpeg-libjpeg"
_OPENJPEG = "pylibjpeg pylibjpeg-openjpeg"
#: pip packages that give pydicom a decoder, by transfer syntax UID prefix / UID.
_CODEC_PACKAGES = {
    "1.2.840.10008.1.2.4.5": _LIBJPEG,  # JPEG baseline / extended
    "1.2.840.10008.1.2.4.57": _LIBJPEG,  # JPEG lossless
    "1.2.840.10008.1.2.4.70": _LIBJPEG,  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.8": _LIBJPEG,  # JPEG-LS
    "1.2.840.10008.1.2.4.9": _OPENJPEG,  # JPEG 2000
    "1.2.840.10008.1.2.4.20": _OPENJPEG,  # HTJ2K
    "1.2.840.10008.1.2.5": "pylibjpeg pylibjpeg-rle",  # RLE
}
DAMAGED_HINT = "The file is truncated or damaged; export or send it again from its source."


def codec_packages(uid: str) -> str:
    """The ``pip install`` arguments that give pydicom a decoder for transfer syntax ``uid``."""
    for prefix, packages in sorted(_CODEC_PACKAGES.items(), key=lambda kv: -len(kv[0])):
        if uid.startswith(prefix):
            return packages
    return "python-gdcm"


def short(text: object, limit: int = 400) -> str:
    """``text`` on one line, cut to ``limit`` characters (library messages can be long)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_decoder(ds: Dataset, path: Path, bits_stored: int) -> None:
    """Fail with the pip packages to install when no decoder plugin can read this syntax."""
    uid = UID(ds.file_meta.TransferSyntaxUID)
    try:
        decoder = get_decoder(uid)
    except NotImplementedError as exc:
        raise MissingCodecError(
            f"Cannot decode {path.name}",
            f"pydicom {pydicom.__version__} has no decoder for its transfer syntax "
            f"'{uid.name}' ({uid})",
            "Convert the file to an uncompressed or JPEG 2000 transfer syntax (e.g. with "
            "dcmtk's dcmconv or gdcmconv) and open it again.",
        ) from exc
    if not decoder.is_encapsulated:
        return
    plugins = set(decoder.available_plugins)
    if uid == JPEGExtended12Bit and bits_stored > 8:
        plugins.discard("pillow")  # Pillow decodes 8-bit JPEG only
    if not plugins:
        missing = "; ".join(decoder.missing_dependencies) or "none is installed"
        raise MissingCodecError(
            f"Cannot decode {path.name}",
            f"its pixel data are compressed as '{uid.name}' and no decoder plugin for it is "
            f"available ({missing})",
            f"Install one: pip install {codec_packages(str(uid))}",
        )


def decode_frame(ds: Dataset, frame: int, path: Path) -> np.ndarray:
    """Frame ``frame`` of the stored pixel data (PS3.5 §8 native or §A.4 encapsulated).

    Raises
    ------
    ImageTooLargeError
        Not enough memory to decode the frame.
    CorruptFileError
        Every installed decoder plugin rejected the data, or decoding failed otherwise.
    """
    uid = UID(ds.file_meta.TransferSyntaxUID)
    try:
        return pixel_array(ds, index=frame)
    except MemoryError as exc:
        raise ImageTooLargeError(
            f"Cannot open {path.name}", "there is not enough memory to decode it"
        ) from exc
    except BaseException as exc:
        # Rust decoders (pylibjpeg-rle) report corrupt data by a pyo3 PanicException, which
        # derives from BaseException; anything else that is not an Exception propagates.
        if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
            raise
        text = str(exc)
        if "raised by all available plugins" in text:
            raise CorruptFileError(
                f"Cannot decode {path.name}",
                f"every installed '{uid.name}' decoder rejected its compressed pixel data "
                f"({short(text.split(':', 1)[-1])})",
                "The compressed data are damaged or not standard-conformant. Ask for the "
                "image again from the sending system, or install another decoder that "
                "pydicom tries automatically (pip install python-gdcm).",
            ) from exc
        raise CorruptFileError(
            f"Cannot decode {path.name}",
            f"its '{uid.name}' pixel data could not be decoded "
            f"({type(exc).__name__}: {short(text)})",
            DAMAGED_HINT,
        ) from exc
