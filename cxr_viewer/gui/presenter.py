"""Presenters: redraw the image views from the state (they own nothing the state does not say).

* :class:`DisplayPresenter` draws the study through the display pipeline: at once from the
  screen-size copy, then the full-size image from the I/O worker (debounced while the user drags
  window/level).
* :class:`OverlayPresenter` shows each method's map from its screen-size RGBA (coloured by the
  model worker; recoloured here only when the user picks another colormap), and only sets item
  opacity/visibility when those change — fading an overlay neither recomputes nor recolourises.
  Every map goes to the composite view (all methods over one image) and to its own pane, each
  with its caption, verdict badges and legend drawn inside the view.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QImage, QPixmap

from cxr_viewer.core.evaluate.agreement import FilmComparison, agreement_layer, compare_film
from cxr_viewer.core.evaluate.sanity import SanityResult
from cxr_viewer.core.evaluate.trust import Verdict, verdicts
from cxr_viewer.core.explain.overlay import colorbar_image, colorize, legend_labels
from cxr_viewer.core.io.study import Window

from .controller import Controller
from .events import RECOLORS, OverlayChange
from .imaging import display_qimage, render_u8, rgba_qimage
from .state import METHODS, ViewerState, study_key
from .views import ImageView, Legend

FULL_RENDER_DELAY_MS = 120
#: fraction of the window width one screen pixel of right-drag moves centre/width by
WL_SENSITIVITY = 0.004


class DisplayPresenter(QObject):
    """Keeps the base image of every view equal to the state's study, window and inversion."""

    firstImageDrawn = Signal()

    def __init__(self, state: ViewerState, controller: Controller, views: list[ImageView]) -> None:
        super().__init__()
        self.state, self.controller, self.views = state, controller, views
        self._full_key: tuple | None = None
        self._drawn_any = False
        self._dragging = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(FULL_RENDER_DELAY_MS)
        self._timer.timeout.connect(self._request_full)
        state.events.display.connect(self.redraw)
        controller.fullImageReady.connect(self._full_ready)
        for v in views:
            v.windowDragged.connect(self.drag_window)
            v.windowDragFinished.connect(self._drag_finished)

    def _key(self) -> tuple | None:
        s = self.state.study
        if s is None:
            return None
        return (study_key(s), self.state.window, self.state.effective_invert)

    def redraw(self) -> None:
        """Draw the screen-size image now; the full-size one follows from the I/O worker."""
        study = self.state.study
        if study is None:
            for v in self.views:
                v.set_image(None, None)
            return
        preview = self.controller.preview_of(study)
        image = None
        if self.state.window is None and not self.state.invert_flip:
            image = self.controller.default_image_of(study)  # drawn by the loader
        if image is None:
            image = display_qimage(
                render_u8(preview, self.state.window, self.state.effective_invert)
            )
        pixmap = QPixmap.fromImage(image)  # once for all views
        for v in self.views:
            v.set_image(pixmap, (study.columns, study.rows))
        if not self._drawn_any:
            self._drawn_any = True
            self.firstImageDrawn.emit()
        self._full_key = None
        if preview is not study and not self._dragging:
            self._timer.start()

    def _request_full(self) -> None:
        study, key = self.state.study, self._key()
        if study is None or key is None:
            return
        self._full_key = key
        self.controller.render_full(key, study, self.state.window, self.state.effective_invert)

    def _full_ready(self, key: tuple, image, size) -> None:
        if key == self._key() and key == self._full_key:
            pixmap = QPixmap.fromImage(image)  # once for all views
            for v in self.views:
                v.set_image(pixmap, size)

    # ------------------------------------------------------------------ window/level
    def drag_window(self, dx: float, dy: float) -> None:
        """Right-drag: horizontal changes the width (contrast), vertical the centre (level)."""
        if self.state.study is None:
            return
        self._dragging = True
        self._timer.stop()
        base = self.state.effective_window or self.state.study.auto_window
        step = max(base.width, 1e-3) * WL_SENSITIVITY
        self.state.adjust_window(d_center=-dy * step, d_width=dx * step)

    def _drag_finished(self) -> None:
        self._dragging = False
        if self.state.study is not None:
            self._timer.start()

    @staticmethod
    def presets(study) -> list[tuple[str, Window | None]]:
        """Window presets for ``study``: its own, auto, and three chest-radiograph variants.

        Radiographs have no absolute units like CT's Hounsfield scale, so the chest presets are
        relative to the study's automatic (0.5–99.5 percentile) window.
        """
        out: list[tuple[str, Window | None]] = [("File default", None)]
        for i, w in enumerate(study.windows):
            out.append((f"File window {i + 1}: {w.name or f'C {w.center:g} W {w.width:g}'}", w))
        a = study.auto_window
        out.append(("Auto (0.5–99.5 %)", Window(a.center, a.width, "LINEAR_EXACT", "auto")))
        out.append(
            ("Lung detail (narrow)", Window(a.center, a.width * 0.6, "LINEAR_EXACT", "lung"))
        )
        out.append(
            ("Mediastinum/bone (wide)", Window(a.center, a.width * 1.6, "LINEAR_EXACT", "wide"))
        )
        lo, hi = float(study.pixels.min()), float(study.pixels.max())
        if hi > lo:
            out.append(("Full range", Window((lo + hi) / 2, hi - lo, "LINEAR_EXACT", "full")))
        return out


