"""Pick and export the adult sample films: 8 RSNA films of the adult model's *test* split with
their radiologist boxes, ready for the viewer's sample studies.

    python -m trainer.adult_samples --run runs/adult_opacity --out resources/adult_samples

Seeded random choice (seed 7), without looking at the model's predictions: 5 ``Lung Opacity``
films (they have boxes), 2 ``No Lung Opacity / Not Normal`` and 1 ``Normal``, one film per
patient. Writes the JPEGs unchanged (512 px, as in ``rsna-pneumonia/``) named
``adult-NN_<class>__<original name>``, ``labels.csv`` (file, RSNA label, class, view, age, sex,
patient, sha256), ``boxes.csv`` (the films' boxes in the columns of ``rsna-pneumonia/boxes.csv``,
pixels of the 512 image) and ``ATTRIBUTION.md`` (NIH ChestX-ray14 images, RSNA labels and boxes).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np

PICK = (("Lung Opacity", 5), ("No Lung Opacity / Not Normal", 2), ("Normal", 1))
MAX_FILMS = 8

ATTRIBUTION = """# Adult sample films (RSNA Pneumonia Detection Challenge)

{n} adult frontal chest X-rays with their radiologist boxes, for the adult demo model
(`resources/adult_bundle`, Lung Opacity vs rest).

- **Images**: NIH Clinical Center, *ChestX-ray14* (Wang et al., *ChestX-ray8: Hospital-scale Chest
  X-ray Database and Benchmarks on Weakly-Supervised Classification and Localization of Common
  Thorax Diseases*, CVPR 2017). The NIH Clinical Center provides the images without restriction;
  please acknowledge the NIH Clinical Center as the data provider and cite the paper.
- **Labels and boxes**: the **RSNA Pneumonia Detection Challenge** (2018), annotations by
  radiologists of the Radiological Society of North America (RSNA) and the Society of Thoracic
  Radiology (STR): Shih et al., *Augmenting the National Institutes of Health Chest Radiograph
  Dataset with Expert Annotations of Possible Pneumonia*, Radiology: Artificial Intelligence
  1(1), 2019. RSNA challenge terms: research and educational use, with this citation.

The files are the 512 px 8-bit JPEG downscales of the team's shared copy
(`../shared/data/rsna-pneumonia/`), copied unchanged apart from their names
(`adult-NN_<class>__<original file name>`). They were picked at random (seed {seed}) from the
**test split** of the adult model's training run (`{run}`) — patients the model never saw —
without looking at the model's predictions: 5 `Lung Opacity`, 2 `No Lung Opacity / Not Normal`,
1 `Normal`. `boxes.csv` holds their radiologist boxes (pixels of the 512 image, top-left
origin; the columns of `cxr-viewer localize`'s box CSV), `labels.csv` their labels.

Research and demonstration only, not for diagnosis.

| file | RSNA label | view | age | sex | boxes |
|---|---|---|---|---|---|
{rows}
"""


def export_samples(run: Path, shared: Path, out: Path, seed: int = 7) -> list[dict]:
    src = shared / "rsna-pneumonia"
    labels = list(csv.DictReader(open(src / "labels.csv", newline="", encoding="utf-8")))
    boxes = list(csv.DictReader(open(src / "boxes.csv", newline="", encoding="utf-8")))
    splits = {
        Path(r["path"]).name: r["split"]
        for r in csv.DictReader(open(run / "splits.csv", newline="", encoding="utf-8"))
    }
    rng = np.random.default_rng(seed)
    chosen: list[dict] = []
    for label, k in PICK:
        pool = sorted(
            (
                r
                for r in labels
                if r["label"] == label and splits.get(Path(r["filename"]).name) == "test"
            ),
            key=lambda r: r["filename"],
        )
        chosen += [pool[i] for i in sorted(rng.choice(len(pool), size=k, replace=False))]
    assert len(chosen) <= MAX_FILMS
    out.mkdir(parents=True, exist_ok=True)
    rows, box_rows, table = [], [], []
    for i, r in enumerate(chosen, 1):
        cls = "lung_opacity" if r["label"] == "Lung Opacity" else "no_opacity"
        name = f"adult-{i:02d}_{cls}__{Path(r['filename']).name}"
        shutil.copy2(src / r["filename"], out / name)
        digest = hashlib.sha256((out / name).read_bytes()).hexdigest()
        assert digest == r["sha256"], name
        mine = [b for b in boxes if b["filename"] == r["filename"]]
        box_rows += [{**b, "filename": name} for b in mine]
        rows.append(
            {"filename": name, "label": r["label"], "class": cls, "view": r["view"],
             "age": r["age"], "sex": r["sex"], "patient_id": r["patient_id"], "sha256": digest}
        )  # fmt: skip
        table.append(
            f"| `{name}` | {r['label']} | {r['view']} | {r['age']} | {r['sex']} | {len(mine)} |"
        )
    with open(out / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(out / "boxes.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(boxes[0]))
        w.writeheader()
        w.writerows(box_rows)
    (out / "ATTRIBUTION.md").write_text(
        ATTRIBUTION.format(n=len(rows), seed=seed, run=run.as_posix(), rows="\n".join(table)),
        encoding="utf-8",
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    from cxr_viewer.core.paths import shared_data_dir

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="the adult training run folder (its splits.csv)")
    p.add_argument("--out", default="resources/adult_samples")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    shared = shared_data_dir()
    if shared is None:
        print("../shared/data not found (set CXR_SHARED_DATA)", file=sys.stderr)
        return 2
    rows = export_samples(Path(args.run), shared, Path(args.out), args.seed)
    print(f"wrote {len(rows)} films to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
