"""The one analysis pipeline: study → model input → prediction → explanations → trust.

Every caller — the viewer's model session, ``cxr-viewer batch`` (local and Ray engines),
``cxr-viewer localize``, the self-test, the GPU-vs-CPU comparison
(:mod:`cxr_viewer.core.device_compare`) and the DICOM writers that take its result — runs a
study through :func:`analyze` (or its two halves, :func:`prepare` and :func:`explain`) and reads
the :class:`Analysis` it returns. The engines differ only in how they schedule it: the viewer on
its model worker thread, one request at a time with partial maps; ``batch`` one file after
another or on a pool of Ray workers.

A request (:class:`ExplainRequest`) names a method, its settings, the class to explain (None:
the predicted class) and whether to add the trust figures. Each request's outcome is a
:class:`MethodResult`: its :class:`~cxr_viewer.core.explain.base.Heatmap` (at the model's input
size), or why the method does not apply to the model, or the exception it raised — one failing
method never stops the others (``cancel`` does).

Importing this module imports no TensorFlow.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from cxr_viewer.core.errors import Cancelled
from cxr_viewer.core.progress import CancelToken, ProgressFn, no_progress

if TYPE_CHECKING:
    import numpy as np

    from cxr_viewer.core.explain.base import Explainer, Heatmap, PartialFn
    from cxr_viewer.core.io.study import Study
    from cxr_viewer.core.model.inference import Classifier, Prediction


@dataclass(frozen=True)
class ExplainRequest:
    """One explanation to compute.

    ``settings`` override the method's defaults (a ``layer`` key chooses its layer); ``target``
    is the class to explain (None: the predicted one); ``trust`` adds the deletion / insertion
    figures (:func:`~cxr_viewer.core.evaluate.trust.explain_with_trust`), seeded by ``seed``.
    """

    method: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    target: int | None = None
    trust: bool = True
    seed: int = 0


@dataclass
class MethodResult:
    """What one :class:`ExplainRequest` gave: a map, a reason it does not apply, or an error."""

    request: ExplainRequest
    target: int
    heatmap: Heatmap | None = None
    #: why the method does not apply to this model (nothing was computed), or None
    not_applicable: str | None = None
    #: the exception the explanation raised, or None
    error: Exception | None = None
    seconds: float = 0.0

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def ok(self) -> bool:
        """A map was computed (it may still have no signal: see ``heatmap.status``)."""
        return self.heatmap is not None


class ExplainerCache:
    """Explainers by (method, settings), built once and reused (their compiled functions are
    traced once). One per model: the viewer's session keeps one per loaded model, a batch run
    one per process."""

    def __init__(self, classifier: Classifier) -> None:
        self.classifier = classifier
        self._made: dict[tuple[Any, ...], Explainer] = {}

    def get(self, method: str, settings: Mapping[str, Any]) -> Explainer:
        from cxr_viewer.core.explain.registry import create_explainer

        key = (method, tuple(sorted((k, repr(v)) for k, v in settings.items())))
        ex = self._made.get(key)
        if ex is None:
            ex = create_explainer(method, self.classifier, dict(settings))
            self._made[key] = ex
        return ex


@dataclass
class Analysis:
    """A study as the model sees it, its prediction and the explanations asked for.

    ``x`` is the model input (preprocessed once, shared by every method); ``prediction`` is None
    only when :func:`prepare` was told not to predict; ``timings`` holds seconds per step
    (``input``, ``predict`` and ``<method>`` for each request, the last one per method).
    """

    study: Study
    classifier: Classifier
    x: np.ndarray
    prediction: Prediction | None
    results: list[MethodResult] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def predicted_index(self) -> int:
        if self.prediction is None:
            raise ValueError("this analysis was prepared without a prediction")
        return self.prediction.predicted_index

    def target_of(self, request: ExplainRequest) -> int:
        """The class ``request`` explains: its own, else the predicted one."""
        return self.predicted_index if request.target is None else int(request.target)

    def result(self, method: str, target: int | None = None) -> MethodResult | None:
        """The last result of ``method`` (for class ``target``, when given)."""
        for r in reversed(self.results):
            if r.method == method and (target is None or r.target == target):
                return r
        return None

    def heatmaps(self, *, with_signal: bool = False) -> dict[str, Heatmap]:
        """Method → its map (the last per method); ``with_signal``: only maps with status ok."""
        out: dict[str, Heatmap] = {}
        for r in self.results:
            if r.heatmap is not None and (not with_signal or r.heatmap.status == "ok"):
                out[r.method] = r.heatmap
        return out

    def most_faithful(self) -> str | None:
        """The method whose map the trust figures rank first
        (:func:`~cxr_viewer.core.evaluate.trust.most_faithful`)."""
        from cxr_viewer.core.evaluate.trust import most_faithful

        return most_faithful({m: hm.trust for m, hm in self.heatmaps(with_signal=True).items()})

    def agreement(self, labels: Mapping[str, str]) -> tuple[str, str] | None:
        """(agreement in words, pair summary) of the maps with signal, or None with fewer than
        two (:mod:`~cxr_viewer.core.evaluate.agreement`)."""
        from cxr_viewer.core.evaluate.agreement import agreement_summary, agreement_words, pairwise

        maps = self.heatmaps(with_signal=True)
        if len(maps) < 2:
            return None
        names = list(maps)
        pairs = pairwise({m: hm.values for m, hm in maps.items()})
        return agreement_words(pairs, names, dict(labels)), agreement_summary(pairs)


def prepare(study: Study, classifier: Classifier, *, predict: bool = True) -> Analysis:
    """The study's model input and (``predict``) prediction; raises what reading them raises."""
    from cxr_viewer.core.model.preprocess import study_to_input

    t0 = time.perf_counter()
    x = study_to_input(study, classifier.spec)
    t1 = time.perf_counter()
    prediction = None
    if predict:
        prediction = classifier.make_prediction(classifier.predict_inputs(x[None])[0])
    t2 = time.perf_counter()
    timings = {"input": t1 - t0, **({"predict": t2 - t1} if predict else {})}
    return Analysis(study, classifier, x, prediction, timings=timings)