def status_text(state: ViewerState, method: str) -> str:
    """What ``method``'s map is doing, in a few words ("computing 40 %", "failed", …)."""
    ov = state.overlays[method]
    if state.model is None:
        return (
            "waits for the model"
            if state.model_status in ("loading", "warming up")
            else ("no model")
        )
    if not ov.available:
        reason = getattr(ov, "unavailable_reason", "")
        return f"not applicable: {reason}" if reason else "not offered by this model"
    hm = getattr(ov.heatmap, "heatmap", None)
    if ov.status == "done" and hm is not None and getattr(hm, "status", "ok") != "ok":
        return str(hm.status_text)  # "no signal: the map is zero everywhere; …"
    return {
        "idle": "",
        "waiting": "waits for the prediction",
        "queued": "queued",
        "running": f"computing {ov.progress * 100:.0f} %",
        "done": "",
        "failed": "failed",
        "cancelled": "cancelled",
    }.get(ov.status, ov.status)


def method_verdicts(state: ViewerState, method: str):
    """The trust verdicts of ``method``'s finished map (none while it is partial or absent),
    then the model's sanity check of the method when it has been run (core.evaluate.sanity, cached)."""
    result = state.overlays[method].heatmap
    if result is None or result.partial:
        return []
    hm = result.heatmap
    out = verdicts(method, dict(getattr(hm, "trust", {}) or {}), dict(hm.settings or {}))
    sanity = state.model.sanity.get(method) if state.model is not None else None
    if sanity:
        check = SanityResult.from_dict(sanity)
        out.append(Verdict("bad" if check.insensitive else "good", check.text, check.detail))
    return out


def film_comparison(state: ViewerState) -> FilmComparison:
    """Agreement and the most faithful map among the finished maps that are shown."""
    done = {
        m: state.overlays[m].heatmap.heatmap
        for m in METHODS
        if state.overlays[m].visible
        and state.overlays[m].heatmap is not None
        and not state.overlays[m].heatmap.partial
    }
    return compare_film(
        {m: hm.values for m, hm in done.items()},
        {m: dict(getattr(hm, "trust", {}) or {}) for m, hm in done.items()},
        {m: state.overlays[m].label for m in done},
    )


#: the composite view's overlay name of the agreement layer
AGREEMENT_LAYER = "agreement"
#: the pane title's mark of the map to believe first on this film
MOST_FAITHFUL = "★ most faithful on this film"


