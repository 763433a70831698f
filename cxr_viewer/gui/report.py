"""Export: the annotated composite as PNG and a one-page PDF report (matplotlib, no Qt).

Both run on the I/O worker from a :class:`Snapshot` of the state taken in the GUI thread, so
the export sees exactly what was on screen when the user asked, and the GUI never waits.
The PNG follows the layout on screen (:func:`export_panels`): the grid gives the original and
one panel per shown method, each with its own legend; side by side gives the original and the
composite of every shown map; the single view gives that one method's map. Below the panels a
band says what they show: the prediction and its decision rule, the display settings, each
method's settings and verdicts, and that it is not for diagnosis — a picture that travels
without the viewer must carry that itself.
"""

from __future__ import annotations

import datetime as _dt
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from cxr_viewer.core.errors import CxrError
from cxr_viewer.core.evaluate.agreement import compare_film
from cxr_viewer.core.evaluate.trust import verdicts
from cxr_viewer.core.explain.overlay import colorbar_image, colorize, composite, legend_labels
from cxr_viewer.core.io.display import display_image
from cxr_viewer.core.io.resize import resize_map
from cxr_viewer.core.io.study import Study, Window
from cxr_viewer.core.model.heads import head_kind
from cxr_viewer.core.model.model_card import model_title

from .results import downsample

REPORT_MAX_SIDE = 1024
#: characters per line of the PDF's monospace text (7.5 pt on the A4 text width)
PDF_WRAP = 104


@dataclass
class LayerSnapshot:
    method: str
    label: str
    signed: bool
    colormap: str
    opacity: float
    visible: bool
    values: np.ndarray  # the map (model input size; scaled to the image when drawn)
    vmax: float
    layer: str | None
    settings: dict[str, Any]
    runtime_s: float
    trust: dict[str, float] = field(default_factory=dict)
    cutoff: float = 0.0


class _TextLine(NamedTuple):
    """One wrapped line of the PNG's annotation band."""

    text: str
    size: float
    weight: str
    colour: str


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
    threshold: float | None = None
    positive_class: str | None = None
    invert_flipped: bool = False  # the reader inverted the study's own grey scale
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
    #: the image area's layout when exported ("grid", "side" or "single"; state.LAYOUTS)
    layout: str = "single"
    #: the method the single view shows (None: the first shown)
    focus: str | None = None


@dataclass
class ExportPanel:
    """One picture of the exported PNG: its title, pixels and the legends drawn under it."""

    title: str
    rgb: np.ndarray  # (H, W, 3) uint8
    legends: list[LayerSnapshot]
    #: where it lies in the exported PNG: (x, y, width, height) in pixels, set by the layout
    box: tuple[int, int, int, int] = (0, 0, 0, 0)


DISCLAIMER = (
    "Heat maps show which image regions the model's output depends on; they are not findings. "
    "Research and demonstration software, not for diagnosis."
)


def study_label(snap: Snapshot) -> str:
    return "study (patient data hidden)" if snap.hide_patient else snap.study.path.name


def prediction_line(snap: Snapshot) -> str:
    """The prediction with its decision rule, for every head (softmax, binary, multi-label)."""
    if snap.probabilities is None or not snap.class_names:
        return "Prediction: none (no model loaded)"
    lines = prediction_lines(snap)
    if not head_kind(snap.kind).findings:
        probs = dict(zip(snap.class_names, snap.probabilities, strict=False))
        rule = (
            "rule: the class with the highest probability"
            if all(t is None for t in snap.thresholds or [None])
            else ""
        )
        lines.append(
            ", ".join(f"{c} {p * 100:.1f} %" for c, p in probs.items())
            + (f" ({rule})" if rule else "")
        )
    return " · ".join(lines)


def display_line(snap: Snapshot) -> str:
    """Window and grey-scale inversion as shown."""
    w = snap.window
    win = f"window C {w.center:.4g} / W {w.width:.4g}" if w is not None else "the file's window"
    inv = "inverted by the reader" if snap.invert_flipped else "not inverted"
    grey = "white = dense" if not snap.invert else "black = dense"
    return f"Display: {win}, {inv} ({grey})"


def no_signal_line(ly: LayerSnapshot) -> str:
    """ "NO SIGNAL: why; what to try" for a blank map (zero or constant), else ""."""
    from cxr_viewer.core.explain.base import no_signal_remedy, signal_problem

    problem = signal_problem(ly.values)
    if problem is None:
        return ""
    return f"NO SIGNAL: {problem}; {no_signal_remedy(ly.method, ly.layer)}"


