"""The SHAP background set of an imported model: the user's images, or synthetic phantoms.

Expected gradients (Erion et al. 2021; ``shap.GradientExplainer``, Lundberg & Lee 2017)
attribute f(x) − E f(background), so the background should look like the data the model saw.
Images the user points to are read with :func:`cxr_viewer.core.io.load_study` and turned into
model inputs by the one preprocessing path (:func:`~cxr_viewer.core.model.preprocess.study_to_input`);
without them, chest-X-ray phantoms (:func:`cxr_viewer.testdata.phantoms.make_phantoms`) stand in, and the
bundle metadata says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cxr_viewer.core.errors import BundleError, InvalidInputError, StudyLoadError
from cxr_viewer.core.model.preprocess import InputSpec, image01_to_input, study_to_input
from cxr_viewer.core.progress import CancelToken

PHANTOM_SOURCE = "synthetic phantoms"
PHANTOM_SEED = 0


def make_background(
    spec: InputSpec,
    background_dir: str | Path | None,
    n: int = 16,
    cancel: CancelToken | None = None,
) -> tuple[np.ndarray, str]:
    """``n`` (or fewer) background inputs (n, h, w, c) float32, and a note saying where from."""
    if n < 1:
        raise BundleError("The SHAP background needs at least one image", f"got n={n}.")
    if background_dir is None:
        return phantom_background(spec, n), PHANTOM_SOURCE
    return folder_background(spec, Path(background_dir), n, cancel)


def phantom_background(spec: InputSpec, n: int) -> np.ndarray:
    """``n`` phantoms (half with a lesion) through the shared preprocessing."""
    from cxr_viewer.testdata.phantoms import make_phantoms

    size = max(spec.height, spec.width, 16)
    phantoms = make_phantoms(n, size, seed=PHANTOM_SEED)
    return np.stack([image01_to_input(img, spec) for img in phantoms.images]).astype(np.float32)


def folder_background(
    spec: InputSpec, folder: Path, n: int, cancel: CancelToken | None = None
) -> tuple[np.ndarray, str]:
    """Up to ``n`` images from ``folder`` (natural order, evenly spaced when there are more)."""
    from cxr_viewer.core.io import format_names, list_study_files, load_study

    if not folder.is_dir():
        raise BundleError(
            f"No background image folder at {folder}",
            "the path is not a folder.",
            f"Choose a folder of chest X-rays ({format_names()}), or leave it out to use "
            "synthetic phantoms.",
        )
    try:
        files = list_study_files(folder)
    except StudyLoadError as exc:
        raise BundleError(f"Cannot list {folder}", exc.why, exc.hint) from exc
    if len(files) > 4 * n:  # read a spread of the folder, not only its first names
        files = [files[i] for i in np.linspace(0, len(files) - 1, 4 * n).astype(int)]
    inputs: list[np.ndarray] = []
    skipped = 0
    for path in files:
        if len(inputs) >= n:
            break
        if cancel is not None:
            cancel.raise_if_cancelled()
        try:
            inputs.append(study_to_input(load_study(path), spec))
        except (StudyLoadError, InvalidInputError):  # unreadable, or blank / not finite
            skipped += 1
    if not inputs:
        raise BundleError(
            f"No readable images in {folder.name}",
            f"none of its {len(files)} files could be read as a {format_names()} image.",
            "Choose a folder of chest X-rays, or leave it out to use synthetic phantoms.",
        )
    note = f"{len(inputs)} images from {folder.name}"
    if skipped:
        note += f" ({skipped} unreadable files skipped)"
    return np.stack(inputs).astype(np.float32), note
