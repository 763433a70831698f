"""Decoding DICOM pixel data: which decoder plugins a transfer syntax needs, and one frame.

pydicom 3 picks a decoder plugin per transfer syntax (``pydicom.pixels.get_decoder``); when
none is installed the user is told which pip package provides one, and when every installed
plugin rejects the data the file is reported as damaged, with each plugin's reason.
"""

from __future__ import annotations

import re
import struct
import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame

# from the modules that define them: pydicom.pixels re-exports them without marking it
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.utils import pixel_array
from pydicom.uid import UID, JPEGExtended12Bit

from cxr_viewer.core.errors import CorruptFileError, ImageTooLargeError, MissingCodecError

from .codestream import CodestreamError, StreamInfo, j2k_info, jpeg_info
from .limits import check_decoded_bytes

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
#: Transfer syntax UIDs whose frames are JPEG / JPEG-LS or JPEG 2000 / HTJ2K codestreams.
_JPEG_SYNTAXES = frozenset(f"1.2.840.10008.1.2.4.{n}" for n in (50, 51, 57, 70, 80, 81))
_J2K_SYNTAXES = frozenset(f"1.2.840.10008.1.2.4.{n}" for n in (90, 91, 92, 93, 201, 202, 203))
_RLE_SYNTAX = "1.2.840.10008.1.2.5"
#: Decoder warnings that mean the image is incomplete (the rest would be made-up pixels).
_SHORT_DATA = re.compile(
    r"less than expected|premature|truncat|missing|corrupt|insufficient|not enough|end of",
    re.IGNORECASE,
)
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


def decode_frame(ds: Dataset, frame: int, path: Path, shape: tuple[int, int, int]) -> np.ndarray:
    """Frame ``frame`` of the stored pixel data (PS3.5 §8 native or §A.4 encapsulated).

    ``shape`` is (rows, columns, samples per pixel) from the header; a decoder that returns
    another shape, or warns that the data were short, has not decoded a whole image.

    Raises
    ------
    ImageTooLargeError
        Not enough memory to decode the frame.
    CorruptFileError
        Every installed decoder plugin rejected the data, the data are short, or decoding
        failed otherwise.
    """
    uid = UID(ds.file_meta.TransferSyntaxUID)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            arr = pixel_array(ds, index=frame)
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
    short_data = [w for w in caught if _SHORT_DATA.search(str(w.message))]
    if short_data:
        raise CorruptFileError(
            f"Cannot decode {path.name}",
            f"its pixel data are short or damaged (the decoder warned: "
            f"{short(short_data[0].message, 200)})",
            DAMAGED_HINT,
        )
    rows, cols, samples = shape
    expected = (rows, cols) if samples == 1 else (rows, cols, samples)
    if arr.shape != expected:
        raise CorruptFileError(
            f"Cannot decode {path.name}",
            f"its decoded frame is {' × '.join(map(str, arr.shape))}, the header declares "
            f"{' × '.join(map(str, expected))}",
            DAMAGED_HINT,
        )
    return arr


def check_codestream(
    ds: Dataset, frame: int, n_frames: int, path: Path, shape: tuple[int, int, int], budget: int
) -> None:
    """Compare a compressed frame's own header with the DICOM header and the memory budget.

    ``shape`` is (rows, columns, samples per pixel) from the DICOM header. A JPEG, JPEG-LS
    or JPEG 2000 codestream declaring another size, or decoding to more than ``budget``
    bytes, or without its end marker (cut short), is refused before any decoder runs; so is
    an RLE frame whose segment table does not fit.
    """
    uid = str(ds.file_meta.TransferSyntaxUID)
    if uid not in _JPEG_SYNTAXES and uid not in _J2K_SYNTAXES and uid != _RLE_SYNTAX:
        return
    try:
        data = _frame_bytes(ds, frame, n_frames)
    except Exception as exc:
        raise CorruptFileError(
            f"Cannot decode {path.name}",
            f"its encapsulated pixel data cannot be split into frames ({short(exc)})",
            DAMAGED_HINT,
        ) from exc
    if uid == _RLE_SYNTAX:
        _check_rle(data, path, shape[2] * ((int(ds.BitsAllocated) + 7) // 8))
        return
    try:
        info = jpeg_info(data) if uid in _JPEG_SYNTAXES else j2k_info(data)
    except CodestreamError as exc:
        raise CorruptFileError(
            f"Cannot decode {path.name}",
            f"its compressed pixel data are damaged: {exc}",
            DAMAGED_HINT,
        ) from exc
    rows, cols, samples = shape
    check_decoded_bytes(
        path, f"{_describe(info)} in its {info.syntax} codestream", info.decoded_bytes, budget
    )
    if (info.width, info.height, info.components) != (cols, rows, samples):
        raise CorruptFileError(
            f"Cannot decode {path.name}",
            f"its {info.syntax} pixel data declare {_describe(info)}, but its DICOM header "
            f"says {cols} × {rows} with {samples} sample(s) per pixel",
            DAMAGED_HINT,
        )
    if not info.complete:
        marker = "end-of-codestream (EOC)" if info.syntax == "JPEG 2000" else "end-of-image (EOI)"
        raise CorruptFileError(
            f"Cannot decode {path.name}",
            f"its {info.syntax} pixel data are cut short: the {marker} marker is missing, so "
            "part of the image would be made up by the decoder",
            DAMAGED_HINT,
        )


def _describe(info: StreamInfo) -> str:
    return (
        f"a {info.width} × {info.height} image with {info.components} component(s) of "
        f"{info.precision} bits"
    )


def _frame_bytes(ds: Dataset, frame: int, n_frames: int) -> bytes:
    extended = None
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        extended = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    return get_frame(ds.PixelData, frame, number_of_frames=n_frames, extended_offsets=extended)


def _check_rle(data: bytes, path: Path, expected_segments: int) -> None:
    """The RLE header (PS3.5 §G.5): segment count and 15 offsets, each inside the frame."""
    if len(data) >= 64:
        count, *offsets = struct.unpack_from("<16I", data)
        used = offsets[:count]
        fits = (
            count == expected_segments
            and used
            and used[0] == 64
            and all(a < b for a, b in zip(used, used[1:], strict=False))
            and used[-1] < len(data)
        )
        if fits:
            return
    raise CorruptFileError(
        f"Cannot decode {path.name}",
        f"its RLE pixel data are damaged or cut short (the segment table does not describe "
        f"{expected_segments} segment(s) inside the {len(data):,}-byte frame)",
        DAMAGED_HINT,
    )
