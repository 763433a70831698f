"""Image formats as plug-ins (issue 28): the registry drives reading, scanning, messages, the
Open dialog's filter and the trainer's accepted suffixes.

A toy format (".pgmx": a magic line, the size, then raw 8-bit grey pixels) is registered from
here — no file outside the tests changes — read through the normal study-loading path
(:func:`cxr_viewer.core.io.load_study`, folder scanning and loading, the trainer's class
folders, the viewer's display pipeline), and unregistered again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cxr_viewer.core.errors import MissingCodecError, StudyLoadError, UnsupportedFormatError
from cxr_viewer.core.io import (
    ImageFormat,
    format_names,
    image_suffixes,
    list_study_files,
    load_folder,
    load_study,
    register_format,
    unregister_format,
)
from cxr_viewer.core.io.display import display_image, full_range_window
from cxr_viewer.core.io.formats import (
    file_dialog_filter,
    format_for_suffix,
    format_of,
    registered_formats,
)
from cxr_viewer.core.io.study import Study

MAGIC = b"PGMX\n"


def read_pgmx(path: Path, head: bytes, frame: int, max_pixels: int) -> Study:
    """The toy reader: ``PGMX\\n<columns> <rows>\\n`` then rows × columns bytes."""
    data = path.read_bytes()
    header, _, body = data[len(MAGIC) :].partition(b"\n")
    try:
        columns, rows = (int(v) for v in header.split())
    except ValueError as exc:
        raise UnsupportedFormatError(f"Cannot open {path.name}", "bad PGMX header", "") from exc
    if rows * columns > max_pixels:
        raise StudyLoadError(f"Cannot open {path.name}", "too large", "")
    if frame != 0 or len(body) != rows * columns:
        raise StudyLoadError(f"Cannot open {path.name}", "truncated or no such frame", "")
    pixels = np.frombuffer(body, np.uint8).reshape(rows, columns).astype(np.float32)
    return Study(path=path, format="pgmx", pixels=pixels, auto_window=full_range_window(8))


TOY = ImageFormat(
    "PGMX",
    (".pgmx",),
    lambda head: head.startswith(MAGIC),
    read_pgmx,
    description="toy raw grey format (tests only)",
)


def write_pgmx(path: Path, pixels: np.ndarray) -> Path:
    rows, columns = pixels.shape
    path.write_bytes(MAGIC + f"{columns} {rows}\n".encode() + pixels.astype(np.uint8).tobytes())
    return path


@pytest.fixture
def toy_format() -> Iterator[ImageFormat]:
    register_format(TOY)
    try:
        yield TOY
    finally:
        unregister_format(TOY.name)


def test_the_built_in_formats() -> None:
    names = [f.name for f in registered_formats()]
    assert names[:3] == ["PNG", "JPEG", "DICOM"]
    assert format_names() == "PNG, JPEG or DICOM"
    assert {".png", ".jpg", ".jpeg", ".dcm", ".dicom"} <= image_suffixes()
    assert ".bmp" not in image_suffixes() and ".tif" not in image_suffixes()
    assert format_of(b"\x89PNG\r\n\x1a\n" + bytes(124)).name == "PNG"
    assert format_of(bytes(128) + b"DICM").name == "DICOM"
    assert format_of(b"hello world") is None
    assert format_for_suffix(".DCM").name == "DICOM"
    assert all(f.why_unavailable() is None for f in registered_formats())


def test_a_toy_format_goes_through_the_normal_study_loading_path(
    toy_format: ImageFormat, tmp_path: Path
) -> None:
    pixels = (np.arange(12 * 10) % 256).reshape(12, 10)
    # named .bin: the format is told from the content, not the name
    study = load_study(write_pgmx(tmp_path / "film.bin", pixels))
    assert study.format == "pgmx" and study.pixels.shape == (12, 10)
    np.testing.assert_array_equal(study.pixels, pixels)
    shown = display_image(study)
    assert shown.shape == (12, 10) and 0.0 <= shown.min() <= shown.max() <= 1.0

    # folders: found by suffix, read with the others
    folder = tmp_path / "films"
    folder.mkdir()
    write_pgmx(folder / "a.pgmx", pixels)
    write_pgmx(folder / "b.PGMX", pixels[::-1])
    (folder / "notes.txt").write_text("not an image")
    assert [p.name for p in list_study_files(folder)] == ["a.pgmx", "b.PGMX"]
    result = load_folder(folder)
    assert len(result.studies) == 2 and not result.errors

    # messages, the Open dialog's filter, the trainer's accepted suffixes
    assert format_names() == "PNG, JPEG, DICOM or PGMX"
    assert "*.pgmx *.PGMX" in file_dialog_filter()
    assert ".pgmx" in image_suffixes()
    with pytest.raises(UnsupportedFormatError, match="PNG, JPEG, DICOM or PGMX"):
        load_study(_text_file(tmp_path))

    from trainer.datasets import read_class_folders

    data = tmp_path / "data"
    for label in ("normal", "lesion"):
        (data / label).mkdir(parents=True)
        write_pgmx(data / label / f"{label}1.pgmx", pixels)
    manifest = read_class_folders(data)
    assert sorted(Path(p).name for p in manifest["path"]) == ["lesion1.pgmx", "normal1.pgmx"]


def test_unregistering_removes_it_everywhere(tmp_path: Path) -> None:
    register_format(TOY)
    unregister_format("PGMX")
    assert ".pgmx" not in image_suffixes()
    assert format_names() == "PNG, JPEG or DICOM"
    assert "pgmx" not in file_dialog_filter()
    with pytest.raises(UnsupportedFormatError, match="not a PNG, JPEG or DICOM file"):
        load_study(write_pgmx(tmp_path / "film.pgmx", np.zeros((4, 4))))


def test_registration_refuses_clashes(toy_format: ImageFormat) -> None:
    with pytest.raises(ValueError, match="registered already"):
        register_format(toy_format)
    clash = ImageFormat("OTHER", (".png",), lambda head: False, read_pgmx)
    with pytest.raises(ValueError, match="PNG's already"):
        register_format(clash)
    with pytest.raises(ValueError, match="write it as"):
        register_format(ImageFormat("UPPER", (".XYZ",), lambda head: False, read_pgmx))
    assert [f.name for f in registered_formats()][-1] == "PGMX"


def test_a_format_whose_package_is_missing_says_so(tmp_path: Path) -> None:
    needy = ImageFormat(
        "NEEDY",
        (".needy",),
        lambda head: head.startswith(b"NEEDY"),
        read_pgmx,
        requires=("cxr_lens_no_such_package",),
    )
    register_format(needy)
    try:
        assert needy.why_unavailable() == (
            "reading NEEDY needs the Python package(s) cxr_lens_no_such_package"
        )
        # not offered where files are chosen or scanned, not named in messages
        assert ".needy" not in image_suffixes() and "NEEDY" not in format_names()
        path = tmp_path / "x.needy"
        path.write_bytes(b"NEEDY" + bytes(16))
        with pytest.raises(MissingCodecError, match="cxr_lens_no_such_package"):
            load_study(path)
    finally:
        unregister_format("NEEDY")


def _text_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    return path
