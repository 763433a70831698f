"""The viewer's state in plain Python: what is shown, not how (docs/ARCHITECTURE.md).

Widgets never own state: they call the setters here, which validate, store and emit an
:class:`~cxr_viewer.gui.events.Event`; views and the controller listen and redraw or start work.
Compositing an overlay at a new opacity is a state change that only views listen to, so it
never recomputes an explanation. Nothing in this module imports Qt, so it is tested headless.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxr_viewer.core.explain.overlay import SIGNED_COLORMAPS, UNSIGNED_COLORMAPS, default_colormap
from cxr_viewer.core.explain.registry import EXPLAINERS, check_setting
from cxr_viewer.core.io.study import Study, Window
from cxr_viewer.core.model.localization_card import LocalizationCard

from .events import Event, OverlayChange

#: the explanation methods the viewer offers, in panel order: the core's registry, which holds
#: every fact about a method (label, signedness, shortcut, display defaults, settings shown)
METHODS: tuple[str, ...] = tuple(EXPLAINERS)
#: each method's display defaults (label, colormap, opacity, cut-off) live with the method
METHOD_DISPLAY = {m: EXPLAINERS[m].display for m in METHODS}
METHOD_LABELS = {m: METHOD_DISPLAY[m].short_label for m in METHODS}
#: signed maps (positive: toward the target class, negative: against it) get diverging colormaps
METHOD_SIGNED = {m: bool(EXPLAINERS[m].signed) for m in METHODS}
#: the key that shows or hides each method's map
METHOD_SHORTCUTS = {m: EXPLAINERS[m].display.shortcut for m in METHODS}
#: layouts of the image area: original + one pane per shown method; original + all maps in
#: one pane; one method's map filling the area
LAYOUTS: tuple[str, ...] = ("grid", "side", "single")
LAYOUT_LABELS = {
    "grid": "Grid: one pane per method",
    "side": "Side by side: original and all maps",
    "single": "Single method, full view",
}

SEQUENTIAL_COLORMAPS: tuple[str, ...] = UNSIGNED_COLORMAPS
DIVERGING_COLORMAPS: tuple[str, ...] = SIGNED_COLORMAPS

#: the main "how many samples" setting per method and the values the panel offers
SAMPLE_SETTINGS: dict[str, tuple[str, tuple[int, ...]]] = {
    m: (c.key, c.choices) for m in METHODS if (c := EXPLAINERS[m].samples) is not None
}
#: default settings per method, merged with the explainer's own defaults when the model loads
DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    m: ({c.key: c.default} if (c := EXPLAINERS[m].samples) is not None else {}) for m in METHODS
}

STATUSES = ("idle", "waiting", "queued", "running", "done", "failed", "cancelled")
MODEL_STATUSES = ("none", "loading", "warming up", "ready", "failed")


def colormaps_for(signed: bool) -> tuple[str, ...]:
    """The colormaps offered for a map: diverging when it is signed, else sequential."""
    return DIVERGING_COLORMAPS if signed else SEQUENTIAL_COLORMAPS


@dataclass
class OverlayState:
    """One explanation method's overlay: how it is shown and its current result."""

    method: str
    label: str
    signed: bool
    visible: bool = False
    opacity: float = 0.35
    colormap: str = ""
    cutoff: float = 0.0
    layer: str | None = None
    layers: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    available: bool = True
    #: why the method does not apply to the model (``available`` False), from the bundle
    unavailable_reason: str = ""
    status: str = "idle"
    progress: float = 0.0
    message: str = ""
    heatmap: Any = None  # core.explain.base.Heatmap at the study's size, or None

    def __post_init__(self) -> None:
        if not self.colormap:
            self.colormap = default_colormap(self.signed)


@dataclass
class ModelInfo:
    """What the viewer shows about the loaded model bundle."""

    name: str
    version: str
    class_names: list[str]
    intended_use: str
    data_summary: str = ""
    device: str = ""
    #: what LIME, occlusion and the trust curves run on (Classifier.forward_path)
    forward_path: str = ""
    threshold: float | None = None
    positive_class: str | None = None
    path: str = ""
    layers: dict[str, list[str]] = field(default_factory=dict)
    default_layers: dict[str, str | None] = field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    #: the model card in plain lines (cxr_viewer.core.model.model_card): the five-second read, and
    #: every line (tooltip)
    card: list[str] = field(default_factory=list)
    card_details: list[str] = field(default_factory=list)
    #: the output head: "softmax", "binary" or "multilabel" (core.model.heads)
    kind: str = "softmax"
    #: multilabel: finding → threshold
    thresholds: dict[str, float] = field(default_factory=dict)
    #: the bundle's "near threshold" band
    near_band: float = 0.05
    #: model card figures for the prediction panel (core.model.bundle.Bundle.card): test_auc,
    #: finding_auc, population
    card_figures: dict[str, Any] = field(default_factory=dict)
    #: method → its cached sanity check on this model file (core.evaluate.sanity.SanityResult.as_dict)
    sanity: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: layer → (rows, columns) of its output, for the layer menus
    layer_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: method → why it does not apply to this model (core.explain.registry.method_unavailable)
    unavailable: dict[str, str] = field(default_factory=dict)
    #: how the maps land on radiologists' boxes, from the model card
    #: (core.model.localization_card.LocalizationCard); None: the card has no such figures
    localization: LocalizationCard | None = None


