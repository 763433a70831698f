"""From a config to ready training data: manifest → cache → patient-level splits.

The split is written to ``<run>/splits.csv`` and reused when the run is resumed (a resumed run
must see the same split); it is re-checked for patient leaks every time it is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_viewer.core.errors import TrainingError
from cxr_viewer.core.model.preprocess import InputSpec

from .cache import ImageCache, build_cache
from .config import Config, resolve_path
from .datasets import read_dataset
from .heads import TrainerHead, trainer_head
from .splits import check_no_patient_leak, split_by_patient, split_summary, subsample_by_patient

SPLITS_FILE = "splits.csv"


SKIPPED_FILE = "skipped_files.csv"


@dataclass
class PreparedData:
    """The manifest (with ``split``, ``y`` = class index and ``row`` = cache row), the class
    names, the input spec, the image cache and the listed files that were skipped (missing or
    unreadable: path, reason)."""

    manifest: pd.DataFrame
    class_names: list[str]
    spec: InputSpec
    cache: ImageCache
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame({"path": [], "reason": []}))
    #: the run's head (``model.head``, :mod:`trainer.heads`): it encodes the labels — with
    #: independent findings ``class_names`` are findings, ``y`` codes the finding *set* (for
    #: stratification) and :meth:`targets` gives multi-hot rows
    head: TrainerHead = field(default_factory=lambda: trainer_head("softmax"))

    def targets(self, split: str) -> np.ndarray:
        """Training targets (n, k) float32: one-hot rows, or multi-hot for multi-label."""
        return self.head.targets(self.part(split), self.class_names)

    def fit_labels(self, split: str) -> np.ndarray:
        """What the input pipeline takes for ``split``: class indices, or multi-hot rows."""
        return self.head.fit_labels(self.part(split), self.class_names)

    def part(self, split: str) -> pd.DataFrame:
        return self.manifest[self.manifest["split"] == split]

    def rows(self, split: str) -> np.ndarray:
        return self.part(split)["row"].to_numpy(np.int64)

    def labels(self, split: str) -> np.ndarray:
        return self.part(split)["y"].to_numpy(np.int64)

    def summary(self) -> dict:
        """Data summary for reports and bundle metadata."""
        m = self.manifest
        return {
            "sources": sorted(m["source"].unique().tolist()),
            "views": sorted(v for v in m["view"].unique().tolist() if v),
            "images": int(len(m)),
            "patients": int(m["patient_id"].nunique()),
            "unreadable_images": len(self.cache.failed),
            "missing_images": int((self.skipped["reason"] == "missing").sum()),
            "skipped_files": self.skipped.head(20).to_dict("records"),
            "splits": split_summary(m, self.class_names),
            "split_unit": "patient",
        }


def input_spec_for(cfg: Config) -> InputSpec:
    """The model input spec a config asks for."""
    size = cfg.model.input_size
    return InputSpec(size, size, cfg.model.channels, cfg.preprocessing)


def prepare_data(cfg: Config, run_dir: str | Path, *, progress: bool = True) -> PreparedData:
    """Read the dataset, decode it into the cache, and split it by patient (or reuse the
    run's split)."""
    run_dir = Path(run_dir)
    manifest = read_dataset(cfg.data)
    missing_files = list(manifest.attrs.get("missing_files", []))
    manifest = subsample_by_patient(manifest, cfg.data.max_images, cfg.seed)
    head = trainer_head(cfg.model.head)
    class_names = head.class_names(manifest, cfg.data)
    spec = input_spec_for(cfg)
    cache_dir = resolve_path(cfg.data.cache_dir) if cfg.data.cache_dir else run_dir / "cache"
    cache = build_cache(
        manifest["path"].tolist(), spec, cache_dir, workers=cfg.data.workers, progress=progress
    )
    manifest = manifest.assign(row=np.arange(len(manifest)))
    skipped = pd.DataFrame(
        {
            "path": missing_files + [str(manifest["path"].iloc[i]) for i in sorted(cache.failed)],
            "reason": ["missing"] * len(missing_files)
            + [f"unreadable: {cache.failed[i]}" for i in sorted(cache.failed)],
        }
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    skipped.to_csv(run_dir / SKIPPED_FILE, index=False)
    listed = len(manifest) + len(missing_files)
    if len(skipped) > cfg.data.max_skipped_fraction * listed:
        first = "; ".join(f"{r.path} ({r.reason})" for r in skipped.head(3).itertuples())
        raise TrainingError(
            f"{len(skipped)} of {listed} listed images are missing or unreadable",
            f"that is more than data.max_skipped_fraction = {cfg.data.max_skipped_fraction} "
            f"(all listed in {run_dir / SKIPPED_FILE}); first: {first}",
            "Fix the dataset (or data.root), or raise data.max_skipped_fraction knowingly.",
        )
    manifest = manifest[cache.ok].reset_index(drop=True)
    manifest["y"] = head.codes(manifest["label"], class_names)  # the split stratifies on it

    splits_path = run_dir / SPLITS_FILE
    reused = _reuse_split(manifest, splits_path)
    if reused is not None:
        manifest["split"] = reused
    else:
        manifest["split"] = split_by_patient(
            manifest,
            val_fraction=cfg.split.val_fraction,
            test_fraction=cfg.split.test_fraction,
            seed=cfg.seed,
        )
        run_dir.mkdir(parents=True, exist_ok=True)
        manifest[["path", "label", "patient_id", "view", "source", "split"]].to_csv(
            splits_path, index=False
        )
    check_no_patient_leak(manifest)
    for split in ("train", "val"):
        present = set(manifest.loc[manifest["split"] == split, "label"])
        if len(present) < 2:
            raise TrainingError(
                f"The {split} split has a single class",
                f"it only holds {sorted(present)}; training and model selection need both.",
                "Use more data (data.max_images = 0) or larger split fractions.",
            )
    return PreparedData(manifest, class_names, spec, cache, skipped, head)


def _reuse_split(manifest: pd.DataFrame, path: Path) -> pd.Series | None:
    """The split stored in ``path`` if it covers exactly the manifest's files."""
    if not path.is_file():
        return None
    stored = pd.read_csv(path, dtype=str, keep_default_na=False)
    if set(stored["path"]) != set(manifest["path"]):
        raise TrainingError(
            "The run folder holds a split of different data",
            f"{path} lists other files than the current dataset/config.",
            "Use a new --out folder, or --fresh to discard the old run.",
        )
    return (
        manifest["path"]
        .map(dict(zip(stored["path"], stored["split"], strict=True)))
        .rename("split")
    )
