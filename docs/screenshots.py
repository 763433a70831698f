"""Screenshots of the real viewer window for the README.

Run under a virtual X server (the real xcb platform, not offscreen)::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/screenshots.py \
        --study resources/samples/<sample> [--model resources/demo_bundle]

Writes ``docs/screenshot-<method>.png`` (the single-method view), ``docs/screenshot-all.png``
(side by side: the original and every map composited), ``docs/screenshot-error.png`` (the
error dialog for a copy of the study cut short) and ``docs/export-example.png`` (File ▸ Export
view as PNG of the grid, every method in its own panel).
Use the repository's samples only: never patient images from elsewhere.

``--fresh-launch`` instead starts the viewer exactly as ``cxr-viewer`` with no arguments and
fresh settings does (``cxr_viewer.gui.app.build``: the samples, the first-launch film, the grid
with Grad-CAM, the window sized by the screen) and writes ``docs/screenshot-grid.png`` (the
README's hero picture; ``--name`` changes the name) once the Grad-CAM map is painted::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/screenshots.py --fresh-launch

(a 1280 × 720 screen, or ``QT_SCALE_FACTOR=1.5`` on 1920 × 1080, shows the smallest window).
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


def _shrink(path: Path) -> None:
    """Re-save as an optimised PNG: full colour, since a palette posterises real films."""
    from PIL import Image

    with Image.open(path) as im:
        rgb = im.convert("RGB")
    rgb.save(path, optimize=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", help="the study to show (required without --fresh-launch)")
    p.add_argument(
        "--fresh-launch",
        action="store_true",
        help="shoot the first launch (no arguments, fresh settings) as screenshot-grid.png",
    )
    p.add_argument("--name", default="grid", help="with --fresh-launch: screenshot-NAME.png")
    p.add_argument("--model", default=None)
    p.add_argument("--out", default=str(DOCS))
    p.add_argument("--width", type=int, default=1560)
    p.add_argument("--height", type=int, default=940)
    p.add_argument("--lime-samples", type=int, default=1000)
    p.add_argument("--shap-layer", help="SHAP layer to show (default: the bundle's default)")
    args = p.parse_args()
    if not args.fresh_launch and not args.study:
        p.error("--study is required (or use --fresh-launch)")
    tmp = tempfile.TemporaryDirectory()  # fresh settings: default layout, nothing remembered
    os.environ["CXR_LENS_SETTINGS"] = str(Path(tmp.name) / "settings.ini")
    if args.fresh_launch:
        return fresh_launch(args)

    from PySide6.QtWidgets import QApplication  # noqa: TID251 - drives the GUI itself

    from cxr_viewer.core.paths import demo_bundle_dir
    from cxr_viewer.gui.state import METHODS

    app, win = open_window(args.width, args.height)
    wait = partial(wait_until, app)

    win.load_model(args.model or demo_bundle_dir())
    wait(lambda: win.state.model is not None or win.state.model_status == "failed", 300, "model")
    if win.state.model is None:
        raise SystemExit(f"model failed: {win.state.model_message}")
    win.open_paths([args.study])
    wait(lambda: win.state.prediction is not None, 120, "prediction")
    win.state.set_setting("lime", "num_samples", args.lime_samples)
    if args.shap_layer:
        win.state.set_layer("shap", args.shap_layer)
    out = Path(args.out)

    def shoot(name: str, whole_screen: bool = False) -> None:
        for _ in range(30):
            app.processEvents()
            time.sleep(0.02)
        screen = QApplication.primaryScreen()
        pix = screen.grabWindow(0 if whole_screen else win.winId())
        if pix.isNull() or pix.width() < 100:  # some platforms cannot grab: render instead
            pix = win.grab()
        path = out / f"screenshot-{name}.png"
        pix.save(str(path), "PNG")
        _shrink(path)
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB, {pix.width()}×{pix.height()})")

    available = [m for m in METHODS if win.state.overlays[m].available]
    for m in available:
        win.state.set_visible(m, True)
    for m in available:
        wait(lambda m=m: win.state.overlays[m].status == "done", 900, m)
    win.state.set_layout("single")
    for method in available:
        win.state.set_focus_method(method)
        shoot(method)
    win.state.set_layout("side")
    shoot("all")
    win.state.set_layout("grid")

    export = out / "export-example.png"
    win.export("png", export)
    wait(lambda: export.exists() and not win.controller.io_worker.busy, 120, "export")
    _shrink(export)
    print(f"wrote {export}")

    # the error dialog: the same file cut short, as a failed transfer leaves it
    source = Path(args.study)
    if source.is_file():
        cut = Path(tmp.name) / f"truncated-{source.name}"
        data = source.read_bytes()
        cut.write_bytes(data[: len(data) // 3])
        win.open_paths([str(cut)])
        wait(lambda: bool(win.reporter.open_dialogs), 60, "the error dialog")
        dialog = win.reporter.open_dialogs[-1]
        dialog.move(win.geometry().center() - dialog.rect().center())
        shoot("error", whole_screen=True)
        dialog.accept()
    win.close()
    return 0


def fresh_launch(args: argparse.Namespace) -> int:
    """The first launch as a user sees it, shot once Grad-CAM is painted (the window only)."""
    from PySide6.QtCore import QEvent, QObject  # noqa: TID251 - drives the GUI itself
    from PySide6.QtWidgets import QApplication  # noqa: TID251

    from cxr_viewer.gui.app import build

    app, win = build(argparse.Namespace(paths=[], model=args.model, no_model=False))
    pane = win.panes["gradcam"]
    painted = [False]

    class Painted(QObject):
        def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt API
            item = pane.overlay_item("gradcam")
            if event.type() == QEvent.Type.Paint and item is not None and item.isVisible():
                painted[0] = not item.pixmap().isNull()
            return False

    spy = Painted()
    pane.viewport().installEventFilter(spy)
    end = time.time() + 600
    while not painted[0] or win.controller.model_worker.busy:
        if time.time() > end:
            raise SystemExit("timed out waiting for the Grad-CAM map to be painted")
        if win.state.model_status == "failed":
            raise SystemExit(f"model failed: {win.state.model_message}")
        app.processEvents()
        time.sleep(0.01)
    for _ in range(50):  # the status bar's "ready" message and the last repaints
        app.processEvents()
        time.sleep(0.02)
    pix = QApplication.primaryScreen().grabWindow(win.winId())
    if pix.isNull() or pix.width() < 100:  # some platforms cannot grab: render instead
        pix = win.grab()
    path = Path(args.out) / f"screenshot-{args.name}.png"
    pix.save(str(path), "PNG")
    _shrink(path)
    print(
        f"wrote {path} ({path.stat().st_size // 1024} KiB, {pix.width()}×{pix.height()} px; "
        f"window {win.width()}×{win.height()} at device-pixel ratio {win.devicePixelRatio():g}; "
        f"study {win.state.study.path.name if win.state.study else None})"
    )
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