def not_applicable(classifier: Classifier, method: str) -> str | None:
    """Why ``method`` does not apply to the classifier's bundle, or None."""
    from cxr_viewer.core.explain.registry import method_unavailable

    bundle = getattr(classifier, "bundle", None)
    return method_unavailable(method, bundle) if bundle is not None else None


def explain(
    analysis: Analysis,
    requests: Sequence[ExplainRequest],
    *,
    cancel: CancelToken | None = None,
    progress: ProgressFn = no_progress,
    partial: PartialFn | None = None,
    explainers: ExplainerCache | None = None,
    on_result: Callable[[MethodResult], None] | None = None,
    raise_errors: bool = False,
    check_applicable: bool = True,
) -> Analysis:
    """Add one :class:`MethodResult` per request to ``analysis`` (and return it).

    A method that does not apply is recorded as such; an exception is recorded in its result
    (cancelling raises :class:`~cxr_viewer.core.errors.Cancelled`; ``raise_errors`` raises every
    exception instead, as the viewer wants). ``check_applicable=False`` skips the bundle's
    list of methods that do not apply (the viewer offers only those that do). ``on_result`` is
    called with each result as it is done (e.g. to write its files).
    """
    from cxr_viewer.core.evaluate.trust import explain_with_trust

    cache = explainers if explainers is not None else ExplainerCache(analysis.classifier)
    for request in requests:
        result = MethodResult(request, analysis.target_of(request))
        if check_applicable:
            result.not_applicable = not_applicable(analysis.classifier, request.method)
        if result.not_applicable is None:
            t0 = time.perf_counter()
            try:
                result.heatmap = explain_with_trust(
                    cache.get(request.method, request.settings),
                    analysis.x,
                    result.target,
                    trust=request.trust,
                    seed=request.seed,
                    progress=progress,
                    cancel=cancel,
                    partial=partial,
                )
            except Cancelled:
                raise
            except Exception as exc:  # one failing method never stops the others
                if raise_errors:
                    raise
                result.error = exc
            result.seconds = time.perf_counter() - t0
            analysis.timings[request.method] = result.seconds
        analysis.results.append(result)
        if on_result is not None:
            on_result(result)
    return analysis


class ExplainOptions(TypedDict, total=False):
    """The options :func:`analyze` passes on to :func:`explain` (see there)."""

    partial: PartialFn | None
    explainers: ExplainerCache | None
    on_result: Callable[[MethodResult], None] | None
    raise_errors: bool
    check_applicable: bool


def analyze(
    study: Study,
    classifier: Classifier,
    requests: Sequence[ExplainRequest] = (),
    cancel: CancelToken | None = None,
    progress: ProgressFn = no_progress,
    *,
    predict: bool = True,
    **options: Unpack[ExplainOptions],
) -> Analysis:
    """Prepare ``study`` (model input, prediction) and explain it for every request.

    Without ``predict`` every request must name its ``target``. ``options``: those of
    :func:`explain`.
    """
    analysis = prepare(study, classifier, predict=predict)
    return explain(analysis, requests, cancel=cancel, progress=progress, **options)
