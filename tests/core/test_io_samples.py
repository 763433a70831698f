"""Small valid PNG, JPEG and DICOM files built in memory, for the reader's unit and fuzz tests.

The other ``test_io_*`` modules import these builders; the tests here check that the builders
themselves produce files a third-party reader accepts, so a broken builder cannot make a
reader test pass.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    BasicTextSRStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
    generate_uid,
)


def gradient(rows: int = 24, cols: int = 32, top: int = 255) -> np.ndarray:
    """A deterministic test pattern: a diagonal ramp with a bright square."""
    y, x = np.mgrid[0:rows, 0:cols]
    img = (x / max(cols - 1, 1) * 0.6 + y / max(rows - 1, 1) * 0.4) * top
    img[rows // 4 : rows // 2, cols // 4 : cols // 2] = top
    return np.rint(img)


def png_bytes(pixels: np.ndarray, bit_depth: int = 8, exif: bytes | None = None) -> bytes:
    """A PNG written chunk by chunk (PNG spec §11): any bit depth and colour type.

    ``pixels`` (rows, cols) is greyscale, (rows, cols, 2) grey+alpha, (…, 3) RGB, (…, 4) RGBA.
    Pillow cannot write 16-bit colour PNGs, hence this writer.
    """
    arr = np.asarray(pixels)
    if arr.ndim == 2:
        arr = arr[..., None]
    rows, cols, channels = arr.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    dtype = ">u2" if bit_depth == 16 else "u1"
    raw = b"".join(b"\x00" + arr[r].astype(dtype).tobytes() for r in range(rows))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", cols, rows, bit_depth, colour_type, 0, 0, 0)
    body = chunk(b"IHDR", ihdr)
    if exif is not None:
        body += chunk(b"eXIf", exif)
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def exif_orientation(orientation: int) -> bytes:
    """A little-endian EXIF (TIFF) block holding only the Orientation tag (0x0112)."""
    return (
        b"II*\x00"
        + struct.pack("<IH", 8, 1)
        + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
        + struct.pack("<I", 0)
    )


def pillow_bytes(pixels: np.ndarray, fmt: str = "JPEG", **save_kw) -> bytes:
    """Encode an 8-bit array with Pillow (JPEG by default)."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels).astype(np.uint8)).save(buf, format=fmt, **save_kw)
    return buf.getvalue()


def dicom_dataset(
    pixels: np.ndarray,
    *,
    bits_stored: int = 12,
    signed: bool = False,
    photometric: str = "MONOCHROME2",
    frames: int = 1,
    sop_class: str = SecondaryCaptureImageStorage,
    **attrs,
) -> Dataset:
    """An uncompressed (Explicit VR Little Endian) DICOM data set holding ``pixels``.

    ``pixels`` is (rows, cols), (frames, rows, cols) or (rows, cols, 3); extra keyword
    arguments become top-level attributes (e.g. ``WindowCenter=...``).
    """
    arr = np.asarray(pixels)
    samples = 3 if (arr.ndim == 3 and frames == 1 and arr.shape[-1] == 3) else 1
    bits_alloc = 8 if bits_stored <= 8 else 16
    dtype = {
        (8, False): np.uint8,
        (8, True): np.int8,
        (16, False): np.uint16,
        (16, True): np.int16,
    }[(bits_alloc, signed)]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.PatientName = "Test^Patient"
    ds.PatientID = "TP-1"
    ds.Rows, ds.Columns = (arr.shape[-3], arr.shape[-2]) if samples == 3 else arr.shape[-2:]
    ds.SamplesPerPixel = samples
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits_alloc, bits_stored, bits_stored - 1
    ds.PixelRepresentation = int(signed)
    if frames > 1:
        ds.NumberOfFrames = frames
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.PixelData = arr.astype(dtype).tobytes()
    return ds