class ViewerState:
    """Everything the viewer shows; setters validate, store and emit.

    Events (arguments in brackets): ``studies`` (), ``study`` (), ``display`` (),
    ``prediction`` (), ``target_class`` (), ``overlay`` (method, :class:`~.events.OverlayChange`),
    ``model`` (),
    ``layout`` (), ``privacy`` (), ``agreement`` ().
    """

    def __init__(self) -> None:
        self.studies: list[Path] = []
        self.index: int = -1
        self.study: Study | None = None
        self.window: Window | None = None  # None: the study's own default
        self.invert_flip: bool = False  # True: show inverted relative to the study's own
        self.prediction: Any = None  # core.model.inference.Prediction
        self.target_class: int | None = None
        self.target_pinned: bool = False
        self.model: ModelInfo | None = None
        self.model_status: str = "none"
        self.model_message: str = "No model loaded"
        self.model_progress: float = 0.0
        self.layout: str = "grid"
        #: the agreement layer: 0 off, k ≥ 1 where at least k shown maps put their top 10 %
        self.agreement_k: int = 0
        self.focus_method: str = METHODS[0]
        self.hide_patient: bool = False
        self.overlays: dict[str, OverlayState] = {
            m: OverlayState(
                m,
                METHOD_LABELS[m],
                METHOD_SIGNED[m],
                opacity=METHOD_DISPLAY[m].opacity,
                colormap=METHOD_DISPLAY[m].colormap,
                cutoff=METHOD_DISPLAY[m].cutoff,
                settings=dict(DEFAULT_SETTINGS[m]),
            )
            for m in METHODS
        }
        self.events = _Events()

    # ---------------------------------------------------------------- studies
    def add_studies(self, paths: list[Path]) -> int:
        """Append paths not yet in the list; returns the index of the first of ``paths``."""
        first = -1
        for p in (Path(x) for x in paths):
            if p in self.studies:
                idx = self.studies.index(p)
            else:
                self.studies.append(p)
                idx = len(self.studies) - 1
            if first < 0:
                first = idx
        self.events.studies.emit()
        return first

    def step_index(self, step: int) -> int | None:
        """The index ``step`` studies away from the current one, or None past either end."""
        if not self.studies:
            return None
        new = self.index + step
        return new if 0 <= new < len(self.studies) else None

    def set_study(self, study: Study | None, index: int | None = None) -> None:
        """Show ``study``; clears the prediction and every overlay result, resets the window."""
        self.study = study
        if index is not None:
            self.index = index
        self.window = None
        self.invert_flip = False
        self.prediction = None
        if not self.target_pinned:
            self.target_class = None
        for ov in self.overlays.values():
            ov.heatmap = None
            ov.status, ov.progress, ov.message = "idle", 0.0, ""
        self.events.study.emit()
        self.events.display.emit()
        self.events.prediction.emit()
        for m in METHODS:
            self.events.overlay.emit(m, OverlayChange.HEATMAP)

    # ---------------------------------------------------------------- display
    @property
    def effective_window(self) -> Window | None:
        """The window in use: the user's, else the study's first, else None (VOI LUT/auto)."""
        if self.window is not None:
            return self.window
        if self.study is None:
            return None
        return self.study.default_window or (
            None if self.study.voi_luts else self.study.auto_window
        )

    @property
    def effective_invert(self) -> bool:
        return bool(self.study.invert if self.study is not None else False) ^ self.invert_flip

    def set_window(self, window: Window | None) -> None:
        """Use ``window`` (None: back to the study's own)."""
        if window is not None and not isinstance(window, Window):
            raise TypeError(f"window must be a Window, got {type(window).__name__}")
        if window == self.window:
            return
        self.window = window
        self.events.display.emit()

    def adjust_window(self, d_center: float, d_width: float) -> None:
        """Move the window by (Δcentre, Δwidth) in modality units; the width stays ≥ 1e-3."""
        base = self.effective_window
        if base is None:
            if self.study is None:
                return
            base = self.study.auto_window
        if not (math.isfinite(d_center) and math.isfinite(d_width)):
            raise ValueError("window change must be finite")
        width = max(base.width + d_width, 1e-3)
        self.set_window(Window(base.center + d_center, width, base.function, "manual"))

    def set_invert_flip(self, flip: bool) -> None:
        flip = bool(flip)
        if flip != self.invert_flip:
            self.invert_flip = flip
            self.events.display.emit()

    def toggle_invert(self) -> None:
        self.set_invert_flip(not self.invert_flip)

    def reset_display(self) -> None:
        """Back to the study's own window and inversion."""
        changed = self.window is not None or self.invert_flip
        self.window, self.invert_flip = None, False
        if changed:
            self.events.display.emit()

    # ---------------------------------------------------------------- model
    def set_model_status(self, status: str, message: str = "", progress: float = 0.0) -> None:
        """The model's status; ``progress`` (0–1) says how far loading / warming up has got."""
        if status not in MODEL_STATUSES:
            raise ValueError(f"model status must be one of {MODEL_STATUSES}, got {status!r}")
        self.model_status, self.model_message = status, message
        self.model_progress = float(np.clip(progress, 0.0, 1.0))
        self.events.model.emit()

    def set_model(self, info: ModelInfo | None) -> None:
        """A new model (or none): clears predictions and results, applies its layers/settings."""
        self.model = info
        self.prediction = None
        self.target_class, self.target_pinned = None, False
        for m, ov in self.overlays.items():
            ov.heatmap, ov.status, ov.progress, ov.message = None, "idle", 0.0, ""
            if info is not None:
                ov.layers = list(info.layers.get(m, []))
                default = info.default_layers.get(m)
                ov.layer = (
                    default if default in ov.layers else (ov.layers[0] if ov.layers else None)
                )
                ov.settings = {**DEFAULT_SETTINGS[m], **info.settings.get(m, {})}
                ov.available = m in info.settings or m in info.layers
                ov.unavailable_reason = "" if ov.available else info.unavailable.get(m, "")
        self.model_status = "ready" if info is not None else self.model_status
        self.events.model.emit()
        self.events.prediction.emit()
        self.events.target_class.emit()
        for m in METHODS:
            self.events.overlay.emit(m, OverlayChange.CONFIG)

    # ---------------------------------------------------------------- prediction
    def set_prediction(self, prediction: Any) -> None:
        """The current study's prediction; sets the target class unless the user pinned one."""
        self.prediction = prediction
        self.events.prediction.emit()
        if prediction is not None and not self.target_pinned:
            self._set_target(int(prediction.predicted_index))

    def set_target_class(self, index: int | None) -> None:
        """Explain ``index`` for every method (None: follow the predicted class)."""
        if index is None:
            self.target_pinned = False
            pred = self.prediction
            self._set_target(int(pred.predicted_index) if pred is not None else None)
            return
        n = len(self.model.class_names) if self.model is not None else 0
        if not 0 <= int(index) < n:
            raise ValueError(f"target class {index} out of range (model has {n} classes)")
        self.target_pinned = True
        self._set_target(int(index))

    def _set_target(self, index: int | None) -> None:
        if index == self.target_class:
            return
        self.target_class = index
        for ov in self.overlays.values():
            ov.heatmap, ov.status, ov.progress = None, "idle", 0.0
        self.events.target_class.emit()
        for m in METHODS:
            self.events.overlay.emit(m, OverlayChange.HEATMAP)

    # ---------------------------------------------------------------- overlays
    def _ov(self, method: str) -> OverlayState:
        try:
            return self.overlays[method]
        except KeyError:
            raise ValueError(f"unknown method {method!r}; known: {METHODS}") from None

    def set_visible(self, method: str, visible: bool) -> None:
        """Show or hide ``method``'s map; a method switched on becomes the single view's."""
        ov = self._ov(method)
        if visible and self.focus_method != method:
            self.focus_method = method
            if self.layout == "single":
                self.events.layout.emit()
        if ov.visible != bool(visible):
            ov.visible = bool(visible)
            self.events.overlay.emit(method, OverlayChange.VISIBLE)

    def set_opacity(self, method: str, opacity: float) -> None:
        """Opacity in [0, 1]; emits ``overlay(method, OverlayChange.OPACITY)`` — views only, no recompute."""
        opacity = float(opacity)
        if not (0.0 <= opacity <= 1.0):
            raise ValueError(f"opacity must be between 0 and 1, got {opacity}")
        ov = self._ov(method)
        if ov.opacity != opacity:
            ov.opacity = opacity
            self.events.overlay.emit(method, OverlayChange.OPACITY)

    def set_colormap(self, method: str, colormap: str) -> None:
        ov = self._ov(method)
        allowed = colormaps_for(ov.signed)
        if colormap not in allowed:
            raise ValueError(f"colormap for {ov.label} must be one of {allowed}, got {colormap!r}")
        if ov.colormap != colormap:
            ov.colormap = colormap
            self.events.overlay.emit(method, OverlayChange.COLORMAP)

    def set_layer(self, method: str, layer: str | None) -> None:
        ov = self._ov(method)
        if layer is not None and ov.layers and layer not in ov.layers:
            raise ValueError(f"{ov.label} has no layer {layer!r}")
        if ov.layer != layer:
            ov.layer = layer
            ov.heatmap, ov.status, ov.progress = None, "idle", 0.0
            self.events.overlay.emit(method, OverlayChange.LAYER)

    def set_setting(self, method: str, key: str, value: Any) -> None:
        ov = self._ov(method)
        check_setting(method, key, value)  # ExplainError for a bad name, type or range
        if ov.settings.get(key) != value:
            ov.settings = {**ov.settings, key: value}
            ov.heatmap, ov.status, ov.progress = None, "idle", 0.0
            self.events.overlay.emit(method, OverlayChange.SETTINGS)

    def set_result(self, method: str, heatmap: Any) -> None:
        """The computed (or partial) map for the current study/class/settings, or None."""
        ov = self._ov(method)
        ov.heatmap = heatmap
        if heatmap is not None and not getattr(heatmap, "partial", False):
            ov.status, ov.progress, ov.message = "done", 1.0, ""
        self.events.overlay.emit(method, OverlayChange.HEATMAP)

    def set_status(
        self, method: str, status: str, progress: float = 0.0, message: str = ""
    ) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        ov = self._ov(method)
        ov.status, ov.progress, ov.message = status, float(np.clip(progress, 0.0, 1.0)), message
        self.events.overlay.emit(method, OverlayChange.STATUS)

    # ---------------------------------------------------------------- layout/privacy
    def set_agreement_layer(self, k: int) -> None:
        """Show where at least ``k`` of the shown maps put their top 10 % (0: hide it)."""
        k = int(k)
        if k < 0:
            raise ValueError(f"k must be 0 (off) or at least 1, got {k}")
        if k != self.agreement_k:
            self.agreement_k = k
            self.events.agreement.emit()

    def set_single_view(self, single: bool) -> None:
        """The single-method view on, or back to the grid."""
        self.set_layout("single" if single else "grid")

    def set_layout(self, layout: str) -> None:
        """Arrange the image area as ``layout`` (one of :data:`LAYOUTS`)."""
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if self.layout != layout:
            self.layout = layout
            self.events.layout.emit()

    def cycle_layout(self) -> str:
        """The next layout in :data:`LAYOUTS` order (the keyboard's V)."""
        self.set_layout(LAYOUTS[(LAYOUTS.index(self.layout) + 1) % len(LAYOUTS)])
        return self.layout

    def set_focus_method(self, method: str) -> None:
        """The method the single view shows."""
        self._ov(method)
        if self.focus_method != method:
            self.focus_method = method
            self.events.layout.emit()

    def cycle_focus(self, step: int = 1) -> str:
        """The next shown method (every method if none is shown) for the single view."""
        pool = [m for m in METHODS if self.overlays[m].visible] or list(METHODS)
        i = pool.index(self.focus_method) if self.focus_method in pool else -1
        self.set_focus_method(pool[(i + step) % len(pool)])
        return self.focus_method

    def set_hide_patient(self, hide: bool) -> None:
        if self.hide_patient != bool(hide):
            self.hide_patient = bool(hide)
            self.events.privacy.emit()

    # ---------------------------------------------------------------- keys
    def result_key(self, method: str) -> tuple | None:
        """Cache key of ``method``'s map for the current study and class, or None if not askable."""
        if self.study is None or self.target_class is None or self.model is None:
            return None
        ov = self._ov(method)
        return (
            study_key(self.study),
            self.model.path,
            int(self.target_class),
            method,
            ov.layer,
            tuple(sorted((k, _hashable(v)) for k, v in ov.settings.items())),
        )


def study_key(study: Study) -> tuple:
    """Identity of a study for caching: file path and frame."""
    return (str(study.path), int(study.frame))


def _hashable(v: Any) -> Any:
    if isinstance(v, list | tuple):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _hashable(x)) for k, x in v.items()))
    return v


class _Events:
    """The state's events, typed by their arguments (see :class:`ViewerState`)."""

    def __init__(self) -> None:
        self.studies: Event[[]] = Event("studies")
        self.study: Event[[]] = Event("study")
        self.display: Event[[]] = Event("display")
        self.prediction: Event[[]] = Event("prediction")
        self.target_class: Event[[]] = Event("target_class")
        #: (method, what changed)
        self.overlay: Event[[str, OverlayChange]] = Event("overlay")
        self.model: Event[[]] = Event("model")
        self.layout: Event[[]] = Event("layout")
        self.privacy: Event[[]] = Event("privacy")
        self.agreement: Event[[]] = Event("agreement")