def layer_line(ly: LayerSnapshot) -> str:
    parts = [ly.label, f"opacity {round(ly.opacity * 100)} %", ly.colormap]
    if ly.layer:
        parts.append(f"layer {ly.layer}")
    return " · ".join(parts)


def prediction_lines(snap: Snapshot) -> list[str]:
    """The prediction in words, for the PNG caption and the PDF."""
    if snap.probabilities is None:
        return ["No prediction (no model loaded)."]
    lines = [f"Prediction: {snap.headline or snap.decision or snap.predicted}"]
    if snap.near_threshold:
        lines[0] += "  (near threshold: a small change could flip it)"
    if head_kind(snap.kind).findings:
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


def _display_base(snap: Snapshot, max_side: int | None) -> np.ndarray:
    base = display_image(snap.study, window=snap.window, invert=snap.invert)
    return downsample(base, max_side) if max_side is not None else base


def layers_image(
    snap: Snapshot, layers: list[LayerSnapshot], max_side: int | None = None
) -> np.ndarray:
    """(H, W, 3) uint8: the display image with ``layers`` over it at their opacities."""
    base = _display_base(snap, max_side)
    drawn = []
    for ly in layers:
        if ly.opacity <= 0:
            continue
        values = ly.values
        if values.shape != base.shape:
            values = resize_map(values, *base.shape)
        rgba = colorize(
            values, signed=ly.signed, colormap=ly.colormap, vmax=ly.vmax, cutoff=ly.cutoff
        )
        drawn.append((rgba, ly.opacity))
    return composite(base, drawn)


def composite_image(snap: Snapshot, max_side: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8: the display image with the visible overlays at their opacities."""
    return layers_image(snap, [ly for ly in snap.layers if ly.visible], max_side)


#: the longer side of each panel when the export has more than one (one panel: full size)
EXPORT_PANEL_MAX_SIDE = 2048


def export_panels(snap: Snapshot) -> list[ExportPanel]:
    """The panels of the PNG, as the layout on screen shows them (``snap.layout``).

    * ``grid``: the original, then one panel per shown method (that map alone), each with its
      legend;
    * ``side``: the original and the composite of every shown map, their legends under it;
    * ``single``: the focus method's map with its legend (no map shown: the composite, that is
      the plain image, as the single view shows it).

    One panel keeps the study's full size; several are each at most
    :data:`EXPORT_PANEL_MAX_SIDE` pixels on their longer side.
    """
    shown = [ly for ly in snap.layers if ly.visible]
    if snap.layout == "single":
        focus = next((ly for ly in shown if ly.method == snap.focus), shown[0] if shown else None)
        if focus is None:
            return [ExportPanel("Explanations: none", composite_image(snap), [])]
        return [ExportPanel(layer_line(focus), layers_image(snap, [focus]), [focus])]
    side = EXPORT_PANEL_MAX_SIDE
    original = ExportPanel("Original", layers_image(snap, [], side), [])
    if snap.layout == "side":
        title = "Explanations: " + (", ".join(ly.label for ly in shown) if shown else "none")
        return [original, ExportPanel(title, layers_image(snap, shown, side), shown)]
    return [original] + [
        ExportPanel(layer_line(ly), layers_image(snap, [ly], side), [ly]) for ly in shown
    ]


def grid_columns(n: int) -> int:
    """Columns of the panel grid: as the viewer's image area arranges ``n`` views."""
    return 1 if n <= 1 else 2 if n <= 4 else 3


#: the annotation band is laid out for this width and scaled to the image's
BAND_BASE_WIDTH = 1000
#: the narrowest PNG: text below this width is too small to read
MIN_EXPORT_WIDTH = 720


#: panels narrower than this together are magnified (by an integer factor) to at least it
MAGNIFY_BELOW_WIDTH = 800


