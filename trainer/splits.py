"""Patient-level, label-stratified train/validation/test splits and the leak check.

One patient often has several images (follow-up films, AP and PA); splitting by image lets the
model meet a test patient in training and inflates every test figure (the fault of the seeds'
scripts). Splits here are made with scikit-learn's :class:`~sklearn.model_selection.StratifiedGroupKFold`
(groups = patients, stratified on labels): the test set is one of ``round(1 / test_fraction)``
folds, the validation set one of ``round((1 - test_fraction) / val_fraction)`` folds of the rest,
so fractions are approximate for small data. The first fold (in seeded order) whose test and
validation sets contain every class is taken.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxr_viewer.core.errors import TrainingError

SPLITS = ("train", "val", "test")


def _one_fold(
    labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int, n_classes: int
) -> np.ndarray:
    """Indices of one held-out fold covering every class (or the first fold if none does)."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(np.unique(groups))
    n_splits = max(2, int(round(1.0 / fraction)))
    if n_groups < n_splits:
        raise TrainingError(
            "Too few patients to split",
            f"{n_groups} patients cannot form {n_splits} patient-level folds.",
            "Use more data or larger split fractions.",
        )
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    folds = [held for _, held in cv.split(np.zeros(len(labels)), labels, groups)]
    for held in folds:
        if len(np.unique(labels[held])) == n_classes:
            return held
    return folds[0]  # n_splits >= 2 folds always come back


def split_by_patient(
    manifest: pd.DataFrame,
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> pd.Series:
    """A ``split`` column (``train``/``val``/``test``) for ``manifest``, by patient.

    Every image of a patient lands in the same split; each split's label mix follows the whole
    set's as closely as patient groups allow.
    """
    if manifest.empty:
        raise TrainingError("Cannot split an empty manifest")
    labels = manifest["label"].astype(str).to_numpy()
    groups = manifest["patient_id"].astype(str).to_numpy()
    n_classes = len(np.unique(labels))
    split = np.full(len(manifest), "train", dtype=object)
    test_idx = _one_fold(labels, groups, test_fraction, seed, n_classes)
    split[test_idx] = "test"
    rest = np.flatnonzero(split == "train")
    val_rel = _one_fold(
        labels[rest], groups[rest], val_fraction / (1.0 - test_fraction), seed + 1, n_classes
    )
    split[rest[val_rel]] = "val"
    out = pd.Series(split, index=manifest.index, name="split")
    check_no_patient_leak(manifest.assign(split=out))
    return out


def check_no_patient_leak(manifest: pd.DataFrame) -> None:
    """Raise :class:`TrainingError` if any patient has images in more than one split."""
    per_patient = manifest.groupby("patient_id")["split"].nunique()
    leaked = per_patient[per_patient > 1]
    if len(leaked):
        examples = ", ".join(map(str, leaked.index[:5]))
        raise TrainingError(
            "Patients appear in more than one split",
            f"{len(leaked)} patients leak across train/val/test (e.g. {examples}); test figures "
            "would be inflated.",
            "Split by patient (trainer.splits.split_by_patient); do not edit splits.csv by hand.",
        )


def subsample_by_patient(manifest: pd.DataFrame, max_images: int, seed: int) -> pd.DataFrame:
    """At most ``max_images`` images, whole patients only, keeping the label mix.

    Patients are taken in seeded random order within each label (a patient's label is its most
    frequent one) until that label's share of ``max_images`` is reached.
    """
    if max_images <= 0 or len(manifest) <= max_images:
        return manifest
    rng = np.random.default_rng(seed)
    patient_label = manifest.groupby("patient_id")["label"].agg(lambda s: s.value_counts().index[0])
    counts = manifest.groupby("patient_id").size()
    share = manifest["label"].value_counts(normalize=True)
    keep: list[str] = []
    for label, frac in share.items():
        pids = patient_label[patient_label == label].index.to_numpy().copy()
        rng.shuffle(pids)
        budget, used = max(1, int(round(frac * max_images))), 0
        for pid in pids:
            if used >= budget:
                break
            keep.append(pid)
            used += int(counts[pid])
    return manifest[manifest["patient_id"].isin(keep)].reset_index(drop=True)


def split_summary(manifest: pd.DataFrame, class_names: list[str]) -> dict:
    """Images per split and class, and patients per split (for reports and bundle metadata)."""
    out: dict = {}
    for name in SPLITS:
        part = manifest[manifest["split"] == name]
        out[name] = {
            "images": int(len(part)),
            "patients": int(part["patient_id"].nunique()),
            # a multi-label image ("a|b") counts for each of its findings
            "per_class": {
                c: int(part["label"].astype(str).str.split("|").map(lambda s, c=c: c in s).sum())
                for c in class_names
            },
        }
    return out
