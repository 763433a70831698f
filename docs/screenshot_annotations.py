"""Screenshot of annotation boxes in the viewer (``docs/screenshot-annotations.png``).

A synthetic phantom with a lesion (``trainer.synth``; never a real patient image) is written to
a temporary folder with a per-study sidecar ``<name>.boxes.csv`` holding the lesion's bounding
box; the viewer opens it, draws the box on every pane and shows Grad-CAM with the trust panel's
"peak in box" line::

    QT_QPA_PLATFORM=offscreen python docs/screenshot_annotations.py [--model BUNDLE]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
from shot_support import open_window, wait_until  # docs/ is the script's sys.path[0]

DOCS = Path(__file__).resolve().parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None)
    p.add_argument("--out", default=str(DOCS / "screenshot-annotations.png"))
    p.add_argument("--seed", type=int, default=4)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cxr-annot-shot-"))
    os.environ["CXR_LENS_SETTINGS"] = str(tmp / "settings.ini")

    from PIL import Image
    from PySide6.QtWidgets import QApplication  # noqa: TID251 - drives the GUI itself

    from cxr_viewer.core.paths import demo_bundle_dir
    from trainer.synth import make_phantoms

    ph = make_phantoms(8, 384, seed=args.seed)
    i = int(np.nonzero(ph.labels == 1)[0][0])
    study = tmp / "phantom-lesion.png"
    Image.fromarray(np.round(ph.images[i] * 255).astype(np.uint8)).save(study)
    rows, cols = np.nonzero(ph.masks[i])
    x0, y0, x1, y1 = cols.min(), rows.min(), cols.max() + 1, rows.max() + 1
    with open(study.with_name(study.stem + ".boxes.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "finding", "x", "y", "w", "h", "image_width", "image_height"])
        w.writerow([study.name, "Lesion (phantom)", x0, y0, x1 - x0, y1 - y0, 384, 384])

    app, win = open_window(1560, 940)
    wait = partial(wait_until, app)

    win.load_model(args.model or demo_bundle_dir())
    wait(lambda: win.state.model is not None or win.state.model_status == "failed", 300, "model")
    win.open_paths([str(study)])
    wait(lambda: win.state.prediction is not None, 120, "prediction")
    win.state.set_visible("gradcam", True)
    win.state.set_opacity("gradcam", 0.5)
    wait(lambda: win.state.overlays["gradcam"].status == "done", 300, "Grad-CAM")
    for _ in range(30):
        app.processEvents()
        time.sleep(0.02)
    print(win.annotations.agreement_text("gradcam"))
    pix = QApplication.primaryScreen().grabWindow(win.winId())
    if pix.isNull() or pix.width() < 100:
        pix = win.grab()
    pix.save(args.out, "PNG")
    with Image.open(args.out) as im:
        im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(
            args.out, optimize=True
        )
    print(f"wrote {args.out}")
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
