"""PNG and JPEG reader (Pillow; OpenCV for 16-bit colour PNG, which Pillow reduces to 8 bits).

PNG and JPEG radiographs are already display images: their stored values are shown over the
full bit depth (:func:`~cxr_viewer.core.io.display.full_range_window`), greyscale stored as
RGB/RGBA is reduced to one channel, and the EXIF orientation is honoured (EXIF 2.3 tag 0x0112).
"""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

from cxr_viewer.core.errors import CorruptFileError, ImageTooLargeError, UnsupportedFormatError
from cxr_viewer.core.io.display import full_range_window
from cxr_viewer.core.io.study import Study

from .channels import to_grey
from .codestream import CodestreamError, StreamInfo, jpeg_info, png_info
from .limits import check_decoded_bytes, check_pixel_count, decoded_budget

_UINT16_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
_NATIVE_MODES = frozenset({"L", "LA", "RGB", "RGBA"})
_ORIENTATION_TAG = 0x0112

# EXIF orientation → the numpy equivalent of the Pillow transpose exif_transpose applies.
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1, :],
    5: lambda a: np.swapaxes(a, 0, 1),
    6: lambda a: np.rot90(a, k=-1),
    7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
    8: lambda a: np.rot90(a, k=1),
}


def load_raster(path: Path, kind: Literal["png", "jpeg"], head: bytes, max_pixels: int) -> Study:
    """Read a PNG or JPEG file into a :class:`Study` (values as stored, 8 or 16 bits).

    Parameters
    ----------
    path:
        The file.
    kind:
        ``"png"`` or ``"jpeg"``, from the file's signature.
    head:
        The file's first bytes (for the PNG header).
    max_pixels:
        Largest ``rows × columns`` accepted, checked before decoding.
    """
    fmt = "PNG" if kind == "png" else "JPEG"
    info = _stream_info(path, kind)
    check_pixel_count(path, info.height, info.width, max_pixels)
    check_decoded_bytes(
        path,
        f"a {info.width} × {info.height} {fmt} image with {info.components} sample(s) of "
        f"{info.precision} bits per pixel",
        info.decoded_bytes,
        decoded_budget(max_pixels),
    )
    if not info.complete:
        end = "IEND chunk" if kind == "png" else "end-of-image (EOI) marker after its scan"
        raise CorruptFileError(
            f"Cannot open {path.name}",
            f"it is cut short or damaged: its {fmt} data have no {end}"
            + (" or a chunk runs past the end of the file" if kind == "png" else ""),
            "The file is truncated or corrupt; export it again from its source.",
        )
    try:
        im = Image.open(path, formats=[fmt])
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(
            f"Cannot open {path.name}", f"Pillow refused it as a decompression bomb ({exc})"
        ) from exc
    except Exception as exc:
        raise CorruptFileError(
            f"Cannot open {path.name}",
            f"it starts like a {fmt} file but its header is damaged ({exc})",
            "The file is truncated or corrupt; export it again from its source.",
        ) from exc
    with im:
        width, height = im.size
        if (width, height) != (info.width, info.height):
            raise CorruptFileError(
                f"Cannot open {path.name}",
                f"its {fmt} headers disagree about the image size ({width} × {height} and "
                f"{info.width} × {info.height})",
                "The file is damaged; export it again from its source.",
            )
        colour_type = head[25] if kind == "png" and len(head) > 25 else None  # IHDR byte
        try:
            if info.precision == 16 and colour_type in (2, 4, 6):
                pixels, bits = _decode_png16_colour(path), 16
                pixels = _orient(pixels, _exif_orientation(im))
            else:
                pixels, bits = _decode_pillow(_transposed(im), path)
        except (UnsupportedFormatError, CorruptFileError):
            raise
        except MemoryError as exc:
            raise ImageTooLargeError(
                f"Cannot open {path.name}", "there is not enough memory to decode it"
            ) from exc
        except Exception as exc:
            raise CorruptFileError(
                f"Cannot open {path.name}",
                f"its {fmt} image data could not be decoded ({type(exc).__name__}: {exc})",
                "The file is truncated or corrupt; export it again from its source.",
            ) from exc
    grey, is_color = to_grey(np.ascontiguousarray(pixels), float(2**bits - 1))
    return Study(
        path=path,
        format=kind,
        pixels=grey,
        auto_window=full_range_window(bits),
        photometric="RGB" if is_color else "MONOCHROME2",
        bits_stored=bits,
        is_color=is_color,
    )


def _stream_info(path: Path, kind: str) -> StreamInfo:
    """The codestream's own size and completeness, read through a memory map (no copy)."""
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return png_info(data) if kind == "png" else jpeg_info(data)
    except CodestreamError as exc:
        raise CorruptFileError(
            f"Cannot open {path.name}",
            f"it starts like a {kind.upper()} file but is damaged: {exc}",
            "The file is truncated or corrupt; export it again from its source.",
        ) from exc
    except (OSError, ValueError) as exc:
        raise CorruptFileError(
            f"Cannot open {path.name}",
            f"it cannot be read ({exc})",
            "The file is truncated or corrupt; export it again from its source.",
        ) from exc


def _exif_orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # a damaged EXIF block must not make the image unreadable
        return 1


def _transposed(im: Image.Image) -> Image.Image:
    """``ImageOps.exif_transpose`` (decodes the pixels); a damaged EXIF block is ignored."""
    im.load()
    try:
        return ImageOps.exif_transpose(im)
    except Exception:
        return im


def _orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    fn = _ORIENT.get(orientation)
    return fn(pixels) if fn else pixels


def _decode_pillow(im: Image.Image, path: Path) -> tuple[np.ndarray, int]:
    """Pixels and bit depth of a decoded Pillow image."""
    mode = im.mode
    if mode in _UINT16_MODES:
        return np.asarray(im).astype(np.uint16), 16
    if mode == "I":
        arr = np.asarray(im)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise UnsupportedFormatError(
                f"Cannot open {path.name}",
                "it holds 32-bit integer pixels; CXR Lens reads 8- and 16-bit PNG and JPEG",
                "Convert it to a 16-bit PNG or to DICOM.",
            )
        return arr.astype(np.uint16), 16
    if mode not in _NATIVE_MODES:
        has_alpha = mode in ("P", "PA", "La", "RGBa") or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else ("L" if mode == "1" else "RGB"))
    return np.asarray(im), 8


def _decode_png16_colour(path: Path) -> np.ndarray:
    """A 16-bit RGB/RGBA/grey+alpha PNG as uint16 RGB(A), via OpenCV (Pillow keeps 8 bits)."""
    import cv2

    data = np.fromfile(path, dtype=np.uint8)  # chunk structure checked by _stream_info
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise CorruptFileError(
            f"Cannot open {path.name}",
            "its 16-bit PNG image data could not be decoded (OpenCV returned nothing)",
            "The file is truncated or corrupt; export it again from its source.",
        )
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[..., [2, 1, 0, 3][: arr.shape[2]]]  # BGR(A) → RGB(A)
    return arr
