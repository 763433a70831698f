"""Size limits that protect the reader against decompression bombs.

The limit is checked from the header (PNG IHDR, JPEG SOF, DICOM Rows/Columns) *before* any
pixel data is decoded, so a small file that claims a huge image is refused without allocating
memory for it.
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
