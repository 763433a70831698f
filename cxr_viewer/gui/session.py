"""The model as the viewer uses it: load, warm up, predict, explain. No Qt.

A :class:`ModelSession` is created in the GUI thread but every method that touches the model
runs in the model worker thread only (see :mod:`.worker`), so TensorFlow is used from one
thread. Explainers are built once per (method, layer, settings) and reused, so their compiled
functions are traced once (tracing holds the interpreter 0.2–0.3 s).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cxr_viewer.core.analysis import ExplainerCache, ExplainRequest, explain
from cxr_viewer.core.errors import ExplainError
from cxr_viewer.core.explain.registry import EXPLAINERS
from cxr_viewer.core.io.study import Study
from cxr_viewer.core.model.localization_card import localization_card
from cxr_viewer.core.model.model_card import model_card_lines
from cxr_viewer.core.progress import CancelToken, ProgressFn, no_progress

from .results import OverlayResult
from .state import METHODS, ModelInfo

if TYPE_CHECKING:
    from cxr_viewer.core.explain.base import Explainer, Heatmap
    from cxr_viewer.core.model.bundle import Bundle
    from cxr_viewer.core.model.inference import Classifier, Prediction

log = logging.getLogger(__name__)

#: the phases of :meth:`ModelSession.load` (values of ``ViewerState.model_status``)
ModelPhase = Literal["loading", "warming up"]
PhaseFn = Callable[[ModelPhase], None]


def no_phase(phase: ModelPhase) -> None:
    """A phase callback that ignores the phase."""


def summarize_data(meta: dict[str, Any]) -> str:
    """One or two lines about the training data from a bundle's metadata."""
    summary = meta.get("data_summary")
    if not summary:
        return "no training data summary in this bundle"
    if isinstance(summary, str):
        return summary if len(summary) <= 400 else summary[:400] + "…"
    if isinstance(summary, dict):
        parts = []
        for key, value in summary.items():
            if isinstance(value, dict):
                inner = ", ".join(f"{k} {v}" for k, v in value.items())
                parts.append(f"{key}: {inner}")
            elif isinstance(value, list | tuple):
                parts.append(f"{key}: {', '.join(map(str, value))}")
            else:
                parts.append(f"{key}: {value}")
        return "; ".join(parts)
    return str(summary)


def _import_explainer_libraries() -> None:
    """Import lime, shap and matplotlib now (worker thread, "warming up"), not on first use.

    An import runs module code under the interpreter lock for a second or so; done during the
    first explanation it would show as an event-loop stall while the user works. The
    garbage collector is paused meanwhile (:func:`~cxr_viewer.core.model.model_io.gc_paused`).
    """
    import importlib

    from cxr_viewer.core.model.model_io import importing

    # (all are imported statically elsewhere, so PyInstaller collects them)
    names = [lib for cls in EXPLAINERS.values() for lib in cls.libraries]
    for name in [*names, "matplotlib"]:  # matplotlib: overlay colormaps
        try:
            with importing(name):
                importlib.import_module(name)
        except ImportError as exc:  # the explainer reports it properly when asked
            log.warning("cannot import %s: %s", name, exc)


