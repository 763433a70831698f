"""Screenshot of the adult model on an adult Lung Opacity film (``docs/screenshot-adult.png``).

Loads ``resources/adult_bundle``, opens an adult sample film (``resources/adult_samples``, whose
``boxes.csv`` carries the radiologists' boxes: the viewer draws them on every pane by itself),
switches Grad-CAM on and waits for its map; the overlay panel then shows the model card's
localization sentence next to Grad-CAM (how the map lands on radiologists' boxes of held-out
films, against a map that ignores the image) and this film's "peak in box" line::

    QT_QPA_PLATFORM=offscreen python docs/screenshot_adult.py [--film NAME]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: the Lung Opacity film shown (its map lies in both of its boxes)
FILM = "adult-01_lung_opacity__*.jpg"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--film", default=FILM, help="file name (glob) in resources/adult_samples")
    p.add_argument("--out", default=str(ROOT / "docs" / "screenshot-adult.png"))
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cxr-adult-shot-"))
    os.environ["CXR_LENS_SETTINGS"] = str(tmp / "settings.ini")

    from PySide6.QtWidgets import QScrollArea  # noqa: TID251 - drives the GUI itself

    from cxr_viewer.core.paths import resources_dir

    bundle = resources_dir() / "adult_bundle"
    films = sorted((resources_dir() / "adult_samples").glob(args.film))
    if not bundle.is_dir() or not films:
        print(f"screenshot_adult: no {bundle} or no film {args.film}", file=sys.stderr)
        return 2

    app, win = open_window(1500, 900)
    wait = partial(wait_until, app)

    win.load_model(bundle)
    wait(lambda: win.state.model is not None or win.state.model_status == "failed", 300, "model")
    if win.state.model is None:
        print("screenshot_adult: the adult model did not load", file=sys.stderr)
        return 1
    film = films[0].resolve()
    win.open_paths([str(film)])

    def showing_film() -> bool:
        study = win.state.study
        return study is not None and Path(study.path).resolve() == film

    wait(showing_film, 60, "the film")
    wait(lambda: win.state.prediction is not None, 120, "prediction")
    win.state.set_visible("gradcam", True)
    wait(lambda: win.state.overlays["gradcam"].status == "done", 300, "Grad-CAM")
    wait(lambda: bool(win.annotations.agreement_text("gradcam")), 30, "the box agreement")
    controls = win.overlay_panel.controls["gradcam"]
    wait(controls.localization.isVisible, 30, "the localization sentence")
    for _ in range(30):  # let the panes and the panel lay out and repaint
        app.processEvents()
        time.sleep(0.02)
    # the right dock scrolls: bring the whole Grad-CAM section (the localization sentence, this
    # film's "peak in box" line and the verdict) into view, the prediction staying above it
    scroll = win.overlay_panel.parentWidget()
    while scroll is not None and not isinstance(scroll, QScrollArea):
        scroll = scroll.parentWidget()
    if scroll is not None:
        scroll.ensureWidgetVisible(controls, 0, 6)
    for _ in range(10):
        app.processEvents()
        time.sleep(0.02)
    print(f"{film.name}: {win.annotations.checkbox.text()}")
    print(controls.localization.text())
    print(win.annotations.agreement_text("gradcam"))
    # full colour: a 256-colour palette would posterize the map's smooth gradient
    if not win.grab().save(args.out, "PNG"):
        print(f"screenshot_adult: cannot write {args.out}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}")
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
