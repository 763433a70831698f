"""Export: the composite view as PNG and a one-page PDF report (matplotlib, no Qt).

Both run on the I/O worker from a :class:`Snapshot` of the state taken in the GUI thread, so
the export sees exactly what was on screen when the user asked, and the GUI never waits.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cxr_viewer.core.display import display_image
from cxr_viewer.core.errors import CxrError
from cxr_viewer.core.overlay import colorize, composite
from cxr_viewer.core.study import Study, Window

from .results import downsample

REPORT_MAX_SIDE = 1024


@dataclass
class LayerSnapshot:
    method: str
    label: str
    signed: bool
    colormap: str
    opacity: float
    visible: bool
    values: np.ndarray  # full-size map
    vmax: float
    layer: str | None
    settings: dict[str, Any]
    runtime_s: float
    trust: dict[str, float] = field(default_factory=dict)


@dataclass
class Snapshot:
    """What the viewer shows, frozen for export."""

    study: Study
    window: Window | None
    invert: bool
    layers: list[LayerSnapshot]
    class_names: list[str]
    probabilities: list[float] | None
    predicted: str | None
    target_class: str | None
    model_name: str
    model_version: str
    intended_use: str
    device: str
    hide_patient: bool


def composite_image(snap: Snapshot, max_side: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8: the display image with the visible overlays at their opacities."""
    base = display_image(snap.study, window=snap.window, invert=snap.invert)
    if max_side is not None:
        base = downsample(base, max_side)
    layers = []
    for ly in snap.layers:
        if not ly.visible or ly.opacity <= 0:
            continue
        values = ly.values
        if values.shape != base.shape:
            values = cv2.resize(
                values.astype(np.float32), base.shape[::-1], interpolation=cv2.INTER_LINEAR
            )
        rgba = colorize(values, signed=ly.signed, colormap=ly.colormap, vmax=ly.vmax)
        layers.append((rgba, ly.opacity))
    return composite(base, layers)


def save_png(snap: Snapshot, path: str | Path) -> Path:
    """Write the full-size composite to ``path`` (PNG)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        path = path.with_suffix(".png")
    rgb = composite_image(snap)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise CxrError(
            f"Cannot write {path.name}",
            "OpenCV could not write the file.",
            "Check that the folder exists and is writable.",
        )
    return path


#: the settings a reader needs to reproduce a map (the report has room for these, not all)
REPORTED_SETTINGS = (
    "variant",
    "num_samples",
    "samples_used",
    "converged",
    "segmentation",
    "n_segments",
    "nsamples",
    "max_background",
    "sampling",
    "seed",
)


def _settings_text(ly: LayerSnapshot) -> str:
    parts = []
    if ly.layer:
        parts.append(f"layer {ly.layer}")
    parts += [f"{k} {ly.settings[k]}" for k in REPORTED_SETTINGS if k in ly.settings]
    parts.append(f"{ly.runtime_s:.1f} s")
    return ", ".join(parts)


def save_pdf(snap: Snapshot, path: str | Path) -> Path:
    """Write a one-page A4 report: original, overlays, probabilities, settings, model version."""
    from matplotlib.figure import Figure

    path = Path(path)
    if path.suffix.lower() != ".pdf":
        path = path.with_suffix(".pdf")
    base = downsample(
        display_image(snap.study, window=snap.window, invert=snap.invert), REPORT_MAX_SIDE
    )
    shown = [ly for ly in snap.layers]
    n_img = 1 + max(1, len(shown))
    fig = Figure(figsize=(8.27, 11.69))  # A4 portrait, inches
    fig.suptitle("CXR Lens report", fontsize=15, fontweight="bold", y=0.975)
    name = "(hidden)" if snap.hide_patient else snap.study.path.name
    header = (
        f"Study: {name}    Size: {snap.study.columns} × {snap.study.rows}    "
        f"Created: {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}\n"
        f"Model: {snap.model_name} (version {snap.model_version or '?'}) on {snap.device}\n"
        f"Intended use: {snap.intended_use}."
        + ("" if "diagnos" in snap.intended_use.lower() else " Not for diagnosis.")
    )
    fig.text(0.06, 0.945, header, fontsize=8.5, va="top")
    cols = min(n_img, 2)
    rows = int(np.ceil(n_img / cols))
    top, bottom = 0.88, 0.36
    h = (top - bottom) / rows
    w = 0.88 / cols
    axes = []
    for i in range(n_img):
        r, c = divmod(i, cols)
        axes.append(fig.add_axes((0.06 + c * w, top - (r + 1) * h + 0.02, w - 0.02, h - 0.04)))
    axes[0].imshow(base, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("Original", fontsize=9)
    for ax, ly in zip(axes[1:], shown, strict=False):
        vals = cv2.resize(
            ly.values.astype(np.float32), base.shape[::-1], interpolation=cv2.INTER_LINEAR
        )
        rgba = colorize(vals, signed=ly.signed, colormap=ly.colormap, vmax=ly.vmax)
        ax.imshow(composite(base, [(rgba, max(ly.opacity, 0.5))]))
        ax.set_title(f"{ly.label} ({ly.colormap})", fontsize=9)
    if not shown:
        axes[1].text(0.5, 0.5, "No explanation computed", ha="center", va="center", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])

    bar_ax = fig.add_axes((0.30, 0.22, 0.62, 0.11))
    if snap.probabilities is not None:
        y = np.arange(len(snap.class_names))
        colors = ["#d9534f" if c == snap.predicted else "#6c8ebf" for c in snap.class_names]
        bar_ax.barh(y, snap.probabilities, color=colors)
        bar_ax.set_yticks(y, snap.class_names, fontsize=8)
        bar_ax.set_xlim(0, 1)
        bar_ax.invert_yaxis()
        for yi, p in zip(y, snap.probabilities, strict=True):
            bar_ax.text(min(p + 0.01, 0.9), yi, f"{p * 100:.1f} %", va="center", fontsize=8)
        bar_ax.set_title(f"Probabilities — predicted: {snap.predicted}", fontsize=9)
    else:
        bar_ax.text(0.5, 0.5, "No prediction (no model loaded)", ha="center", va="center")
        bar_ax.set_axis_off()

    lines = [f"Explained class: {snap.target_class or '—'}"]
    for ly in shown:
        trust = ", ".join(f"{k} {v:.3g}" for k, v in ly.trust.items())
        lines.append(f"{ly.label}: {_settings_text(ly)}" + (f"; {trust}" if trust else ""))
    fig.text(0.06, 0.18, "\n".join(lines), fontsize=8, va="top", family="monospace")
    fig.text(
        0.06,
        0.03,
        "Heat maps show which image regions the model's output depends on; they are not findings. "
        "Research and demonstration software, not for diagnosis.",
        fontsize=7,
        style="italic",
        wrap=True,
    )
    fig.savefig(path, format="pdf")
    return path
