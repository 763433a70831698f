"""Pick the viewer's real sample studies from the demo run's *test* split.

The paediatric pneumonia set (Kermany et al. 2018) is CC BY 4.0, which allows shipping a few of
its films with attribution. This picks them reproducibly (seeded, never by looking at the
model's predictions: no cherry-picking) from the patients the demo model never saw — one film
per patient, NORMAL and PNEUMONIA (bacterial and viral) — copies them unchanged into the samples
folder and writes ``ATTRIBUTION.md`` beside them.

    python -m trainer.real_samples --run runs/pneumonia [--out resources/samples]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: how many films of each (label, subtype)
PICK = {("NORMAL", "normal"): 3, ("PNEUMONIA", "bacteria"): 2, ("PNEUMONIA", "virus"): 2}
PREFIX = "real-"

ATTRIBUTION = """# Sample studies

## Real films (`{prefix}*.jpeg`)

{count} paediatric chest X-rays from **Kermany, Daniel; Zhang, Kang; Goldbaum, Michael (2018),
"Labeled Optical Coherence Tomography (OCT) and Chest X-Ray Images for Classification",
Mendeley Data, v2, doi:10.17632/rscbjbr9sj.2**, published under the
**Creative Commons Attribution 4.0 International licence (CC BY 4.0,
https://creativecommons.org/licenses/by/4.0/)**. Paper: Kermany et al., *Identifying Medical
Diagnoses and Treatable Diseases by Image-Based Deep Learning*, Cell 172(5), 2018.

The files are the 224×224 JPEG re-encodings of that dataset (greyscale stored as RGB), copied
unchanged apart from their names: `{prefix}NN_<label>_<subtype>__<original file name>`. They were
picked at random (seed {seed}) from the **test split** of the demo model's training run — children
the model never saw — one film per patient, without looking at the model's predictions. The
dataset's labels: NORMAL, or PNEUMONIA with a bacterial or viral subtype.

| file | label | subtype | patient | sha256 |
|---|---|---|---|---|
{rows}

## Synthetic phantoms (`phantom_*`)

Drawn by CXR Lens itself (`trainer.synth`, written by `python -m trainer.sample_studies`): no
patient, no real radiograph. The self-test opens them to exercise the JPEG 2000 and JPEG-LS
DICOM decoders and the PNG reader. The demo model's predictions on them mean nothing.
"""


def pick_samples(splits: pd.DataFrame, labels: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Rows of ``splits`` (the run's ``splits.csv``) to ship: test split, one per patient."""
    test = splits[splits["split"] == "test"].copy()
    test["file"] = test["path"].map(lambda p: Path(p).name)
    sub = labels.assign(file=labels["filename"].map(lambda f: Path(f).name))
    test = test.merge(sub[["file", "subtype"]], on="file", how="left")
    rng = np.random.default_rng(seed)
    picked: list[dict[Hashable, Any]] = []  # chosen rows of ``test`` (to_dict records)
    for (label, subtype), n in PICK.items():
        pool = test[(test["label"] == label) & (test["subtype"] == subtype)]
        pool = pool.sort_values("file").drop_duplicates("patient_id")
        pool = pool[~pool["patient_id"].isin([t["patient_id"] for t in picked])]
        idx = rng.choice(len(pool), size=min(n, len(pool)), replace=False)
        picked.extend(pool.iloc[sorted(idx)].to_dict("records"))
    return pd.DataFrame(picked)


def write_samples(run: Path, data_root: Path, out: Path, seed: int = 7) -> list[Path]:
    splits = pd.read_csv(run / "splits.csv", dtype=str, keep_default_na=False)
    labels = pd.read_csv(data_root / "labels.csv", dtype=str, keep_default_na=False)
    chosen = pick_samples(splits, labels, seed)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"{PREFIX}*"):
        old.unlink()
    written, rows = [], []
    for i, r in enumerate(chosen.to_dict("records"), start=1):
        name = f"{PREFIX}{i:02d}_{r['label'].lower()}_{r['subtype']}__{r['file']}"
        dest = out / name
        shutil.copyfile(r["path"], dest)
        digest = hashlib.sha256(dest.read_bytes()).hexdigest()
        rows.append(
            f"| `{name}` | {r['label']} | {r['subtype']} | {r['patient_id']} | {digest[:16]}… |"
        )
        written.append(dest)
    (out / "ATTRIBUTION.md").write_text(
        ATTRIBUTION.format(prefix=PREFIX, count=len(written), seed=seed, rows="\n".join(rows)),
        encoding="utf-8",
    )
    return written


def main(argv: list[str] | None = None) -> int:
    from cxr_viewer.core.paths import samples_dir, shared_data_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="the demo run folder (holds splits.csv)")
    parser.add_argument("--data", default="", help="pediatric-pneumonia folder (labels.csv)")
    parser.add_argument("--out", default=str(samples_dir()))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    shared = shared_data_dir()
    data = Path(args.data) if args.data else (shared / "pediatric-pneumonia" if shared else None)
    if data is None or not (data / "labels.csv").is_file():
        parser.error("the pediatric-pneumonia folder was not found: pass --data")
    for path in write_samples(Path(args.run), data, Path(args.out), args.seed):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
