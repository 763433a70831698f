"""DICOM reader: modality LUT, VOI windows/LUTs, inversion, frames, syntaxes, bad files.

Files are built in the test with pydicom (see test_io_samples), so each case is one property
of the reader; the real-world files are covered in tests/integration/test_shared_data_io.py.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import convert_color_space
from pydicom.pixels.decoders.base import Decoder
from pydicom.sequence import Sequence
from pydicom.uid import JPEG2000Lossless
from test_io_samples import (
    acr_nema_bytes,
    dicom_bytes,
    dicom_dataset,
    gradient,
    j2k_dicom_bytes,
    jpeg_dicom_bytes,
    no_pixels_dicom_bytes,
    png_bytes,
    rle_dicom_bytes,
)

from cxr_viewer.core.errors import (
    CorruptFileError,
    ImageTooLargeError,
    MissingCodecError,
    NoPixelDataError,
    StudyLoadError,
    UnsupportedFormatError,
)
from cxr_viewer.core.io import dicom_codecs, load_study
from cxr_viewer.core.io.display import display_image


def _load(tmp_path, data, name="x.dcm", **kw):
    path = tmp_path / name
    path.write_bytes(data)
    return load_study(path, **kw)


def _lut_item(descriptor, data, explanation="", vr="US"):
    item = Dataset()
    item.add_new(0x00283002, "US", list(descriptor))  # LUT Descriptor
    # LUT Data: a list of US values, or OW bytes (both occur; PS3.3 C.11.1.1)
    value = np.asarray(data, "<u2").tobytes() if vr == "OW" else list(data)
    item.add_new(0x00283006, vr, value)
    if explanation:
        item.LUTExplanation = explanation
    return item


def test_native_12bit_keeps_stored_values_and_all_windows(tmp_path):
    img = gradient(top=4095)
    ds = dicom_dataset(
        img,
        WindowCenter=[2048, 600],
        WindowWidth=[4096, 800],
        WindowCenterWidthExplanation=["FULL", "BONE"],
        VOILUTFunction="LINEAR_EXACT",
        PixelSpacing=[0.2, 0.25],
        ViewPosition="PA",
        StudyDate="20240102",
    )
    study = _load(tmp_path, dicom_bytes(ds))
    np.testing.assert_array_equal(study.pixels, img)
    assert [(w.center, w.width, w.function, w.name) for w in study.windows] == [
        (2048.0, 4096.0, "LINEAR_EXACT", "FULL"),
        (600.0, 800.0, "LINEAR_EXACT", "BONE"),
    ]
    assert study.pixel_spacing == (0.2, 0.25)
    assert study.transfer_syntax == pydicom.uid.ExplicitVRLittleEndian
    assert study.bits_stored == 12 and study.photometric == "MONOCHROME2" and not study.invert
    assert study.metadata["PatientName"] == "Test^Patient"
    assert study.metadata["ViewPosition"] == "PA" and study.metadata["StudyDate"] == "20240102"
    # LINEAR_EXACT (PS3.3 C.11.2.1.3.2) with centre 2048, width 4096: y = x / 4096
    np.testing.assert_allclose(display_image(study), img / 4096.0, atol=1e-6)


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_voi_lut_function_is_read(tmp_path, function):
    ds = dicom_dataset(gradient(top=4095), WindowCenter=100, WindowWidth=50)
    ds.VOILUTFunction = function
    assert _load(tmp_path, dicom_bytes(ds)).windows[0].function == function


def test_invalid_windows_are_skipped_and_unknown_function_is_linear(tmp_path):
    ds = dicom_dataset(
        gradient(top=4095), WindowCenter=[100, 200], WindowWidth=[0, 50], VOILUTFunction="ODD"
    )
    study = _load(tmp_path, dicom_bytes(ds))
    assert [(w.center, w.width, w.function) for w in study.windows] == [(200.0, 50.0, "LINEAR")]


def test_rescale_gives_modality_units_for_signed_data(tmp_path):
    stored = (gradient(top=4000) - 2000).astype(np.int16)
    ds = dicom_dataset(stored, bits_stored=16, signed=True, RescaleSlope=2, RescaleIntercept=-1024)
    study = _load(tmp_path, dicom_bytes(ds))
    np.testing.assert_array_equal(study.pixels, stored * 2.0 - 1024)
    assert study.auto_window.name == "auto"  # no window in the file: percentiles


def test_modality_lut_sequence_is_applied_once(tmp_path):
    stored = gradient(top=255)
    lut = (np.arange(256) * 10 + 5).tolist()
    ds = dicom_dataset(stored, bits_stored=8)
    ds.ModalityLUTSequence = Sequence([_lut_item([256, 0, 16], lut, vr="OW")])
    study = _load(tmp_path, dicom_bytes(ds))
    np.testing.assert_array_equal(study.pixels, np.asarray(lut)[stored.astype(int)])
    # the 8-bit full-range shortcut must not apply once a modality LUT changed the values
    assert study.auto_window.name == "auto"


def test_voi_lut_sequence_is_recorded_and_used_for_display(tmp_path):
    stored = gradient(top=255)
    data = (4095 - np.arange(256) * 16).tolist()  # a decreasing 12-bit LUT
    ds = dicom_dataset(stored, bits_stored=8)
    ds.VOILUTSequence = Sequence([_lut_item([256, 0, 12], data, "REVERSED")])
    study = _load(tmp_path, dicom_bytes(ds))
    (lut,) = study.voi_luts
    assert (lut.first_mapped, lut.bits, lut.name) == (0, 12, "REVERSED")
    np.testing.assert_array_equal(lut.data, data)
    expected = np.asarray(data)[stored.astype(int)] / 4095.0
    np.testing.assert_allclose(display_image(study), expected, atol=1e-6)


def test_voi_lut_bits_follow_the_data_when_the_descriptor_understates_them(tmp_path):
    ds = dicom_dataset(gradient(top=255), bits_stored=8)
    ds.VOILUTSequence = Sequence([_lut_item([256, 0, 8], (np.arange(256) * 16).tolist())])
    (lut,) = _load(tmp_path, dicom_bytes(ds)).voi_luts
    assert lut.bits == 12


def test_monochrome1_inverts_once_even_with_presentation_lut_shape_inverse(tmp_path):
    img = gradient(top=4095)
    win = dict(WindowCenter=2048, WindowWidth=4096)
    mono2 = _load(tmp_path, dicom_bytes(dicom_dataset(img, **win)), "m2.dcm")
    mono1 = _load(tmp_path, dicom_bytes(dicom_dataset(img, photometric="MONOCHROME1", **win)))
    both = _load(
        tmp_path,
        dicom_bytes(
            dicom_dataset(img, photometric="MONOCHROME1", PresentationLUTShape="INVERSE", **win)
        ),
        "both.dcm",
    )
    shape_only = _load(
        tmp_path, dicom_bytes(dicom_dataset(img, PresentationLUTShape="INVERSE", **win)), "s.dcm"
    )
    # pydicom decodes only: the stored values are not inverted or windowed
    np.testing.assert_array_equal(mono1.pixels, img)
    assert mono1.invert and both.invert and shape_only.invert and not mono2.invert
    for study in (mono1, both, shape_only):
        np.testing.assert_allclose(display_image(study), 1.0 - display_image(mono2), atol=1e-6)


def test_8bit_greyscale_without_window_is_shown_over_its_full_range(tmp_path):
    img = gradient(top=200)  # the display must not stretch it like a percentile window would
    study = _load(tmp_path, dicom_bytes(dicom_dataset(img, bits_stored=8)))
    assert (study.auto_window.low, study.auto_window.high) == (0.0, 255.0)
    np.testing.assert_allclose(display_image(study), img / 255.0, atol=1e-6)


def test_12bit_without_window_gets_a_percentile_window(tmp_path):
    img = gradient(64, 64, top=1000)
    study = _load(tmp_path, dicom_bytes(dicom_dataset(img)))
    assert study.auto_window.name == "auto" and study.auto_window.high <= 1000
    shown = display_image(study)
    assert shown.min() == 0.0 and shown.max() == 1.0


def test_multi_frame_selects_frames_and_refuses_out_of_range(tmp_path):
    frames = np.stack([gradient(top=4095) // (k + 1) for k in range(3)])
    data = dicom_bytes(dicom_dataset(frames, frames=3))
    for k in range(3):
        study = _load(tmp_path, data, frame=k)
        assert (study.frame, study.n_frames) == (k, 3)
        np.testing.assert_array_equal(study.pixels, frames[k])
    with pytest.raises(StudyLoadError, match="3 frame"):
        _load(tmp_path, data, frame=3)


def test_enhanced_functional_groups_give_per_frame_window_and_shared_rescale(tmp_path):
    frames = np.stack([gradient(top=4095)] * 2)
    ds = dicom_dataset(frames, frames=2)
    shared = Dataset()
    pvt = Dataset()
    pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = 1, -100, "US"
    measures = Dataset()
    measures.PixelSpacing = [0.5, 0.5]
    shared.PixelValueTransformationSequence = Sequence([pvt])
    shared.PixelMeasuresSequence = Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for center in (300, 700):
        voi = Dataset()
        voi.WindowCenter, voi.WindowWidth = center, 200
        item = Dataset()
        item.FrameVOILUTSequence = Sequence([voi])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    data = dicom_bytes(ds)
    for k, center in enumerate((300, 700)):
        study = _load(tmp_path, data, frame=k)
        assert [(w.center, w.width) for w in study.windows] == [(center, 200)]
        np.testing.assert_array_equal(study.pixels, frames[k] - 100.0)
        assert study.pixel_spacing == (0.5, 0.5)


def test_rgb_and_ybr_become_luminance(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(16, 16, 3)).astype(np.uint8)
    expected = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    study = _load(tmp_path, dicom_bytes(dicom_dataset(rgb, bits_stored=8, photometric="RGB")))
    assert study.is_color and not study.windows and not study.invert
    np.testing.assert_allclose(study.pixels, expected, atol=1e-3)
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    study = _load(
        tmp_path, dicom_bytes(dicom_dataset(ybr, bits_stored=8, photometric="YBR_FULL")), "y.dcm"
    )
    assert study.is_color and study.photometric == "YBR_FULL"
    assert np.abs(study.pixels - expected).max() <= 2.0  # YBR round trip rounding


def test_palette_colour_goes_through_pydicom_lut(tmp_path):
    idx = gradient(top=255)
    ds = dicom_dataset(idx, bits_stored=8, photometric="PALETTE COLOR")
    ramp = (np.arange(256) * 257).astype(np.uint16)
    for colour in ("Red", "Green", "Blue"):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", ramp.tobytes())
    study = _load(tmp_path, dicom_bytes(ds))
    np.testing.assert_allclose(study.pixels, idx * 257.0, atol=1e-2)
    assert not study.is_color  # a grey palette


@pytest.mark.parametrize("builder", [rle_dicom_bytes, j2k_dicom_bytes], ids=["rle", "j2k"])
def test_lossless_compressed_syntaxes_decode_exactly(tmp_path, builder):
    img = gradient(64, 64, top=4095)
    study = _load(tmp_path, builder(img))
    np.testing.assert_array_equal(study.pixels, img)


def test_jpeg_baseline_dicom_decodes(tmp_path):
    img = gradient(64, 64)
    study = _load(tmp_path, jpeg_dicom_bytes(img))
    assert study.transfer_syntax == pydicom.uid.JPEGBaseline8Bit
    assert np.abs(study.pixels - img).mean() < 2.0


def test_acr_nema_without_file_meta_loads(tmp_path):
    img = gradient(top=1023)
    ds = dicom_dataset(img, bits_stored=10, photometric="MONOCHROME1", WindowCenter=512)
    ds.WindowWidth = 1024
    study = _load(tmp_path, acr_nema_bytes(ds), name="IMG0001")  # no extension, like many
    np.testing.assert_array_equal(study.pixels, img)
    assert study.transfer_syntax == pydicom.uid.ImplicitVRLittleEndian
    assert study.invert and study.windows[0].center == 512


def test_acr_nema_with_missing_image_attributes_gets_defaults(tmp_path):
    ds = dicom_dataset(gradient(top=255), bits_stored=8)
    for keyword in ("SamplesPerPixel", "PhotometricInterpretation", "PixelRepresentation"):
        delattr(ds, keyword)
    study = _load(tmp_path, acr_nema_bytes(ds))
    assert study.photometric == "MONOCHROME2"
    np.testing.assert_array_equal(study.pixels, gradient(top=255))


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the garbage it parses
def test_bare_binary_that_is_not_dicom_is_unsupported(tmp_path):
    # starts like a group-0008 element but is garbage afterwards
    data = b"\x08\x00\x05\x00\x04\x00\x00\x00ABCD" + bytes(range(256)) * 4
    with pytest.raises(UnsupportedFormatError):
        _load(tmp_path, data, name="blob.bin")


def test_png_named_dcm_loads_as_png(tmp_path):
    assert _load(tmp_path, png_bytes(gradient())).format == "png"


def test_no_pixel_data(tmp_path):
    with pytest.raises(NoPixelDataError, match="Basic Text SR"):
        _load(tmp_path, no_pixels_dicom_bytes())


def test_image_header_without_pixel_data_is_a_cut_file_not_a_report(tmp_path):
    ds = dicom_dataset(gradient(top=4095))
    data = dicom_bytes(ds)
    cut = data[: data.index(b"\xe0\x7f\x10\x00")]  # ends right before the Pixel Data element
    with pytest.raises(CorruptFileError, match="cut short"):
        _load(tmp_path, cut)


def test_header_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    ds = dicom_dataset(gradient(top=4095))
    ds.Rows = ds.Columns = 60000
    monkeypatch.setattr(dicom_codecs, "pixel_array", _must_not_decode)
    with pytest.raises(ImageTooLargeError, match="3,600,000,000 pixels"):
        _load(tmp_path, dicom_bytes(ds))


def _must_not_decode(*args, **kwargs):
    raise AssertionError("decoded although the header is over the limit")


@pytest.mark.parametrize("cut", [0.3, 0.7, 0.98])
def test_truncated_dicom_is_corrupt(tmp_path, cut):
    data = dicom_bytes(dicom_dataset(gradient(top=4095)))
    with pytest.raises(CorruptFileError) as info:
        _load(tmp_path, data[: int(len(data) * cut)])
    assert info.value.__cause__ is not None or "size" in str(info.value)


def test_missing_codec_names_the_pip_package(tmp_path, monkeypatch):
    # a decoder with no plugins is what pydicom reports when pylibjpeg-openjpeg is absent
    monkeypatch.setattr(dicom_codecs, "get_decoder", lambda uid: Decoder(JPEG2000Lossless))
    with pytest.raises(MissingCodecError, match="pip install pylibjpeg pylibjpeg-openjpeg"):
        _load(tmp_path, j2k_dicom_bytes(gradient(64, 64, top=4095)))


def test_transfer_syntax_without_any_decoder_is_a_missing_codec(tmp_path):
    data = bytearray(j2k_dicom_bytes(gradient(64, 64, top=4095)))
    ds = pydicom.dcmread(__import__("io").BytesIO(bytes(data)))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 video
    with pytest.raises(MissingCodecError, match="MPEG2"):
        _load(tmp_path, dicom_bytes(ds))


def test_zero_pixel_spacing_is_ignored_and_imager_spacing_is_the_fallback(tmp_path):
    ds = dicom_dataset(gradient(), PixelSpacing=[0, 0], ImagerPixelSpacing=[0.15, 0.15])
    assert _load(tmp_path, dicom_bytes(ds)).pixel_spacing == (0.15, 0.15)
    ds = dicom_dataset(gradient(), PixelSpacing=[0, 0])
    assert _load(tmp_path, dicom_bytes(ds)).pixel_spacing is None


def test_rle_decoder_panic_becomes_a_corrupt_file_error(tmp_path):
    # A damaged RLE segment offset makes pylibjpeg-rle (Rust) panic with a pyo3
    # PanicException, a BaseException that pydicom does not catch.
    data = bytearray(rle_dicom_bytes(gradient(top=4095)))
    bot = data.index(b"\xfe\xff\x00\xe0", data.index(b"\xe0\x7f\x10\x00"))
    data[bot + 16 + 12] = 0  # third word of the RLE header: offset of segment 2
    with pytest.raises(CorruptFileError, match="RLE"):
        _load(tmp_path, bytes(data))
