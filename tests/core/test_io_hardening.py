"""Decoder bombs and cut codestreams: the codestream's own header is checked before decoding.

Every input is built here: a valid small file of each syntax, then its codestream's frame
header patched (SOF, SOF55, SIZ, IHDR) or its data cut in half and re-encapsulated. Files
that would allocate gigabytes are refused by a reader that is forbidden to decode
(``_must_not_decode``), so the test itself never allocates them.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, get_frame
from test_io_samples import (
    dicom_bytes,
    dicom_dataset,
    gradient,
    j2k_dicom_bytes,
    jpeg_dicom_bytes,
    pillow_bytes,
    png_bytes,
    rle_dicom_bytes,
)

from cxr_viewer.core.errors import CorruptFileError, ImageTooLargeError
from cxr_viewer.core.io import codestream, dicom_codecs, load_study
from cxr_viewer.core.io.limits import decoded_budget


def _load(tmp_path, data: bytes, name: str = "x.dcm", **kw):
    path = tmp_path / name
    path.write_bytes(data)
    return load_study(path, **kw)


def _must_not_decode(*args, **kwargs):
    raise AssertionError("the decoder ran although the codestream should have been refused")


def jls_dicom_bytes(pixels: np.ndarray) -> bytes:
    """A JPEG-LS Lossless DICOM file (pyjpegls / CharLS encoder)."""
    ds = dicom_dataset(pixels)
    ds.compress(pydicom.uid.JPEGLSLossless, encoding_plugin="pyjpegls")
    return dicom_bytes(ds)


def jpeg_lossless_header_only(rows: int, cols: int) -> bytes:
    """SOI, SOF3 (lossless), DHT, SOS, a few entropy bytes and EOI: enough for the checks."""
    sof = struct.pack(">BHHB", 12, rows, cols, 1) + b"\x01\x11\x00"
    dht = b"\x00" + bytes([0, 1] + [0] * 14) + b"\x00"
    sos = b"\x01\x01\x00\x01\x00\x00"

    def seg(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body

    return (
        b"\xff\xd8" + seg(0xC3, sof) + seg(0xC4, dht) + seg(0xDA, sos) + b"\x00" * 8 + b"\xff\xd9"
    )


def _reencapsulate(data: bytes, change) -> bytes:
    """The DICOM file with frame 0's codestream replaced by ``change(codestream)``."""
    ds = pydicom.dcmread(io.BytesIO(data))
    frame = get_frame(ds.PixelData, 0, number_of_frames=1)
    ds.PixelData = encapsulate([change(frame)])
    return dicom_bytes(ds)


def _patch_sof(stream: bytes, rows: int, cols: int) -> bytes:
    out = bytearray(stream)
    for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc3", b"\xff\xf7"):
        pos = out.find(marker)
        if pos > 0:
            struct.pack_into(">HH", out, pos + 5, rows, cols)
            return bytes(out)
    raise AssertionError("no frame header found")


def _patch_siz(stream: bytes, rows: int, cols: int) -> bytes:
    out = bytearray(stream)
    pos = out.find(b"\xff\x51")
    struct.pack_into(">II", out, pos + 6, cols, rows)  # Xsiz, Ysiz (offsets are 0)
    return bytes(out)