def dicom_bytes(ds: Dataset, *, little_endian: bool = True, implicit_vr: bool = False) -> bytes:
    """Serialise a data set as a DICOM Part 10 file (with preamble and File Meta)."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def acr_nema_bytes(ds: Dataset) -> bytes:
    """The same data set without preamble or File Meta, implicit VR little endian (ACR-NEMA)."""
    ds = ds.copy()
    del ds.file_meta
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=True, little_endian=True)
    return buf.getvalue()


def rle_dicom_bytes(pixels: np.ndarray, **kw) -> bytes:
    """An RLE Lossless DICOM file (pydicom's own RLE encoder)."""
    ds = dicom_dataset(pixels, **kw)
    ds.compress(pydicom.uid.RLELossless, encoding_plugin="pydicom")
    return dicom_bytes(ds)


def j2k_dicom_bytes(pixels: np.ndarray, **kw) -> bytes:
    """A JPEG 2000 Lossless DICOM file (pylibjpeg-openjpeg encoder; needs at least 64 × 64)."""
    ds = dicom_dataset(pixels, **kw)
    ds.compress(pydicom.uid.JPEG2000Lossless)
    return dicom_bytes(ds)


def jpeg_dicom_bytes(pixels: np.ndarray) -> bytes:
    """An 8-bit greyscale JPEG Baseline DICOM file (Pillow encodes, pydicom encapsulates)."""
    ds = dicom_dataset(pixels, bits_stored=8)
    ds.PixelData = encapsulate([pillow_bytes(pixels, quality=95)])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.LossyImageCompression = "01"
    return dicom_bytes(ds)


def no_pixels_dicom_bytes() -> bytes:
    """A valid DICOM structured report: no image attributes, no Pixel Data."""
    ds = dicom_dataset(np.zeros((2, 2)), sop_class=BasicTextSRStorage)
    for keyword in (
        "PixelData",
        "Rows",
        "Columns",
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
    ):
        delattr(ds, keyword)
    ds.Modality = "SR"
    return dicom_bytes(ds)


# --- the builders themselves --------------------------------------------------------------


def test_png_writer_is_read_back_by_pillow_and_opencv():
    import cv2

    img = gradient(top=65535).astype(np.uint16)
    data = png_bytes(img, 16)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), img)
    rgb = np.dstack([img, img // 2, img // 3])
    decoded = cv2.imdecode(np.frombuffer(png_bytes(rgb, 16), np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(decoded[..., ::-1], rgb.astype(np.uint16))


def test_exif_block_is_read_by_pillow():
    data = png_bytes(gradient(), 8, exif=exif_orientation(6))
    assert Image.open(io.BytesIO(data)).getexif().get(0x0112) == 6


def test_dicom_builders_decode_with_pydicom():
    img = gradient(top=4095)
    big = gradient(64, 72, top=4095)
    for data, ref in (
        (dicom_bytes(dicom_dataset(img)), img),
        (rle_dicom_bytes(img), img),
        (j2k_dicom_bytes(big), big),
    ):
        assert np.array_equal(pydicom.dcmread(io.BytesIO(data)).pixel_array, ref)
    ds = pydicom.dcmread(io.BytesIO(acr_nema_bytes(dicom_dataset(img))), force=True)
    assert "TransferSyntaxUID" not in getattr(ds, "file_meta", {})
    ds = pydicom.dcmread(io.BytesIO(jpeg_dicom_bytes(gradient())))
    assert np.abs(ds.pixel_array.astype(int) - gradient()).max() < 12


# Re-exported so the reader tests can say ImplicitVRLittleEndian without importing pydicom.uid.
__all__ = [
    "ImplicitVRLittleEndian",
    "acr_nema_bytes",
    "dicom_bytes",
    "dicom_dataset",
    "exif_orientation",
    "gradient",
    "j2k_dicom_bytes",
    "jpeg_dicom_bytes",
    "no_pixels_dicom_bytes",
    "png_bytes",
    "pillow_bytes",
    "rle_dicom_bytes",
]
