"""PNG/JPEG reader: bit depths, channel reduction, EXIF orientation, sniffing, bad files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps
from test_io_samples import exif_orientation, gradient, pillow_bytes, png_bytes

from cxr_viewer.core.errors import (
    CorruptFileError,
    ImageTooLargeError,
    StudyLoadError,
    UnsupportedFormatError,
)
from cxr_viewer.core.io import load_study
from cxr_viewer.core.io.display import display_image


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_8bit_grey_png_keeps_values_and_uses_full_range(tmp_path):
    img = gradient()
    study = load_study(_write(tmp_path, "a.png", png_bytes(img)))
    assert study.format == "png" and study.bits_stored == 8 and not study.is_color
    np.testing.assert_array_equal(study.pixels, img)
    assert study.pixels.dtype == np.float32
    assert (study.auto_window.low, study.auto_window.high) == (0.0, 255.0)
    np.testing.assert_allclose(display_image(study), img / 255.0, atol=1e-6)


def test_16bit_grey_png_keeps_16_bits(tmp_path):
    img = gradient(top=65535)
    study = load_study(_write(tmp_path, "a.png", png_bytes(img, 16)))
    assert study.bits_stored == 16
    np.testing.assert_array_equal(study.pixels, img)
    np.testing.assert_allclose(display_image(study), img / 65535.0, atol=1e-6)


@pytest.mark.parametrize("channels", [2, 3, 4])
@pytest.mark.parametrize("depth", [8, 16])
def test_grey_stored_as_colour_is_reduced_losslessly(tmp_path, channels, depth):
    img = gradient(top=2**depth - 1)
    planes = [img] * min(channels, 3) if channels > 2 else [img]
    if channels in (2, 4):
        planes.append(np.full_like(img, 2**depth - 1))  # opaque alpha
    study = load_study(_write(tmp_path, "a.png", png_bytes(np.dstack(planes), depth)))
    assert study.bits_stored == depth and not study.is_color
    assert study.photometric == "MONOCHROME2"
    np.testing.assert_array_equal(study.pixels, img)


def test_true_colour_becomes_bt601_luminance(tmp_path):
    img = gradient()
    rgb = np.dstack([img, 255 - img, np.full_like(img, 40)])
    study = load_study(_write(tmp_path, "c.png", png_bytes(rgb)))
    assert study.is_color and study.photometric == "RGB"
    expected = rgb @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(study.pixels, expected, atol=1e-3)
    # the same as Pillow's own RGB → L conversion, up to its integer rounding
    pil = np.asarray(Image.fromarray(rgb.astype(np.uint8)).convert("L"), dtype=np.float32)
    assert np.abs(study.pixels - pil).max() <= 1.0


def test_a_coloured_arrow_does_not_make_a_radiograph_colour(tmp_path):
    img = gradient(64, 64)
    rgb = np.dstack([img, img, img])
    rgb[10:12, 10:30] = (255, 0, 0)  # 40 of 4096 pixels, < 1 %
    study = load_study(_write(tmp_path, "arrow.png", png_bytes(rgb)))
    assert not study.is_color
    np.testing.assert_array_equal(study.pixels[20:], img[20:])


def test_palette_png_is_read(tmp_path):
    img = gradient().astype(np.uint8)
    data = pillow_bytes(Image.fromarray(img).convert("P"), "PNG")
    study = load_study(_write(tmp_path, "p.png", data))
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float32)
    np.testing.assert_array_equal(study.pixels, expected)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_jpeg_reads_close_to_the_source(tmp_path, mode):
    img = gradient(64, 64)
    src = img if mode == "L" else np.dstack([img] * 3)
    study = load_study(_write(tmp_path, "a.jpg", pillow_bytes(src, quality=95)))
    assert study.format == "jpeg" and study.bits_stored == 8 and not study.is_color
    assert np.abs(study.pixels - img).mean() < 2.0


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow_exif_transpose(tmp_path, orientation):
    img = gradient(20, 30)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = pillow_bytes(img, quality=100, exif=exif.tobytes())
    study = load_study(_write(tmp_path, "o.jpg", data))
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))), np.float32)
    np.testing.assert_array_equal(study.pixels, expected)
    assert study.pixels.shape == ((20, 30) if orientation <= 4 else (30, 20))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_of_16bit_colour_png_matches_pillow(tmp_path, orientation):
    # OpenCV decodes this one (Pillow would drop to 8 bits); the turn must match Pillow's.
    img = gradient(20, 30, top=65535)
    exif = exif_orientation(orientation)
    study = load_study(_write(tmp_path, "o.png", png_bytes(np.dstack([img] * 3), 16, exif=exif)))
    grey16 = Image.open(io.BytesIO(png_bytes(img, 16, exif=exif)))
    expected = np.asarray(ImageOps.exif_transpose(grey16), np.float32)
    np.testing.assert_array_equal(study.pixels, expected)


def test_format_comes_from_content_not_name(tmp_path):
    img = gradient()
    study = load_study(_write(tmp_path, "really_a_png.dcm", png_bytes(img)))
    assert study.format == "png"
    np.testing.assert_array_equal(study.pixels, img)
    assert load_study(_write(tmp_path, "noext", pillow_bytes(img))).format == "jpeg"


def test_text_named_png_is_unsupported(tmp_path):
    path = _write(tmp_path, "notes.png", b"patient,label\n1,normal\n")
    with pytest.raises(UnsupportedFormatError, match="named .png.*text"):
        load_study(path)


def test_other_image_formats_are_named_in_the_error(tmp_path):
    path = _write(tmp_path, "scan.tif", pillow_bytes(gradient(), "TIFF"))
    with pytest.raises(UnsupportedFormatError, match="TIFF"):
        load_study(path)


def test_empty_file_is_corrupt(tmp_path):
    with pytest.raises(CorruptFileError, match="empty"):
        load_study(_write(tmp_path, "empty.png", b""))


@pytest.mark.parametrize(
    "data",
    [
        png_bytes(gradient(64, 64))[:-40],
        pillow_bytes(gradient(64, 64))[:300],
        png_bytes(np.dstack([gradient(64, 64, 65535)] * 3), 16)[:-30],
    ],
    ids=["png", "jpeg", "png16-colour"],
)
def test_truncated_files_are_corrupt_with_cause(tmp_path, data):
    with pytest.raises(CorruptFileError) as info:
        load_study(_write(tmp_path, "cut.img", data))
    assert "truncated" in str(info.value) or "corrupt" in str(info.value)


def test_decoder_exception_is_chained(tmp_path):
    # chunk structure intact (so the structural check passes), compressed data garbage
    data = bytearray(png_bytes(gradient(64, 64)))
    idat = data.index(b"IDAT") + 4
    data[idat + 2 : idat + 40] = bytes(range(38))
    with pytest.raises(CorruptFileError) as info:
        load_study(_write(tmp_path, "bad.png", bytes(data)))
    assert info.value.__cause__ is not None


def _bomb_png(width: int, height: int) -> bytes:
    # A real header claiming a huge image, followed by a few bytes of "data".
    ok = png_bytes(gradient(2, 2))
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return ok[:8] + chunk + ok[33:]


@pytest.mark.parametrize("size", [(9000, 9000), (60000, 60000)])
def test_decompression_bomb_is_refused_from_the_header(tmp_path, size):
    with pytest.raises(ImageTooLargeError, match="pixels"):
        load_study(_write(tmp_path, "bomb.png", _bomb_png(*size)))


def test_max_pixels_is_applied(tmp_path):
    path = _write(tmp_path, "a.png", png_bytes(gradient(24, 32)))
    with pytest.raises(ImageTooLargeError, match="768 pixels"):
        load_study(path, max_pixels=700)
    assert load_study(path, max_pixels=768).rows == 24


def test_frame_other_than_zero_is_refused_for_png(tmp_path):
    with pytest.raises(StudyLoadError, match="one frame"):
        load_study(_write(tmp_path, "a.png", png_bytes(gradient())), frame=1)


def test_missing_file_and_folder_give_study_load_errors(tmp_path):
    with pytest.raises(StudyLoadError, match="does not exist"):
        load_study(tmp_path / "nope.png")
    with pytest.raises(StudyLoadError, match="folder"):
        load_study(tmp_path)


def test_16bit_colour_png_with_a_huge_chunk_length_is_refused_quickly(tmp_path):
    # OpenCV spends tens of seconds on a chunk that claims ~4 GB; the reader checks first.
    data = bytearray(png_bytes(np.dstack([gradient(top=65535)] * 3), 16))
    data[33] = 0xFB  # high byte of the IDAT chunk length
    with pytest.raises(CorruptFileError, match="chunk"):
        load_study(_write(tmp_path, "huge-chunk.png", bytes(data)))
