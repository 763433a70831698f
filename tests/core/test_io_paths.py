"""Awkward paths: too-long names, very deep folders, FIFOs, dangling and folder links.

Each gives a clear StudyLoadError (or a skipped entry in a folder scan), never a traceback,
a RecursionError or a read that blocks forever on a FIFO.
"""

from __future__ import annotations

import json
import os
import sys

import pytest
from test_io_samples import gradient, png_bytes

from cxr_viewer.cli import main
from cxr_viewer.core.errors import StudyLoadError
from cxr_viewer.core.io import list_study_files, load_study, scan_study_files

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file types")


def _deep(root, depth: int) -> None:
    """``root/d/d/.../d/img.png``, made through directory descriptors (no path limit)."""
    root.mkdir()
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        out = os.open("img.png", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, png_bytes(gradient()))
        os.close(out)
    finally:
        os.close(fd)


def _remove_deep(root, depth: int) -> None:
    """Remove what :func:`_deep` made, bottom up through descriptors: pytest's own clean-up of
    old temporary folders (``shutil.rmtree``, recursive) would overflow Python's stack on it."""
    fds = [os.open(root, os.O_RDONLY)]
    try:
        for _ in range(depth):
            fds.append(os.open("d", os.O_RDONLY, dir_fd=fds[-1]))
        os.unlink("img.png", dir_fd=fds[-1])
        for parent in reversed(fds[:-1]):
            os.rmdir("d", dir_fd=parent)
    finally:
        for fd in fds:
            os.close(fd)
    root.rmdir()


def test_name_longer_than_255_bytes_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / ("é" * 200 + ".png")  # 400 bytes in UTF-8
    with pytest.raises(StudyLoadError, match="too long"):
        load_study(path)
    with pytest.raises(StudyLoadError, match="too long"):
        list_study_files(path)
    assert main(["info", str(path)]) == 2
    record = json.loads(capsys.readouterr().out)
    assert "too long" in record["error"]


def test_folders_nested_1500_deep_are_walked_without_recursion(tmp_path):
    _deep(tmp_path / "deep", 1500)
    try:
        listing = scan_study_files(tmp_path / "deep")
        assert len(listing.files) == 1 and listing.files[0].name == "img.png"
        assert len(listing.files[0].parts) > 1500
        assert listing.skipped == []
    finally:
        _remove_deep(tmp_path / "deep", 1500)
    assert not (tmp_path / "deep").exists()


@posix_only
def test_fifo_is_named_and_never_opened(tmp_path):
    fifo = tmp_path / "scan.png"
    os.mkfifo(fifo)
    with pytest.raises(StudyLoadError, match="FIFO"):
        load_study(fifo)  # opening it would block: the reader must not
    with pytest.raises(StudyLoadError, match="FIFO"):
        list_study_files(fifo)


@posix_only
def test_dangling_link_says_where_it_points(tmp_path):
    link = tmp_path / "x.dcm"
    os.symlink(tmp_path / "gone.dcm", link)
    with pytest.raises(StudyLoadError, match="symbolic link to .*gone.dcm, which does not exist"):
        load_study(link)


@posix_only
def test_folder_scan_reports_every_entry_it_cannot_use(tmp_path):
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    (root / "a.png").write_bytes(png_bytes(gradient()))
    (root / "sub" / "b.png").write_bytes(png_bytes(gradient()))
    (root / "notes.txt").write_text("not an image, not reported")
    os.mkfifo(root / "pipe")
    os.symlink(root / "nowhere", root / "dangling.png")
    (tmp_path / "other").mkdir()
    os.symlink(tmp_path / "other", root / "linked")
    os.symlink(root / "a.png", root / "alias.png")  # a link to a file is read like the file
    listing = scan_study_files(root)
    assert [p.relative_to(root).as_posix() for p in listing.files] == [
        "a.png",
        "alias.png",
        "sub/b.png",
    ]
    reasons = {p.name: why for p, why in listing.skipped}
    assert set(reasons) == {"pipe", "dangling.png", "linked"}
    assert "FIFO" in reasons["pipe"] and "does not exist" in reasons["dangling.png"]
    assert "not followed" in reasons["linked"]


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root reads all")
def test_unlistable_subfolder_is_reported(tmp_path):
    root = tmp_path / "in"
    (root / "locked").mkdir(parents=True)
    (root / "a.png").write_bytes(png_bytes(gradient()))
    os.chmod(root / "locked", 0)
    try:
        listing = scan_study_files(root)
    finally:
        os.chmod(root / "locked", 0o755)
    assert [p.name for p in listing.files] == ["a.png"]
    assert "cannot be listed" in dict((p.name, w) for p, w in listing.skipped)["locked"]
