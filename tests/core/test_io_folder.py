"""Folders: which files are candidates, natural order, errors collected, progress, cancel."""

from __future__ import annotations

import numpy as np
import pytest
from test_io_samples import acr_nema_bytes, dicom_bytes, dicom_dataset, gradient, png_bytes

from cxr_viewer.core.errors import Cancelled, CorruptFileError, StudyLoadError
from cxr_viewer.core.io import FolderResult, list_study_files, load_folder
from cxr_viewer.core.progress import CancelToken


@pytest.fixture()
def folder(tmp_path):
    png = png_bytes(gradient())
    dcm = dicom_bytes(dicom_dataset(gradient(top=4095)))
    files = {
        "img10.png": png,
        "img2.png": png,
        "IMG1.PNG": png,
        "sub/series/0003": dcm,  # DICOM without an extension: found by its DICM prefix
        "sub/acr_old": acr_nema_bytes(dicom_dataset(gradient(top=1023))),  # ACR-NEMA, no ext
        "sub/broken.png": png[:-40],  # an image by name, unreadable
        "labels.csv": b"filename,label\nimg2.png,normal\n",
        "notes.txt": b"nothing to see",
        "DICOMDIR": dcm,
        ".hidden.png": png,
        ".cache/inner.png": png,
    }
    for name, data in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return tmp_path


def test_candidates_are_images_by_name_or_content_in_natural_order(folder):
    names = [p.relative_to(folder).as_posix() for p in list_study_files(folder)]
    assert names == [
        "IMG1.PNG",
        "img2.png",
        "img10.png",
        "sub/acr_old",
        "sub/broken.png",
        "sub/series/0003",
    ]


def test_a_file_lists_itself(folder):
    assert list_study_files(folder / "notes.txt") == [folder / "notes.txt"]


def test_missing_path_is_a_study_load_error(tmp_path):
    with pytest.raises(StudyLoadError, match="no such file"):
        list_study_files(tmp_path / "absent")


def test_load_folder_keeps_going_past_bad_files(folder):
    calls = []
    result = load_folder(folder, progress=lambda f, m: calls.append((f, m)))
    assert isinstance(result, FolderResult)
    assert [s.path.name for s in result.studies] == [
        "IMG1.PNG",
        "img2.png",
        "img10.png",
        "acr_old",
        "0003",
    ]
    assert [(p.name, type(e)) for p, e in result.errors] == [("broken.png", CorruptFileError)]
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and fractions[0] == 0.0
    np.testing.assert_array_equal(result.studies[4].pixels, gradient(top=4095))


def test_load_folder_of_one_file(folder):
    result = load_folder(folder / "img2.png")
    assert len(result.studies) == 1 and not result.errors


def test_cancel_stops_before_the_next_file(folder):
    token = CancelToken()
    seen = []

    def progress(fraction, message):
        seen.append(message)
        if len(seen) == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        load_folder(folder, progress=progress, cancel=token)
    assert len(seen) == 2
