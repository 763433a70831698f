"""The built-in image formats: PNG and JPEG (Pillow, OpenCV) and DICOM (pydicom), registered.

Each is an :class:`~.formats.ImageFormat` whose sniffing test is a magic-bytes check of
:mod:`.sniff` and whose reader (:mod:`.raster`, :mod:`.dicom`) is imported when a file is read,
not with this module (pydicom and Pillow take a while to import). Registration order is sniffing
order: DICOM last, as a data set without the Part 10 preamble is recognised by a weaker test.
"""

from __future__ import annotations

from pathlib import Path

from cxr_viewer.core.errors import StudyLoadError
from cxr_viewer.core.io.study import Study

from .formats import ImageFormat, register_format
from .sniff import JPEG_SIGNATURE, PNG_SIGNATURE, looks_like_bare_dicom


def _one_frame(name: str, path: Path, frame: int) -> None:
    if frame != 0:
        raise StudyLoadError(
            f"Cannot open frame {frame} of {path.name}",
            f"a {name} file has one frame (frame 0)",
            "Choose frame 0.",
        )


def _read_png(path: Path, head: bytes, frame: int, max_pixels: int) -> Study:
    from .raster import load_raster

    _one_frame("PNG", path, frame)
    return load_raster(path, "png", head, max_pixels)


def _read_jpeg(path: Path, head: bytes, frame: int, max_pixels: int) -> Study:
    from .raster import load_raster

    _one_frame("JPEG", path, frame)
    return load_raster(path, "jpeg", head, max_pixels)


def _is_part10(head: bytes) -> bool:
    return len(head) >= 132 and head[128:132] == b"DICM"


def _read_dicom(path: Path, head: bytes, frame: int, max_pixels: int) -> Study:
    from .dicom import load_dicom

    return load_dicom(path, not _is_part10(head), frame, max_pixels)


PNG = register_format(
    ImageFormat(
        "PNG",
        (".png",),
        lambda head: head.startswith(PNG_SIGNATURE),
        _read_png,
        requires=("PIL", "cv2"),
        description="PNG, 8 or 16 bits, grey or colour (reduced to grey)",
    )
)
JPEG = register_format(
    ImageFormat(
        "JPEG",
        (".jpg", ".jpeg", ".jpe", ".jfif"),
        lambda head: head.startswith(JPEG_SIGNATURE),
        _read_jpeg,
        requires=("PIL", "cv2"),
        description="baseline and progressive JPEG, EXIF orientation applied",
    )
)
DICOM = register_format(
    ImageFormat(
        "DICOM",
        (".dcm", ".dicom", ".dic", ".ima"),
        lambda head: _is_part10(head) or looks_like_bare_dicom(head),
        _read_dicom,
        requires=("pydicom",),
        description="DICOM Part 10 and ACR-NEMA, single and multi-frame, compressed with the "
        "pylibjpeg / pyjpegls decoders",
    )
)