def export_scale(columns: int) -> int:
    """Integer magnification of a row of panels ``columns`` pixels wide: the smallest that
    makes it at least :data:`MAGNIFY_BELOW_WIDTH` wide (1: wide enough already)."""
    columns = max(int(columns), 1)
    return 1 if columns >= MAGNIFY_BELOW_WIDTH else -(-MAGNIFY_BELOW_WIDTH // columns)


def annotated_image(snap: Snapshot) -> np.ndarray:
    """(H', W', 3) uint8: the panels of :func:`export_panels` on top, the annotation band below.

    Each panel has its title above it and its legends below it, and keeps its pixels (small
    images are magnified by an integer factor, :func:`export_scale` of the row's width, each
    pixel a block; never resampled). The panels fill the width (centred when the PNG's
    :data:`MIN_EXPORT_WIDTH` is wider); each panel's ``box`` says where it lies.
    """
    return annotated_panels(snap)[0]


def _band_lines(
    snap: Snapshot, shown: list[Any], k: int, font: float, chars: int
) -> list[_TextLine]:
    """The lines of text under the panel grid of :func:`annotated_panels` (``k``: the image's
    enlargement; ``font`` px; ``chars`` per line at that size)."""
    blocks: list[_TextLine] = []

    def text(t: str, size: float = font, weight: str = "normal", colour: str = "#e6e6e6") -> None:
        width = chars * font / size * (0.88 if weight == "bold" else 1.0)
        for para in t.split("\n"):
            for ln in textwrap.wrap(para, max(20, int(width))) or [""]:
                blocks.append(_TextLine(ln, size, weight, colour))

    text(
        f"CXR Lens — {study_label(snap)} — {model_title(snap.model_name, snap.model_version)}",
        font * 1.1,
        "bold",
    )
    text(prediction_line(snap))
    text(f"Explained class: {snap.target_class or '—'} · {display_line(snap)}")
    if k > 1:
        text(f"Image shown at {k}× ({snap.study.columns} × {snap.study.rows} pixels).")
    if not shown:
        text("No explanation shown.")
    for ly in shown:
        extra = "; ".join(v.text for v in verdicts(ly.method, ly.trust, ly.settings))
        text(layer_line(ly) + (f" — {extra}" if extra else ""))
        if no_signal_line(ly):
            text(no_signal_line(ly), font * 0.85, colour="#ff8080")
        caption = legend_labels(ly.signed, ly.colormap, snap.target_class or "")[2]
        text(caption, font * 0.85, colour="#aab0b8")
    for line_text in comparison_lines(shown):
        text(line_text)
    text(DISCLAIMER, font * 0.95, "bold", "#f0c36d")
    return blocks


def annotated_panels(snap: Snapshot) -> tuple[np.ndarray, list[ExportPanel]]:
    """:func:`annotated_image` and its panels, each with the ``box`` it was drawn in."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = export_panels(snap)
    cols = grid_columns(len(panels))
    rows_n = (len(panels) + cols - 1) // cols
    ph, pw = panels[0].rgb.shape[:2]
    k = export_scale(pw * cols)
    if k > 1:  # each pixel as a k × k block: larger, never resampled
        for panel in panels:
            panel.rgb = np.repeat(np.repeat(panel.rgb, k, axis=0), k, axis=1)
        ph, pw = ph * k, pw * k
    gap = 12
    grid_w = cols * pw + (cols - 1) * gap
    cw = max(grid_w, MIN_EXPORT_WIDTH)
    s = cw / BAND_BASE_WIDTH  # pixels per layout unit
    # the maps the panels show (the single view: one of the shown ones)
    shown = list({id(ly): ly for panel in panels for ly in panel.legends}.values())
    font = 15.0 * s  # px
    line = font * 1.45
    chars = int((cw - 30 * s) / (font * 0.6))
    legend_h = line * 0.7 + 3 * s + line * 0.95 + 10 * s

    # the panel grid: per row a title line, the images, then as many legends as it needs
    title_h = int(np.ceil(line * 1.1))
    legends_n = max(len(panel.legends) for panel in panels)
    legends_h = int(np.ceil(legends_n * legend_h)) + (int(4 * s) if legends_n else 0)
    row_h = title_h + ph + legends_h
    x_left = (cw - grid_w) // 2
    for i, panel in enumerate(panels):
        r, c = divmod(i, cols)
        panel.box = (x_left + c * (pw + gap), r * (row_h + gap) + title_h, pw, ph)
    grid_h = rows_n * row_h + (rows_n - 1) * gap

    blocks = _band_lines(snap, shown, k, font, chars)  # the band's lines of text

    band = int(np.ceil(16 * s + sum(line * b.size / font for b in blocks)))
    top_h = grid_h + int(8 * s)
    total_h = top_h + band
    dpi = 100
    fig = Figure(figsize=(cw / dpi, total_h / dpi), dpi=dpi, facecolor="#141517")
    canvas = FigureCanvasAgg(fig)
    fs_small = font * 0.85 * 72 / dpi
    for panel in panels:
        px, py, _w, _h = panel.box
        fig.figimage(panel.rgb, xo=px, yo=total_h - py - ph, origin="upper")
        title = textwrap.shorten(panel.title, max(12, int(pw / (font * 0.62))), placeholder="…")
        fig.text(
            (px + 2 * s) / cw,
            (total_h - py + title_h * 0.25) / total_h,
            title,
            fontsize=font * 72 / dpi,
            color="#e6e6e6",
            fontweight="bold",
            va="bottom",
        )
        y = total_h - py - ph - 4 * s  # from the image's bottom edge, downward
        for ly in panel.legends:
            lo, hi, _caption = legend_labels(ly.signed, ly.colormap, snap.target_class or "")
            bar_w, bar_h = min(520 * s, pw - 4 * s), 0.7 * line
            strip = colorbar_image(
                signed=ly.signed, colormap=ly.colormap, vertical=False, with_alpha=False
            )
            ax = fig.add_axes(
                ((px + 2 * s) / cw, (y - bar_h) / total_h, bar_w / cw, bar_h / total_h)
            )
            ax.imshow(strip[..., :3], aspect="auto", interpolation="nearest")
            ax.set_axis_off()
            label_y = (y - bar_h - 3 * s - line * 0.95) / total_h
            name = f"{ly.label}: " if len(panel.legends) > 1 else ""
            fig.text((px + 2 * s) / cw, label_y, name + lo, fontsize=fs_small, color="#cfcfcf")
            fig.text(
                (px + 2 * s + bar_w) / cw,
                label_y,
                hi,
                fontsize=fs_small,
                color="#cfcfcf",
                ha="right",
            )
            y -= legend_h
    y = band - 8 * s  # from the band's top, downward (pixels from the figure bottom)
    x0 = 14 * s
    for t, size, weight, colour in blocks:
        y -= line * size / font
        fig.text(
            x0 / cw,
            y / total_h,
            t,
            fontsize=size * 72 / dpi,
            color=colour,
            fontweight=weight,
            va="bottom",
        )
    canvas.draw()
    out = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    for panel in panels:  # each panel's own pixels, untouched by any resampling
        px, py, bw, bh = panel.box
        out[py : py + bh, px : px + bw] = panel.rgb
    return out, panels


def save_png(snap: Snapshot, path: str | Path, annotate: bool = True) -> Path:
    """Write the full-size composite to ``path`` (PNG), with its annotation band by default."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        path = path.with_suffix(".png")
    rgb = annotated_image(snap) if annotate else composite_image(snap)
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


#: the trust figures the report lists (the verdict lines say what they mean)
REPORTED_TRUST = (
    "logit_deletion_auc",
    "logit_insertion_auc",
    "margin",
    "margin_lo",
    "margin_hi",
    "deletion_auc",
    "insertion_auc",
    "drop_top",
    "drop_random",
    "completeness_gap",
    "surrogate_r2",
)


def comparison_lines(shown: list[LayerSnapshot]) -> list[str]:
    """The agreement line and the most faithful map of the shown maps (core.agreement)."""
    film = compare_film(
        {ly.method: ly.values for ly in shown},
        {ly.method: ly.trust for ly in shown},
        {ly.method: ly.label for ly in shown},
    )
    out = [film.line] if film.line else []
    if film.most_faithful is not None:
        label = next(ly.label for ly in shown if ly.method == film.most_faithful)
        out.append(f"Most faithful on this film: {label}")
    return out


def _settings_text(ly: LayerSnapshot) -> str:
    parts = []
    if ly.layer:
        parts.append(f"layer {ly.layer}")
    parts += [f"{k} {ly.settings[k]}" for k in REPORTED_SETTINGS if k in ly.settings]
    parts.append(f"{ly.runtime_s:.1f} s")
    return ", ".join(parts)


def _probability_bars(ax, snap: Snapshot, probabilities: list[float]) -> None:
    """Horizontal bars (multi-label: sorted, at most 14) with each threshold drawn on its bar."""
    n = len(snap.class_names)
    order = (
        list(np.argsort(-np.asarray(probabilities), kind="stable")[:14])
        if head_kind(snap.kind).findings
        else list(range(n))
    )
    thresholds = snap.thresholds or [None] * n
    marked = set(snap.findings) if head_kind(snap.kind).findings else {snap.predicted}
    y = np.arange(len(order))
    probs = [probabilities[i] for i in order]
    names = [snap.class_names[i] for i in order]
    ax.barh(y, probs, color=["#d9534f" if c in marked else "#6c8ebf" for c in names])
    ax.set_yticks(y, names, fontsize=7 if len(order) > 6 else 8)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    for yi, i in zip(y, order, strict=True):
        p = probabilities[i]
        t = thresholds[i]
        label = f"{p * 100:.1f} %" + (f" (threshold {t:.2f})" if t is not None else "")
        ax.text(min(p + 0.01, 0.62), yi, label, va="center", fontsize=7)
        if t is not None:
            ax.plot([t, t], [yi - 0.45, yi + 0.45], color="#222222", lw=1.6)
    title = prediction_lines(snap)[0]
    title = title if len(title) <= 95 else title[:94] + "…"
    if head_kind(snap.kind).findings:
        rule = "each finding is reported when its p ≥ its own threshold"
    elif snap.threshold is not None and snap.positive_class:
        rule = f"{snap.positive_class} if p ≥ {snap.threshold:.2f}"
    else:
        rule = "the class with the highest probability"
    ax.set_title(f"{title}\n(rule: {rule})", fontsize=8.5)


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
    name = study_label(snap)
    header_lines = [
        f"Study: {name}    Size: {snap.study.columns} × {snap.study.rows}    "
        f"Created: {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"Model: {snap.model_name} (version {snap.model_version or '?'}) on {snap.device}",
        f"Intended use: {snap.intended_use}."
        + ("" if "diagnos" in snap.intended_use.lower() else " Not for diagnosis."),
        display_line(snap),
    ]
    header = "\n".join(textwrap.fill(t, PDF_WRAP, subsequent_indent="  ") for t in header_lines)
    fig.text(0.06, 0.95, header, fontsize=8.5, va="top")
    cols = min(n_img, 2)
    rows = int(np.ceil(n_img / cols))
    top, bottom = 0.88, 0.385
    h = (top - bottom) / rows
    w = 0.88 / cols
    axes = []
    for i in range(n_img):
        r, c = divmod(i, cols)
        axes.append(fig.add_axes((0.06 + c * w, top - (r + 1) * h + 0.05, w - 0.02, h - 0.075)))
    axes[0].imshow(base, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("Original", fontsize=9)
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    for ax, ly in zip(axes[1:], shown, strict=False):
        vals = resize_map(ly.values, *base.shape)
        rgba = colorize(
            vals, signed=ly.signed, colormap=ly.colormap, vmax=ly.vmax, cutoff=ly.cutoff
        )
        opacity = max(ly.opacity, 0.5)
        ax.imshow(composite(base, [(rgba, opacity)]))
        ax.set_title(f"{ly.label} ({ly.colormap}, opacity {round(opacity * 100)} %)", fontsize=9)
        # its colour bar, in words: each map is scaled to this image
        lo, hi, caption = legend_labels(ly.signed, ly.colormap, snap.target_class or "")
        box = ax.get_position()
        cax = fig.add_axes((box.x0 + box.width * 0.1, box.y0 - 0.011, box.width * 0.8, 0.007))
        norm = Normalize(-1.0 if ly.signed else 0.0, 1.0)
        bar = fig.colorbar(
            ScalarMappable(norm=norm, cmap=ly.colormap), cax=cax, orientation="horizontal"
        )
        bar.set_ticks([])
        # short ends under the small bar (the caption names the class)
        for x, text, ha in ((0.0, lo.split(" ")[0], "left"), (1.0, hi.split(" ")[0], "right")):
            cax.text(x, -0.5, text, transform=cax.transAxes, ha=ha, va="top", fontsize=6)
        bar.set_label(textwrap.fill(caption, 80), fontsize=6, labelpad=9)
    if not shown:
        axes[1].text(0.5, 0.5, "No explanation computed", ha="center", va="center", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])

    bar_ax = fig.add_axes((0.30, 0.245, 0.62, 0.085))
    if snap.probabilities is not None:
        _probability_bars(bar_ax, snap, snap.probabilities)
    else:
        bar_ax.text(0.5, 0.5, "No prediction (no model loaded)", ha="center", va="center")
        bar_ax.set_axis_off()

    lines = [f"Explained class: {snap.target_class or '—'}"]
    for ly in shown:
        trust = ", ".join(f"{k} {float(ly.trust[k]):.3g}" for k in REPORTED_TRUST if k in ly.trust)
        lines.append(f"{ly.label}: {_settings_text(ly)}" + (f"; {trust}" if trust else ""))
        if no_signal_line(ly):
            lines.append(f"  {no_signal_line(ly)}")
        for v in verdicts(ly.method, ly.trust, ly.settings):
            lines.append(f"  {v.level}: {v.text}")
    lines += comparison_lines(shown)
    wrapped = "\n".join(textwrap.fill(t, PDF_WRAP, subsequent_indent="    ") for t in lines)
    fig.text(0.06, 0.205, wrapped, fontsize=7.5, va="top", family="monospace")
    fig.text(0.06, 0.022, textwrap.fill(DISCLAIMER, 120), fontsize=7, style="italic")
    fig.savefig(path, format="pdf")
    return path