class ModelSession:
    """Owns the classifier and its explainers (used from the model worker thread only)."""

    def __init__(self) -> None:
        self.classifier: Classifier | None = None
        self.info: ModelInfo | None = None
        self._explainers: ExplainerCache | None = None
        self.explain_calls = 0  # how many explanations were computed (tests count them)
        #: method → why it does not apply to the loaded model (filled at load)
        self.unavailable: dict[str, str] = {}

    # ------------------------------------------------------------------ loading
    def load(
        self,
        path: str | Path,
        progress: ProgressFn = no_progress,
        cancel: CancelToken | None = None,
        phase: PhaseFn = no_phase,
    ) -> ModelInfo:
        """Open a bundle, load and warm up its model and explainers; returns what to show.

        ``phase`` is told when loading starts ("loading") and when warming up starts ("warming
        up": the model is loaded; its compiled functions and the explainers' libraries are
        being prepared), so the caller never has to read it from ``progress``'s messages.
        """
        from cxr_viewer.core.model.bundle import open_bundle

        phase("loading")
        progress(0.02, "Opening the model bundle…")
        bundle = open_bundle(path)
        progress(0.1, "Loading TensorFlow and the model…")
        from cxr_viewer.core.model.inference import Classifier

        clf = Classifier(bundle)
        if cancel is not None:
            cancel.raise_if_cancelled()
        phase("warming up")
        progress(0.6, "Warming up…")
        clf.warm_up()
        self.classifier, self._explainers = clf, ExplainerCache(clf)
        layers, defaults, settings = self._describe_explainers(bundle, clf)
        unavailable = dict(self.unavailable)
        meta = bundle.metadata
        info = ModelInfo(
            name=bundle.name,
            version=bundle.version,
            class_names=list(bundle.class_names),
            intended_use=bundle.intended_use,
            data_summary=summarize_data(meta),
            device=clf.device,
            forward_path=clf.forward_path,
            threshold=bundle.threshold,
            positive_class=bundle.positive_class,
            path=str(Path(path).resolve()),
            layers=layers,
            default_layers=defaults,
            settings=settings,
            metrics=meta["metrics"] if isinstance(meta.get("metrics"), dict) else {},
            card=model_card_lines(meta, short=True),
            card_details=model_card_lines(meta),
            kind=bundle.head.kind,
            thresholds=dict(bundle.thresholds),
            near_band=bundle.near_band,
            card_figures=bundle.card(),
            layer_sizes=self._layer_sizes(layers),
            unavailable=unavailable,
            sanity=_cached_sanity(clf),
            localization=localization_card(meta),
        )
        progress(0.75, "Warming up Grad-CAM…")
        self._warm_up_gradcam(defaults.get("gradcam"), settings.get("gradcam", {}))
        with_libraries = [c.display.short_label for c in EXPLAINERS.values() if c.libraries]
        progress(0.85, f"Loading {' and '.join(with_libraries) or 'explainers'}…")
        _import_explainer_libraries()
        self.info = info
        progress(1.0, "Model ready")
        return info

    def _describe_explainers(
        self, bundle: Bundle, clf: Classifier
    ) -> tuple[dict[str, list[str]], dict[str, str | None], dict[str, dict[str, Any]]]:
        from cxr_viewer.core.explain.registry import create_explainer, method_unavailable

        layers: dict[str, list[str]] = {}
        defaults: dict[str, str | None] = {}
        settings: dict[str, dict[str, Any]] = {}
        self.unavailable = {}  # shown in the method panel; the other methods run
        for method in METHODS:
            if method not in EXPLAINERS:
                continue
            reason = method_unavailable(method, bundle)
            if reason is None and EXPLAINERS[method].needs_background:
                reason = None if bundle.background() is not None else "no SHAP background set"
            if reason is not None:
                self.unavailable[method] = reason
                log.warning("%s is not available: %s", EXPLAINERS[method].label, reason)
                continue
            try:
                ex = create_explainer(method, clf, None)
                offered = list(ex.layers()) if ex.uses_layer else []
                default = ex.default_layer() if ex.uses_layer else None
            except ExplainError as exc:  # e.g. no layer SHAP can be computed at
                log.warning("%s is not available for this bundle: %s", method, exc)
                self.unavailable[method] = str(exc)
                continue
            settings[method] = {k: v for k, v in ex.settings.as_dict().items() if k != "layer"}
            if ex.uses_layer:
                layers[method] = offered
                defaults[method] = (
                    default if default in offered else (offered[0] if offered else None)
                )
        return layers, defaults, settings

    def _layer_sizes(self, layers: dict[str, list[str]]) -> dict[str, tuple[int, int]]:
        from cxr_viewer.core.explain.layers import spatial_sizes

        names = sorted({n for offered in layers.values() for n in offered})
        try:
            return spatial_sizes(self._require().model, names)
        except ExplainError as exc:
            log.warning("layer sizes unavailable: %s", exc)
            return {}

    def _warm_up_gradcam(self, layer: str | None, settings: dict[str, Any]) -> None:
        from cxr_viewer.core.explain.gradcam import GradCamExplainer

        if layer is None or self.classifier is None:
            return
        try:
            ex = self._explainer("gradcam", layer, settings)
            if isinstance(ex, GradCamExplainer):
                ex.warm_up(layer)
        except ExplainError as exc:
            log.warning("Grad-CAM warm-up failed: %s", exc)

    # ------------------------------------------------------------------ work
    def _require(self) -> Classifier:
        if self.classifier is None:
            raise ExplainError(
                "No model is loaded", "", "Open a model bundle (File ▸ Model ▸ Open model)."
            )
        return self.classifier

    def _explainer(self, method: str, layer: str | None, settings: dict[str, Any]) -> Explainer:
        full = dict(settings)
        if layer is not None:
            full["layer"] = layer
        return self._cache().get(method, full)

    def _cache(self) -> ExplainerCache:
        clf = self._require()
        if self._explainers is None or self._explainers.classifier is not clf:
            self._explainers = ExplainerCache(clf)
        return self._explainers

    def predict(
        self,
        study: Study,
        progress: ProgressFn = no_progress,
        cancel: CancelToken | None = None,
    ) -> Prediction:
        """The classifier's Prediction for ``study``."""
        from cxr_viewer.core.analysis import prepare

        clf = self._require()
        progress(0.1, "Predicting…")
        prediction = prepare(study, clf).prediction
        assert prediction is not None
        return prediction

    def explain(
        self,
        study: Study,
        method: str,
        target_class: int,
        layer: str | None,
        settings: dict[str, Any],
        progress: ProgressFn = no_progress,
        cancel: CancelToken | None = None,
        partial: Callable[[OverlayResult], None] | None = None,
        colormap: str | None = None,
    ) -> OverlayResult:
        """Explain ``study`` for ``target_class`` with ``method``; partial maps go to ``partial``.

        With ``colormap`` the screen-size colours are computed here too (worker thread).
        """
        from cxr_viewer.core.analysis import prepare

        full = dict(settings)
        if layer is not None:
            full["layer"] = layer
        self._explainer(method, layer, settings)  # a bad setting raises before it counts
        self.explain_calls += 1

        # the map stays at the model's input size; the screen copy is scaled to the study's shape
        size = (study.rows, study.columns)

        def _partial(hm: Heatmap) -> None:
            if partial is not None:
                partial(OverlayResult.from_heatmap(hm, colormap, size=size))

        # the map and its trust figures (deletion / insertion AUC, top-20 % drop): the pipeline
        analysis = explain(
            prepare(study, self._require(), predict=False),
            [ExplainRequest(method, full, int(target_class))],
            progress=progress,
            cancel=cancel,
            partial=_partial if partial is not None else None,
            explainers=self._cache(),
            raise_errors=True,
            check_applicable=False,
        )
        hm = analysis.results[-1].heatmap
        assert hm is not None  # raise_errors: a result without a map has raised
        return OverlayResult.from_heatmap(hm, colormap, size=size)


def _cached_sanity(clf: Classifier) -> dict[str, dict[str, Any]]:
    """Method → its cached sanity check on this model file (run by ``--self-test --sanity``)."""
    from cxr_viewer.core.evaluate.sanity import cached_result

    found = {}
    for method in EXPLAINERS:
        result = cached_result(clf, method)
        if result is not None:
            found[method] = result.as_dict()
    return found
