"""DICOM reader (pydicom 3): header checks, decoding one frame, modality LUT → Study.

The grayscale pipeline of DICOM PS3.3 C.11 is split in two: this reader applies the modality
LUT (Rescale Slope/Intercept or Modality LUT Sequence, via pydicom's ``apply_modality_lut``)
and records — but does not apply — the VOI windows/LUTs and the MONOCHROME1 / INVERSE
inversion, which :func:`cxr_viewer.core.io.display.display_image` applies once. pydicom's
``pixel_array`` only decodes (and converts YBR to RGB); it never windows or inverts.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, get_frame
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from cxr_viewer.core.errors import (
    CorruptFileError,
    ImageTooLargeError,
    NoPixelDataError,
    StudyLoadError,
    UnsupportedFormatError,
)
from cxr_viewer.core.io.display import auto_window_from_pixels, full_range_window
from cxr_viewer.core.io.study import Study, VoiLut, Window

from .channels import to_grey
from .dicom_codecs import DAMAGED_HINT, check_codestream, check_decoder, decode_frame, short
from .dicom_header import (
    frame_view,
    inverts,
    metadata_of,
    pixel_spacing_of,
    voi_luts_of,
    windows_of,
)
from .formats import format_names
from .limits import check_decoded_bytes, check_pixel_count, decoded_budget

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
#: Values larger than this stay in the file when a data set is read (pixel data, mostly);
#: :func:`frame_dataset` reads one frame of them.
DEFER_BYTES = 1 << 20


def read_dataset(path: Path, bare: bool, inflate_limit: int | None = None) -> Dataset:
    """Parse the file; ``bare`` = no preamble/``DICM`` (ACR-NEMA, or a headerless data set).

    A bare file is only accepted when it really parses and holds an image: pydicom's
    ``force=True`` reads almost anything as *some* data set. A Deflated Explicit VR Little
    Endian file, which pydicom inflates whole in memory, is refused when it inflates to more
    than ``inflate_limit`` bytes (a zip bomb).
    """
    deflated = False
    if not bare and inflate_limit is not None:
        deflated = _check_deflated_size(path, inflate_limit)
    try:
        # pixel data stay in the file until one frame of them is read (frame_dataset)
        ds = pydicom.dcmread(path, force=bare, defer_size=None if deflated else DEFER_BYTES)
        has_pixels = any(k in ds for k in PIXEL_KEYWORDS)
        has_rows = "Rows" in ds and "Columns" in ds
        recognised = any(k in ds for k in ("SOPClassUID", "Modality", "StudyInstanceUID"))
    except Exception as exc:
        if bare:
            raise UnsupportedFormatError(
                f"Cannot open {path.name}",
                f"it is not a {format_names()} file (no DICOM file header, and it does not "
                f"parse as an old ACR-NEMA data set either: {short(exc, 200)})",
                f"Choose a {format_names()} file.",
            ) from exc
        raise CorruptFileError(
            f"Cannot open {path.name}",
            f"it is a DICOM file but its data set could not be parsed ({short(exc)})",
            DAMAGED_HINT,
        ) from exc
    if bare and not (has_pixels and has_rows) and not recognised:
        raise UnsupportedFormatError(
            f"Cannot open {path.name}",
            f"it is not a {format_names()} file (no DICOM file header, and it does not hold "
            "an ACR-NEMA image either)",
            f"Choose a {format_names()} file.",
        )
    if not has_pixels and has_rows:
        raise CorruptFileError(
            f"Cannot open {path.name}",
            "its header describes an image (Rows, Columns) but the file has no Pixel Data; "
            "it was probably cut short",
            DAMAGED_HINT,
        )
    if not has_pixels:
        try:
            what = f"a DICOM {UID(str(ds.SOPClassUID)).name} object"
        except Exception:
            what = "a DICOM data set"
        raise NoPixelDataError(
            f"Cannot open {path.name}",
            f"it is {what} without Pixel Data (a report, a presentation state or a directory)",
            "Open the image files of the study instead.",
        )
    with _damaged(path, "its File Meta Information is damaged"):
        _ensure_transfer_syntax(ds)
        UID(str(ds.file_meta.TransferSyntaxUID))
    return ds


def _check_deflated_size(path: Path, limit: int) -> bool:
    """Stream-inflate a deflated data set (PS3.5 §A.5) and refuse it past ``limit`` bytes.

    Returns whether the file is deflated.
    """
    with open(path, "rb") as fp:
        try:
            read_preamble(fp, False)
            meta = _read_file_meta_info(fp)
            if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
                return False
        except Exception:  # not parseable here: pydicom's own parse reports it
            return False
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        total = 0
        while not inflater.eof and (chunk := fp.read(1 << 20)):
            while chunk:
                try:
                    total += len(inflater.decompress(chunk, 1 << 22))
                except zlib.error:
                    return True  # damaged: pydicom's parse reports it
                if total > limit:
                    raise ImageTooLargeError(
                        f"Cannot open {path.name}",
                        f"its deflated data set inflates to more than {limit / 2**20:,.0f} MiB, "
                        "the memory budget; such files are refused to protect against zip bombs",
                        "If the file is genuine, convert it to an uncompressed transfer syntax.",
                    )
                chunk = inflater.unconsumed_tail
    return True


def _ensure_transfer_syntax(ds: Dataset) -> None:
    """Give files without File Meta (ACR-NEMA) the transfer syntax pydicom read them with."""
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        meta = ds.file_meta = FileMetaDataset()
    value = meta.get("TransferSyntaxUID")
    if value:
        if not isinstance(value, str):
            raise ValueError(f"Transfer Syntax UID is not a single UID: {value!r}")
        return
    implicit, little = ds.original_encoding
    if implicit is not False:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _complete_image_module(ds: Dataset, path: Path) -> tuple[int, int, int, str, int]:
    """Rows, columns, frames, photometric, bits stored; defaults old ACR-NEMA files omit.

    ACR-NEMA 2.0 had no Samples per Pixel / Photometric Interpretation in many files; their
    images are single-sample greyscale (MONOCHROME2 unless stated).
    """
    rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    bits_alloc = int(ds.get("BitsAllocated") or 0)
    if rows <= 0 or cols <= 0 or bits_alloc <= 0:
        raise CorruptFileError(
            f"Cannot open {path.name}",
            f"its header gives no usable image size (Rows {rows}, Columns {cols}, "
            f"Bits Allocated {bits_alloc})",
            DAMAGED_HINT,
        )
    if "SamplesPerPixel" not in ds:
        ds.SamplesPerPixel = 1
    if not str(ds.get("PhotometricInterpretation") or "").strip():
        ds.PhotometricInterpretation = "MONOCHROME2" if ds.SamplesPerPixel == 1 else "RGB"
    if "BitsStored" not in ds:
        ds.BitsStored = bits_alloc
    if "PixelRepresentation" not in ds:
        ds.PixelRepresentation = 0
    frames = int(ds.get("NumberOfFrames") or 1)
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    return rows, cols, max(frames, 1), photometric, int(ds.BitsStored)


def load_dicom(path: Path, bare: bool, frame: int, max_pixels: int) -> Study:
    """Read one frame of a DICOM file into a :class:`Study`.

    Parameters
    ----------
    path:
        The file.
    bare:
        True when the file has no preamble / ``DICM`` prefix (ACR-NEMA).
    frame:
        Frame index, 0-based.
    max_pixels:
        Largest ``rows × columns`` accepted, checked from the header before decoding.
    """
    ds = read_dataset(path, bare, 2 * decoded_budget(max_pixels) + 64 * 2**20)
    with _damaged(path, "its image header is damaged"):
        rows, cols, n_frames, photometric, bits_stored = _complete_image_module(ds, path)
        if not 0 <= frame < n_frames:
            raise StudyLoadError(
                f"Cannot open frame {frame} of {path.name}",
                f"the file has {n_frames} frame(s), numbered 0 to {n_frames - 1}",
                "Choose a frame in that range.",
            )
        check_pixel_count(path, rows, cols, max_pixels)
        samples = int(ds.SamplesPerPixel)
        budget = decoded_budget(max_pixels)
        _check_header_budget(path, ds, (rows, cols, samples), photometric, budget)
        check_decoder(ds, path, bits_stored)
        one = frame_dataset(ds, path, frame, n_frames, (rows, cols, samples))
        index, count = (0, 1) if one is not ds else (frame, n_frames)
        check_codestream(one, index, count, path, (rows, cols, samples), budget)
    stored = decode_frame(one, index, path, (rows, cols, samples))
    with _damaged(path, "its modality/VOI LUT or image attributes are damaged"):
        return _build_study(path, ds, stored, frame, n_frames, photometric, bits_stored)


def frame_dataset(
    ds: Dataset, path: Path, frame: int, n_frames: int, shape: tuple[int, int, int]
) -> Dataset:
    """``ds`` with the pixel data of frame ``frame`` only, read from the file; else ``ds``.

    :func:`read_dataset` leaves values above :data:`DEFER_BYTES` in the file, so memory
    follows one frame (the decode budget), not the file: a native frame is read at its own
    offset, an encapsulated one by walking the fragments (pydicom's ``get_frame`` on the
    open file). The copy shares every other element and says it has one frame. Files whose
    pixel data are already in memory (deflated, small) or whose frames do not start on a
    byte (1-bit, YBR_FULL_422 native) are returned as they are.
    """
    keyword = next(k for k in PIXEL_KEYWORDS if k in ds)
    elem = ds.get_item(keyword, keep_deferred=True)
    if not isinstance(elem, RawDataElement) or elem.value is not None or elem.value_tell is None:
        return ds
    rows, cols, samples = shape
    syntax = UID(str(ds.file_meta.TransferSyntaxUID))
    with open(path, "rb") as fp:
        fp.seek(elem.value_tell)
        if syntax.is_encapsulated:
            if elem.length != 0xFFFFFFFF:  # an encapsulated value has an undefined length
                return ds  # not encapsulated after all: pydicom's own reading reports it
            extended = None
            if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
                extended = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
            data = encapsulate(
                [get_frame(fp, frame, number_of_frames=n_frames, extended_offsets=extended)]
            )
        else:
            bits = int(ds.get("BitsAllocated") or 0)
            photometric = str(ds.get("PhotometricInterpretation") or "").strip().upper()
            if bits % 8 or photometric.startswith("YBR") and photometric.endswith("422"):
                return ds
            size = rows * cols * samples * (bits // 8)
            fp.seek(elem.value_tell + frame * size)
            data = fp.read(size)
            data += b"\0" * (len(data) % 2)  # a value has an even length
    one = Dataset()
    for tag in ds.keys():
        if tag != elem.tag:
            one.add(ds.get_item(tag, keep_deferred=True))  # shared, not copied
    one.file_meta = ds.file_meta
    one.set_original_encoding(*ds.original_encoding)
    setattr(one, keyword, data)
    if "NumberOfFrames" in one:
        one.NumberOfFrames = 1
    for table in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if table in one:
            delattr(one, table)
    return one


def _check_header_budget(
    path: Path, ds: Dataset, shape: tuple[int, int, int], photometric: str, budget: int
) -> None:
    """Refuse a frame whose decoded size (as the DICOM header declares it) is over budget.

    Palette colour frames count as the 16-bit RGB image the colour LUT turns them into.
    """
    rows, cols, samples = shape
    nbytes = (int(ds.BitsAllocated) + 7) // 8
    if photometric == "PALETTE COLOR":
        samples, nbytes = 3, 2
    what = f"a {cols} × {rows} frame with {samples} sample(s) of {8 * nbytes} bits"
    check_decoded_bytes(path, what, rows * cols * samples * nbytes, budget)


@contextmanager
def _damaged(path: Path, why: str) -> Iterator[None]:
    """Turn a library exception (pydicom converts values lazily) into a CorruptFileError."""
    try:
        yield
    except StudyLoadError:
        raise
    except MemoryError as exc:
        raise ImageTooLargeError(
            f"Cannot open {path.name}", "there is not enough memory to read it"
        ) from exc
    except Exception as exc:
        raise CorruptFileError(
            f"Cannot open {path.name}",
            f"{why} ({type(exc).__name__}: {short(exc)})",
            DAMAGED_HINT,
        ) from exc


def _build_study(
    path: Path,
    ds: Dataset,
    stored: np.ndarray,
    frame: int,
    n_frames: int,
    photometric: str,
    bits_stored: int,
) -> Study:
    view = frame_view(ds, frame)
    spacing = pixel_spacing_of(view)
    transfer_syntax = str(ds.file_meta.TransferSyntaxUID)
    metadata = metadata_of(ds)
    if photometric == "PALETTE COLOR":
        stored = apply_color_lut(stored, ds)
    windows: list[Window] = []
    luts: list[VoiLut] = []
    invert = False
    is_color = False
    if stored.ndim == 3:  # colour: pydicom already converted YBR to RGB
        top = 255 if stored.dtype.itemsize == 1 else 2 ** min(bits_stored, 16) - 1
        pixels, is_color = to_grey(stored, float(top))
        bits = 8 if top == 255 else min(bits_stored, 16)
        auto = full_range_window(bits)
    else:
        pixels = np.asarray(apply_modality_lut(stored, view), dtype=np.float32)
        auto = _auto_window(pixels, view, bits_stored)
        windows, luts = windows_of(view), voi_luts_of(view)
        invert = inverts(photometric, view)
    return Study(
        path=path,
        format="dicom",
        pixels=pixels,
        auto_window=auto,
        windows=windows,
        voi_luts=luts,
        invert=invert,
        photometric=photometric,
        bits_stored=bits_stored,
        frame=frame,
        n_frames=n_frames,
        pixel_spacing=spacing,
        transfer_syntax=transfer_syntax,
        is_color=is_color,
        metadata=metadata,
    )


def _auto_window(modality: np.ndarray, view: Dataset, bits_stored: int) -> Window:
    """The window used when the file gives none.

    8-bit unsigned greyscale with no modality transform (secondary captures such as the
    SIIM-ACR files) already is a display image: it is shown over its full range, exactly as
    the same pixels saved as PNG would be. Anything else gets a percentile window
    (:func:`~cxr_viewer.core.io.display.auto_window_from_pixels`).
    """
    rescaled = "ModalityLUTSequence" in view or (
        float(view.get("RescaleSlope", 1) or 1) != 1.0
        or float(view.get("RescaleIntercept", 0) or 0) != 0.0
    )
    if bits_stored <= 8 and not rescaled and int(view.get("PixelRepresentation", 0) or 0) == 0:
        return full_range_window(bits_stored)
    return auto_window_from_pixels(modality)
