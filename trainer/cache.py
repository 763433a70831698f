"""Decode every image once into a cache of model-size display images.

Each file goes through the viewer's own path — :func:`cxr_viewer.core.io.load_study` then
:func:`cxr_viewer.core.io.display.display_image` and :func:`cxr_viewer.core.model.preprocess.resize_for_model`
(the first half of :func:`~cxr_viewer.core.model.preprocess.study_to_input`) — in a thread pool, and
the [0, 1] results are stored as one float16 ``.npy`` array (n, height, width) without pickle.
float16 keeps 11 significant bits, enough for 12-bit detectors after windowing. The second half,
:func:`~cxr_viewer.core.model.preprocess.normalize`, runs per batch in the input pipeline.

The cache file name is a hash of the file list (path, size, modification time) and the size,
so a changed dataset or input size never reuses a stale cache; a finished cache is renamed into
place atomically, so an interrupted build never leaves a half-written one.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxr_viewer.core.errors import CxrError, TrainingError
from cxr_viewer.core.io.formats import format_names
from cxr_viewer.core.model.preprocess import InputSpec, resize_for_model

CACHE_VERSION = 1


@dataclass
class ImageCache:
    """The cached images and the rows that could not be read."""

    path: Path
    images: np.ndarray  # float16 (n, h, w), memory-mapped; failed rows are all zero
    failed: dict[int, str] = field(default_factory=dict)  # row → error message

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of rows that decoded."""
        mask = np.ones(len(self.images), dtype=bool)
        mask[list(self.failed)] = False
        return mask


def _key(paths: list[str], spec: InputSpec) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}:{spec.height}x{spec.width}".encode())
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}|missing\n".encode())
    return h.hexdigest()[:20]


def decode_image(path: str, spec: InputSpec) -> np.ndarray:
    """One file → its default display image resized to the model, float32 [0, 1] (h, w)."""
    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.io.display import display_image

    return resize_for_model(display_image(load_study(path)), spec)


def build_cache(
    paths: list[str],
    spec: InputSpec,
    cache_dir: str | Path,
    *,
    workers: int = 2,
    progress: bool = True,
) -> ImageCache:
    """Decode ``paths`` (in parallel) into a float16 cache, or reuse an existing one.

    Unreadable files (any :class:`~cxr_viewer.core.errors.CxrError` from the loader) are
    reported in ``failed`` rather than aborting the build.
    """
    if not paths:
        raise TrainingError("No images to cache", "the manifest is empty.")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = _key(paths, spec)
    final = cache_dir / f"images_{key}_{spec.height}x{spec.width}.npy"
    failed_file = final.with_suffix(".failed.tsv")
    if final.is_file():
        images = np.load(final, mmap_mode="r", allow_pickle=False)
        if images.shape == (len(paths), spec.height, spec.width):
            return ImageCache(final, images, _read_failed(failed_file))

    partial = final.with_suffix(".partial.npy")
    out = np.lib.format.open_memmap(
        partial, mode="w+", dtype=np.float16, shape=(len(paths), spec.height, spec.width)
    )
    failed: dict[int, str] = {}

    def work(i: int) -> tuple[int, np.ndarray | None, str]:
        try:
            return i, decode_image(paths[i], spec), ""
        except CxrError as exc:
            return i, None, str(exc).replace("\n", " ")
        except (OSError, ValueError) as exc:
            return i, None, f"{type(exc).__name__}: {exc}"

    from tqdm import tqdm

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        it = pool.map(work, range(len(paths)))
        for i, img, err in tqdm(
            it, total=len(paths), desc="decoding images", unit="img", disable=not progress
        ):
            if img is None:
                failed[i] = err
                out[i] = 0
            else:
                out[i] = img.astype(np.float16)
    out.flush()
    del out
    if len(failed) == len(paths):
        partial.unlink(missing_ok=True)
        first = next(iter(failed.values()))
        raise TrainingError(
            "No image could be read",
            f"all {len(paths)} files failed; the first: {first}",
            f"Check data.root and that the files are {format_names()}.",
        )
    _write_failed(failed_file, failed, paths)
    partial.replace(final)
    return ImageCache(final, np.load(final, mmap_mode="r", allow_pickle=False), failed)


def _write_failed(path: Path, failed: dict[int, str], paths: list[str]) -> None:
    lines = [f"{i}\t{paths[i]}\t{msg}" for i, msg in sorted(failed.items())]
    path.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")


def _read_failed(path: Path) -> dict[int, str]:
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t", 2)
        if len(parts) == 3:
            out[int(parts[0])] = parts[2]
    return out
