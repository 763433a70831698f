"""Screenshot of the prediction panel of a multi-label model, for the README.

Run under a virtual X server (the real xcb platform, not offscreen)::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/screenshot_prediction.py \
        [--model resources/multilabel_bundle]

The study is a synthetic phantom with a nodule and no effusion (made here, never a patient
image), so the panel shows one finding above and one below its threshold.
Writes ``docs/screenshot-multilabel-panel.png`` (the right-hand panel) and
``docs/screenshot-multilabel.png`` (the window, Grad-CAM of the most probable finding).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from shot_support import open_window, wait_until  # docs/ is the script's sys.path[0]

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent


def _phantom_with_nodule(folder: Path, size: int = 512) -> Path:
    """A phantom carrying a nodule but no effusion, written as PNG."""
    import cv2
    import numpy as np

    from trainer.synth import make_multilabel_phantoms

    s = make_multilabel_phantoms(8, size, seed=11)
    i = int(np.flatnonzero((s.labels[:, 0] == 1) & (s.labels[:, 1] == 0))[0])
    path = folder / "phantom_nodule.png"
    cv2.imwrite(str(path), np.rint(s.images[i] * 255).astype(np.uint8))
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "resources" / "multilabel_bundle"))
    p.add_argument("--out", default=str(DOCS))
    args = p.parse_args()
    tmp = tempfile.TemporaryDirectory()
    os.environ["CXR_LENS_SETTINGS"] = str(Path(tmp.name) / "settings.ini")
    sys.path.insert(0, str(ROOT))

    app, win = open_window(1500, 900)
    wait = partial(wait_until, app)

    win.load_model(args.model)
    wait(lambda: win.state.model is not None or win.state.model_status == "failed", 300, "model")
    if win.state.model is None:
        raise SystemExit(f"model failed: {win.state.model_message}")
    win.open_paths([str(_phantom_with_nodule(Path(tmp.name)))])
    wait(lambda: win.state.prediction is not None, 120, "prediction")
    win.state.set_visible("gradcam", True)
    wait(lambda: win.state.overlays["gradcam"].status == "done", 120, "Grad-CAM")
    for _ in range(50):
        app.processEvents()
        time.sleep(0.02)
    out = Path(args.out)
    panel = win.prediction_panel
    panel.grab().save(str(out / "screenshot-multilabel-panel.png"))
    win.grab().save(str(out / "screenshot-multilabel.png"))
    print(panel.headline.text())
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