def _half(stream: bytes) -> bytes:
    return stream[: len(stream) // 2]


BUILDERS = {
    "jpeg-baseline": lambda: jpeg_dicom_bytes(gradient(64, 64)),
    "jpeg-ls": lambda: jls_dicom_bytes(gradient(64, 64, top=4095)),
    "jpeg2000": lambda: j2k_dicom_bytes(gradient(64, 64, top=4095)),
}


@pytest.mark.parametrize("syntax", sorted(BUILDERS))
def test_every_builder_loads_before_it_is_damaged(tmp_path, syntax):
    study = _load(tmp_path, BUILDERS[syntax]())
    assert study.pixels.shape == (64, 64)


@pytest.mark.parametrize("syntax", sorted(BUILDERS))
def test_codestream_bomb_is_refused_before_decoding(tmp_path, syntax, monkeypatch):
    patch = _patch_siz if syntax == "jpeg2000" else _patch_sof
    data = _reencapsulate(BUILDERS[syntax](), lambda s: patch(s, 65500, 65500))
    monkeypatch.setattr(dicom_codecs, "pixel_array", _must_not_decode)
    with pytest.raises(ImageTooLargeError, match="65500 × 65500") as info:
        _load(tmp_path, data)
    assert "memory budget" in str(info.value) and "codestream" in str(info.value)


@pytest.mark.parametrize("syntax", sorted(BUILDERS))
def test_codestream_that_disagrees_with_the_header_is_refused(tmp_path, syntax, monkeypatch):
    patch = _patch_siz if syntax == "jpeg2000" else _patch_sof
    data = _reencapsulate(BUILDERS[syntax](), lambda s: patch(s, 128, 96))  # small, but wrong
    monkeypatch.setattr(dicom_codecs, "pixel_array", _must_not_decode)
    with pytest.raises(CorruptFileError, match="96 × 128 image.*header says 64 × 64"):
        _load(tmp_path, data)


@pytest.mark.parametrize("syntax", sorted(BUILDERS))
def test_half_a_codestream_is_refused_not_padded(tmp_path, syntax):
    with pytest.raises(CorruptFileError, match="cut short|damaged"):
        _load(tmp_path, _reencapsulate(BUILDERS[syntax](), _half))


def test_half_an_rle_frame_is_refused(tmp_path):
    with pytest.raises(CorruptFileError, match="RLE"):
        _load(tmp_path, _reencapsulate(rle_dicom_bytes(gradient(top=4095)), _half))


def _lossless_dicom(stream: bytes, rows: int = 64, cols: int = 64) -> bytes:
    ds = dicom_dataset(np.zeros((rows, cols)))
    ds.PixelData = encapsulate([stream])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGLosslessSV1
    return dicom_bytes(ds)


def test_jpeg_lossless_bomb_and_cut_stream_are_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(dicom_codecs, "pixel_array", _must_not_decode)
    with pytest.raises(ImageTooLargeError, match="65500 × 65500"):
        _load(tmp_path, _lossless_dicom(jpeg_lossless_header_only(65500, 65500)))
    cut = jpeg_lossless_header_only(64, 64)[:-2]  # no EOI
    with pytest.raises(CorruptFileError, match="end-of-image"):
        _load(tmp_path, _lossless_dicom(cut))


def test_native_frame_over_the_memory_budget_is_refused(tmp_path, monkeypatch):
    # 1000 × 1000 pixels pass a 1,000,000 pixel limit, but 3 samples × 16 bits are 6 MB > 4 MB
    ds = dicom_dataset(np.zeros((4, 4, 3)), bits_stored=16, photometric="RGB")
    ds.Rows = ds.Columns = 1000
    monkeypatch.setattr(dicom_codecs, "pixel_array", _must_not_decode)
    with pytest.raises(ImageTooLargeError, match="memory budget of 4 MiB"):
        _load(tmp_path, dicom_bytes(ds), max_pixels=1_000_000)
    assert decoded_budget(1_000_000) == 4_000_000


def _ihdr_png(width: int, height: int, depth: int, colour: int) -> bytes:
    ok = png_bytes(gradient(2, 2))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return ok[:8] + chunk + ok[33:]


def test_16bit_rgba_png_within_the_pixel_limit_is_refused_by_the_byte_budget(tmp_path):
    # 8192² pixels are allowed, but 16-bit RGBA decodes to 512 MiB (the 3 GB file)
    with pytest.raises(ImageTooLargeError, match="512 MiB.*256 MiB"):
        _load(tmp_path, _ihdr_png(8192, 8192, 16, 6), "rgba16.png")
    with pytest.raises(ImageTooLargeError, match="memory budget"):
        _load(tmp_path, _ihdr_png(1000, 1000, 16, 6), "small.png", max_pixels=1_000_000)


def test_raster_jpeg_bomb_is_refused_from_its_sof(tmp_path):
    data = _patch_sof(pillow_bytes(gradient(64, 64)), 65500, 65500)
    with pytest.raises(ImageTooLargeError, match="65500"):
        _load(tmp_path, data, "bomb.jpg")


@pytest.mark.parametrize("cut", ["no-eoi", "no-iend"])
def test_raster_files_without_their_end_marker_are_refused(tmp_path, cut):
    if cut == "no-eoi":
        data = pillow_bytes(gradient(64, 64))
        name, data = "cut.jpg", data[: data.rindex(b"\xff\xd9")]
    else:
        name, data = "cut.png", png_bytes(gradient(64, 64))[:-12]  # the whole IEND chunk
    with pytest.raises(CorruptFileError, match="cut short"):
        _load(tmp_path, data, name)


def test_jpeg_with_trailing_bytes_after_eoi_and_an_exif_thumbnail_still_loads(tmp_path):
    thumb = pillow_bytes(gradient(8, 8))  # an EOI inside APP1 must not count as the end
    app1 = b"\xff\xe1" + struct.pack(">H", len(thumb) + 8) + b"Exif\x00\x00" + thumb
    data = pillow_bytes(gradient(64, 64))
    data = data[:2] + app1 + data[2:] + b"\x00" * 16
    assert _load(tmp_path, data, "a.jpg").pixels.shape == (64, 64)
    cut = data[: data.rindex(b"\xff\xd9")]
    with pytest.raises(CorruptFileError, match="cut short"):
        _load(tmp_path, cut, "b.jpg")


def test_codestream_parsers_refuse_garbage():
    with pytest.raises(codestream.CodestreamError):
        codestream.jpeg_info(b"\xff\xd8\x00\x00")
    with pytest.raises(codestream.CodestreamError):
        codestream.jpeg_info(b"\xff\xd8\xff\xda\x00\x08" + b"\x00" * 10)  # scan before frame
    with pytest.raises(codestream.CodestreamError):
        codestream.j2k_info(b"\xff\x4f\xff\x51\x00")
    info = codestream.jpeg_info(jpeg_lossless_header_only(10, 20))
    assert (info.width, info.height, info.precision, info.complete) == (20, 10, 12, True)
    assert info.decoded_bytes == 10 * 20 * 2


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(
    "name",
    [
        "chest_CR_PA_MONO2_8bit_JPEGbaseline_SIIM.dcm",
        "nonchest_CR_hip_MONO2_10bit_JPEGlossless_RG2_JPLL.dcm",
        "nonchest_CR_hip_MONO2_10bit_JPEGLS-lossless_RG2_JLSL.dcm",
        "chest_CR_MONO1_J2K-lossy_RG1_J2KI.dcm",
    ],
)
def test_real_files_patched_or_cut_are_refused(tmp_path, shared_data, name, monkeypatch):
    src = shared_data / "dicom" / name
    if not src.is_file():
        pytest.skip(f"{name} is not in the shared data")
    data = src.read_bytes()
    assert load_study(src).pixels.size > 0
    with pytest.raises(CorruptFileError, match="cut short"):
        _load(tmp_path, _reencapsulate(data, _half))
    patch = _patch_siz if "J2K" in name else _patch_sof
    bomb = _reencapsulate(data, lambda s: patch(s, 65500, 65500))
    monkeypatch.setattr(dicom_codecs, "pixel_array", _must_not_decode)
    with pytest.raises(ImageTooLargeError, match="65500 × 65500"):
        _load(tmp_path, bomb)


def test_deflated_dicom_that_inflates_past_the_budget_is_refused(tmp_path, monkeypatch):
    from pydicom.filereader import _read_file_meta_info, read_preamble

    ds = dicom_dataset(gradient(top=4095))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    assert _load(tmp_path, buf.getvalue(), "ok.dcm").pixels.shape == (24, 32)  # genuine
    buf.seek(0)
    read_preamble(buf, False)
    _read_file_meta_info(buf)
    head = buf.getvalue()[: buf.tell()]
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = b"".join(packer.compress(bytes(2**20)) for _ in range(80)) + packer.flush()
    assert len(body) < 2**20  # 80 MiB of zeros deflate to well under 1 MiB
    monkeypatch.setattr(pydicom, "dcmread", _must_not_decode)  # refused before pydicom parses
    with pytest.raises(ImageTooLargeError, match="inflates to more than 72 MiB"):
        _load(tmp_path, head + body, "bomb.dcm", max_pixels=1_000_000)
