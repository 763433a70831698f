"""How much of a map's mass *can* lie inside the boxes when the map lives on an n×n grid?

The box masks themselves, average-pooled to the grid and upsampled as the viewer upsamples
maps (:func:`cxr_viewer.core.io.resize.resize_map`), scored with ``energy_inside`` against the
full-resolution masks: the ceiling of a CAM at that resolution. Run on the *training* boxes:

    python benchmarks/adult_grid_ceiling.py runs/adult_opacity/localization/train_boxes.csv
"""

from __future__ import annotations

import sys

import numpy as np

from cxr_viewer.core.evaluate import localize as loc
from cxr_viewer.core.io.resize import resize_map

SIDE = 224


def main(path: str) -> int:
    groups = loc.group_boxes(loc.read_boxes(path))
    for n in (7, 10, 14):
        k = SIDE // n
        energies = []
        for group in groups.values():
            mask = loc.box_mask(group, (SIDE, SIDE))
            small = mask[: k * n, : k * n].astype(np.float32).reshape(n, k, n, k).mean(axis=(1, 3))
            energies.append(loc.energy_inside(resize_map(small, SIDE, SIDE), mask))
        print(f"{n}x{n} grid: energy inside {np.mean(energies):.3f} ({len(groups)} films)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
