"""Size limits that protect the reader against decompression bombs.

The limits are checked from the headers — the DICOM header and the compressed stream's own
(PNG IHDR, JPEG SOF/SOF55, JPEG 2000 SIZ, see :mod:`.codestream`) — *before* any pixel data is
decoded, so a small file that claims a huge image is refused without allocating memory for it.
Two limits apply: pixels per frame (``max_pixels``) and bytes per decoded frame
(:func:`decoded_budget`, samples × bytes per sample count too).
"""

from __future__ import annotations

from pathlib import Path

from cxr_viewer.core.errors import ImageTooLargeError

#: Largest frame accepted by default: 8192 × 8192 pixels (256 MB as float32). The biggest
#: detector formats in use (~4300 × 4300 for chest, ~4100 × 5200 for mammography) fit easily.
DEFAULT_MAX_PIXELS: int = 8192 * 8192


def check_pixel_count(path: Path, rows: int, columns: int, max_pixels: int) -> None:
    """Raise :class:`ImageTooLargeError` when ``rows × columns`` exceeds ``max_pixels``.

    Parameters
    ----------
    path:
        The file, for the message.
    rows, columns:
        The frame size as the header declares it.
    max_pixels:
        The limit (pixels per frame).
    """
    count = int(rows) * int(columns)
    if count > max_pixels:
        raise ImageTooLargeError(
            f"Cannot open {path.name}",
            f"its header declares a {columns} × {rows} image ({count:,} pixels), more than "
            f"the limit of {max_pixels:,} pixels; such files are refused before decoding to "
            "protect against decompression bombs",
            "If the image is genuine, raise the limit (load_study(..., max_pixels=N)).",
        )


#: Bytes per pixel of the memory budget: one float32 frame of ``max_pixels`` pixels.
BUDGET_BYTES_PER_PIXEL: int = 4


def decoded_budget(max_pixels: int) -> int:
    """Largest decoded frame accepted, in bytes (256 MiB for the default pixel limit).

    A decoder's output (samples × bytes per sample per pixel) and the reader's float32 copy
    both stay under it, so one file never needs more than a small multiple of it.
    """
    return int(max_pixels) * BUDGET_BYTES_PER_PIXEL


def check_decoded_bytes(path: Path, what: str, nbytes: int, budget: int) -> None:
    """Raise :class:`ImageTooLargeError` when a frame would decode to more than ``budget`` bytes.

    ``what`` describes the declared image ("a 8192 × 8192 RGBA 16-bit PNG image").
    """
    if nbytes > budget:
        raise ImageTooLargeError(
            f"Cannot open {path.name}",
            f"it declares {what}, which decodes to {nbytes / 2**20:,.0f} MiB, more than the "
            f"memory budget of {budget / 2**20:,.0f} MiB per image; such files are refused "
            "before decoding to protect against decompression bombs",
            "If the image is genuine, convert it to 8-bit greyscale or raise the limit "
            "(load_study(..., max_pixels=N)).",
        )


def peak_memory_allowance(max_pixels: int, file_size: int) -> int:
    """The most memory reading and displaying one file may take, in bytes.

    Twice the file (pydicom holds a DICOM file whole and a decoder its compressed input),
    four frames of the decoded budget (decoder output, the float32 modality copy, the display
    image, one temporary) and 64 MiB of decoder working memory. The fuzz benchmark
    (``benchmarks/fuzz_loaders.py``) measures every file's peak against it.
    """
    return 2 * int(file_size) + 4 * decoded_budget(max_pixels) + 64 * 2**20
