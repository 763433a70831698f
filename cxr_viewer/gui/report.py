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
    #: the decision rule in words (core.inference.Prediction.rule_text), None without one
    decision: str | None = None
    #: the short headline (core.inference.Prediction.headline)
    headline: str | None = None
    #: per class: the threshold its probability is compared with (None: arg-max decision)
    thresholds: list[float | None] = field(default_factory=list)
    #: the head: softmax, binary or multilabel
    kind: str = "softmax"
    #: a probability lies within the bundle's band around its threshold
    near_threshold: bool = False
    #: multilabel: names at or above their thresholds
    findings: list[str] = field(default_factory=list)


def prediction_lines(snap: Snapshot) -> list[str]:
    """The prediction in words, for the PNG caption and the PDF."""
    if snap.probabilities is None:
        return ["No prediction (no model loaded)."]
    lines = [f"Prediction: {snap.headline or snap.decision or snap.predicted}"]
    if snap.near_threshold:
        lines[0] += "  (near threshold: a small change could flip it)"
    if snap.kind == "multilabel":
        order = np.argsort(-np.asarray(snap.probabilities), kind="stable")[:6]
        lines.append(
            "Top findings: "
            + ", ".join(
                f"{snap.class_names[i]} {snap.probabilities[i]:.2f}"
                + (f"/{snap.thresholds[i]:.2f}" if snap.thresholds[i] is not None else "")
                for i in order
            )
            + "  (p / threshold)"
        )
    return lines


def _caption_band(lines: list[str], width: int) -> np.ndarray:
    """(h, width, 3) uint8: white text lines on black, rendered by matplotlib (Unicode-safe)."""
    import textwrap

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100
    px = max(11.0, min(28.0, width / 70.0))  # font size in pixels
    per_line = max(20, int(width / (px * 0.56)))  # DejaVu Sans averages ~0.55 em per glyph
    lines = [part for text in lines for part in textwrap.wrap(text, per_line) or [""]]
    line_h = px * 1.5
    height = int(round(line_h * len(lines) + px))
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="black")
    for i, text in enumerate(lines):
        y = 1.0 - (px * 0.5 + line_h * (i + 0.75)) / height
        fig.text(0.01, y, text, color="white", fontsize=px * 72 / dpi, va="center")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3])


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
    """Write the full-size composite to ``path`` (PNG), with the prediction, its threshold
    rule and the model name in a caption band below the image."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        path = path.with_suffix(".png")
    rgb = composite_image(snap)
    lines = [
        *prediction_lines(snap),
        f"Model: {snap.model_name} · research and demonstration software, not for diagnosis",
    ]
    rgb = np.vstack([rgb, _caption_band(lines, rgb.shape[1])])
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


def _probability_bars(ax, snap: Snapshot) -> None:
    """Horizontal bars (multi-label: sorted, at most 14) with each threshold drawn on its bar."""
    n = len(snap.class_names)
    order = (
        list(np.argsort(-np.asarray(snap.probabilities), kind="stable")[:14])
        if snap.kind == "multilabel"
        else list(range(n))
    )
    thresholds = snap.thresholds or [None] * n
    marked = set(snap.findings) if snap.kind == "multilabel" else {snap.predicted}
    y = np.arange(len(order))
    probs = [snap.probabilities[i] for i in order]
    names = [snap.class_names[i] for i in order]
    ax.barh(y, probs, color=["#d9534f" if c in marked else "#6c8ebf" for c in names])
    ax.set_yticks(y, names, fontsize=7 if len(order) > 6 else 8)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    for yi, i in zip(y, order, strict=True):
        p = snap.probabilities[i]
        t = thresholds[i]
        label = f"{p * 100:.1f} %" + (f" (threshold {t:.2f})" if t is not None else "")
        ax.text(min(p + 0.01, 0.62), yi, label, va="center", fontsize=7)
        if t is not None:
            ax.plot([t, t], [yi - 0.45, yi + 0.45], color="#222222", lw=1.6)
    title = prediction_lines(snap)[0]
    ax.set_title(title if len(title) <= 95 else title[:94] + "…", fontsize=8.5)


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
        _probability_bars(bar_ax, snap)
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
