"""Screenshots of the real viewer window, one per overlay, for the README.

Run under a virtual X server (the real xcb platform, not offscreen)::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/screenshots.py \
        --study resources/samples/<phantom> [--model resources/demo_bundle]

Writes ``docs/screenshot-<method>.png`` (that overlay alone) and ``docs/screenshot-all.png``.
Use phantoms (resources/samples) only: never real patient images.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent


def _shrink(path: Path, colors: int = 256) -> None:
    """Re-save as an optimised palette PNG (a third of the size; fine for UI screenshots)."""
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", required=True)
    p.add_argument("--model", default=None)
    p.add_argument("--out", default=str(DOCS))
    p.add_argument("--width", type=int, default=1560)
    p.add_argument("--height", type=int, default=940)
    p.add_argument("--lime-samples", type=int, default=1000)
    p.add_argument("--shap-layer", help="SHAP layer to show (default: the deepest offered)")
    args = p.parse_args()
    tmp = tempfile.TemporaryDirectory()  # fresh settings: default layout, nothing remembered
    os.environ["CXR_LENS_SETTINGS"] = str(Path(tmp.name) / "settings.ini")

    from PySide6.QtWidgets import QApplication  # noqa: TID251 - drives the GUI itself

    from cxr_viewer.core.paths import demo_bundle_dir
    from cxr_viewer.gui.app import ensure_app
    from cxr_viewer.gui.main_window import MainWindow
    from cxr_viewer.gui.settings import Settings
    from cxr_viewer.gui.state import METHODS

    app = ensure_app()
    win = MainWindow(Settings(os.environ["CXR_LENS_SETTINGS"]))
    win.resize(args.width, args.height)
    win.show()

    def wait(cond, timeout: float, what: str) -> None:
        end = time.time() + timeout
        while not cond():
            if time.time() > end:
                raise SystemExit(f"timed out waiting for {what}")
            app.processEvents()
            time.sleep(0.01)

    win.load_model(args.model or demo_bundle_dir())
    wait(lambda: win.state.model is not None or win.state.model_status == "failed", 300, "model")
    if win.state.model is None:
        raise SystemExit(f"model failed: {win.state.model_message}")
    win.open_paths([args.study])
    wait(lambda: win.state.prediction is not None, 120, "prediction")
    win.state.set_setting("lime", "num_samples", args.lime_samples)
    shap_layers = win.state.overlays["shap"].layers
    if shap_layers:
        win.state.set_layer("shap", args.shap_layer or shap_layers[-1])
    out = Path(args.out)

    def shoot(name: str) -> None:
        for _ in range(30):
            app.processEvents()
            time.sleep(0.02)
        screen = QApplication.primaryScreen()
        pix = screen.grabWindow(win.winId())
        if pix.isNull() or pix.width() < 100:  # some platforms cannot grab: render instead
            pix = win.grab()
        path = out / f"screenshot-{name}.png"
        pix.save(str(path), "PNG")
        _shrink(path)
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB, {pix.width()}×{pix.height()})")

    for method in METHODS:
        if not win.state.overlays[method].available:
            print(f"{method}: not offered by this model, skipped")
            continue
        for m in METHODS:
            win.state.set_visible(m, m == method)
        win.state.set_opacity(method, 0.6)
        wait(lambda m=method: win.state.overlays[m].status == "done", 900, method)
        shoot(method)
    for m in METHODS:
        win.state.set_visible(m, win.state.overlays[m].available)
        win.state.set_opacity(m, 0.45)
    shoot("all")
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