class OverlayPresenter(QObject):
    """Draws each method's map on the composite view and on its own pane, with annotations."""

    def __init__(
        self, state: ViewerState, view: ImageView, panes: dict[str, ImageView] | None = None
    ) -> None:
        super().__init__()
        self.state, self.view = state, view
        self.panes = panes or {}
        self.colorize_calls = 0
        self._strips: dict[tuple[str, bool], QImage] = {}
        self._film_key: tuple[tuple[str, int], ...] | None = None
        self._film_value = FilmComparison((), "", None)
        self._agreement_key: tuple | None = None
        #: the agreement layer drawn now (None: off)
        self.agreement_shown: np.ndarray | None = None
        #: the stored maps drawn on the composite view (.stored_overlays): caption and legends
        self.stored_captions: list[str] = []
        self.stored_legends: list[Legend] = []
        state.events.overlay.connect(self._on_overlay)
        state.events.study.connect(self.redraw_all)
        state.events.target_class.connect(self.annotate)
        state.events.model.connect(self.annotate)
        state.events.agreement.connect(self.annotate)
        self.annotate()

    def _views_of(self, method: str) -> list[ImageView]:
        pane = self.panes.get(method)
        return [self.view, pane] if pane is not None else [self.view]

    def redraw_all(self) -> None:
        for m in METHODS:
            self._recolor(m)
        self.annotate()

    def _on_overlay(self, method: str, what: OverlayChange) -> None:
        ov = self.state.overlays[method]
        if what is OverlayChange.OPACITY:
            for v in self._views_of(method):
                v.set_overlay_opacity(method, ov.opacity)
        elif what is OverlayChange.VISIBLE:
            for v in self._views_of(method):
                v.set_overlay_visible(method, ov.visible and ov.heatmap is not None)
        elif what in RECOLORS:
            self._recolor(method)
        self.annotate()

    def _recolor(self, method: str) -> None:
        ov = self.state.overlays[method]
        result = ov.heatmap
        if result is None or self.state.study is None:
            for v in self._views_of(method):
                v.set_overlay(method, None)
            return
        if result.rgba is None or result.colormap != ov.colormap:
            self.colorize_calls += 1  # a colormap change: the worker coloured another one
        rgba = result.recolor(ov.colormap)
        pixmap = QPixmap.fromImage(rgba_qimage(rgba))  # once for both views
        for v in self._views_of(method):
            v.set_overlay(method, pixmap, z=1.0 + METHODS.index(method))
            v.set_overlay_opacity(method, ov.opacity)
            v.set_overlay_visible(method, ov.visible)

    # ------------------------------------------------------------------ annotations
    def _class_name(self) -> str:
        names = self.state.model.class_names if self.state.model else []
        t = self.state.target_class
        return names[t] if t is not None and 0 <= t < len(names) else ""

    def legend(self, method: str) -> Legend | None:
        """The legend of ``method``'s map as drawn in the views (None without a map)."""
        ov = self.state.overlays[method]
        if ov.heatmap is None:
            return None
        low, high, caption = legend_labels(ov.signed, ov.colormap, self._class_name())
        return Legend(ov.label, self.strip(ov.signed, ov.colormap), low, high, caption)

    def strip(self, signed: bool, colormap: str) -> QImage:
        """The colour bar of a legend (made once per colour map and sign)."""
        key = (colormap, signed)
        strip = self._strips.get(key)
        if strip is None:
            strip = rgba_qimage(
                colorbar_image(signed=signed, colormap=colormap, vertical=False, with_alpha=False)
            )
            self._strips[key] = strip
        return strip

    def caption(self, method: str) -> str:
        ov = self.state.overlays[method]
        parts = [ov.label, f"opacity {round(ov.opacity * 100)} %"]
        if ov.layer:
            parts.append(f"layer {ov.layer}")
        status = status_text(self.state, method)
        if status:
            parts.append(status)
        elif ov.heatmap is None:
            parts.append("no map yet")
        return " · ".join(parts)

    def annotate(self, *_args) -> None:
        """Captions, verdict badges and legends of the composite view and the panes."""
        shown = [m for m in METHODS if self.state.overlays[m].visible]
        parts = [
            f"{self.state.overlays[m].label} (opacity "
            f"{round(self.state.overlays[m].opacity * 100)} %)"
            for m in shown
        ] + self.stored_captions
        if parts:
            caption = "Explanations: " + ", ".join(parts)
        else:
            caption = "Explanations: none (G, L, S show them)"
        legends = [lg for lg in (self.legend(m) for m in shown) if lg is not None]
        legends += self.stored_legends
        film = self._film()
        self._draw_agreement()
        agreement = [("info", film.line)] if film.line else []
        self.view.set_annotations(caption, agreement, legends)
        first = next((m for m in METHODS if m in self.panes and m in shown), None)
        for m, pane in self.panes.items():
            lg = self.legend(m)
            badges = [(v.level, v.text) for v in method_verdicts(self.state, m)]
            if m == first:
                badges += agreement
            title = self.caption(m)
            if m == film.most_faithful:  # first: a long caption is elided at its end
                title = f"{MOST_FAITHFUL} · {title}"
            pane.set_annotations(title, badges, [lg] if lg is not None else [])

    def _draw_agreement(self) -> None:
        """The agreement layer on the composite view (core.evaluate.agreement.agreement_layer): where at
        least ``state.agreement_k`` of the shown, finished maps put their top 10 %."""
        k = self.state.agreement_k
        done = {
            m: self.state.overlays[m].heatmap.heatmap.values
            for m in METHODS
            if self.state.overlays[m].visible
            and self.state.overlays[m].heatmap is not None
            and not self.state.overlays[m].heatmap.partial
        }
        key = (k, tuple((m, id(v)) for m, v in done.items()))
        if key == self._agreement_key:
            return
        self._agreement_key = key
        if not k or len(done) < 2:
            self.agreement_shown = None
            self.view.set_overlay(AGREEMENT_LAYER, None)
            return
        layer = agreement_layer(done, k=k)
        self.agreement_shown = layer
        rgba = colorize(layer, signed=False, colormap="viridis", vmax=1.0, cutoff=0.01)
        self.view.set_overlay(AGREEMENT_LAYER, QPixmap.fromImage(rgba_qimage(rgba)), z=50.0)
        self.view.set_overlay_opacity(AGREEMENT_LAYER, 0.6)
        self.view.set_overlay_visible(AGREEMENT_LAYER, True)

    def _film(self) -> FilmComparison:
        """:func:`film_comparison`, recomputed only when the finished maps change."""
        key = tuple(
            (m, id(self.state.overlays[m].heatmap))
            for m in METHODS
            if self.state.overlays[m].visible and self.state.overlays[m].heatmap is not None
        )
        if key != self._film_key:
            self._film_key, self._film_value = key, film_comparison(self.state)
        return self._film_value
