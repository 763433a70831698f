"""One interface for every explanation method.

An :class:`Explainer` is built from a :class:`~cxr_viewer.core.model.inference.Classifier` and its
settings, and computes a :class:`Heatmap` for one preprocessed model input and one target class.
Every explainer reports progress, stops promptly when cancelled (raising
:class:`~cxr_viewer.core.errors.Cancelled`), and gives the same result for the same seed.
"""

from __future__ import annotations

import dataclasses
import time
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Literal,
    Self,
    TypedDict,
    Unpack,
    get_args,
    get_origin,
    get_type_hints,
)

import numpy as np

from cxr_viewer.core.errors import ExplainError
from cxr_viewer.core.io.resize import resize_map
from cxr_viewer.core.io.study import Study
from cxr_viewer.core.model.preprocess import study_to_input
from cxr_viewer.core.progress import CancelToken, ProgressFn, no_progress

if TYPE_CHECKING:
    from cxr_viewer.core.model.inference import Classifier

PartialFn = Callable[["Heatmap"], None]


class Callbacks(TypedDict, total=False):
    """The caller's keyword arguments of every explain call (:meth:`Explainer.explain`,
    :func:`explain_map`, :func:`explain_study`, ``trust.explain_with_trust``), each optional.

    progress:
        Called with (fraction, message) as the method runs (default: nothing).
    cancel:
        A token checked before any model work and between batches (default: none).
    partial:
        Receives progressive maps where the method has them (default: none).
    """

    progress: ProgressFn
    cancel: CancelToken | None
    partial: PartialFn | None


@dataclass(frozen=True)
class DisplayDefaults:
    """How a method's map is shown until the user changes it.

    Attributes
    ----------
    short_label:
        The method's name on screen ("SHAP" rather than "SHAP (per layer)").
    colormap:
        A perceptually uniform map: sequential for non-negative maps, diverging for signed ones.
    opacity:
        Overlay opacity: enough to see the map, little enough to read the film through it.
    cutoff:
        Fraction of the map's scale below which it is drawn fully transparent.
    shortcut:
        The viewer's key that shows or hides the map (one letter, unique among methods).
    """

    short_label: str
    colormap: str
    opacity: float = 0.35
    cutoff: float = 0.1
    shortcut: str = ""


@dataclass(frozen=True)
class SampleControl:
    """A method's one "how many samples" setting, as the viewer and ``batch`` offer it.

    Attributes
    ----------
    key:
        The setting's name (a field of the method's ``settings_type``).
    choices:
        The values the viewer's panel offers.
    default:
        The viewer's default (the method's own default may be higher).
    tooltip:
        What the viewer's control means, in the panel's words.
    cli_help:
        Help of the ``--<method>-samples`` option of ``cxr-viewer batch``.
    """

    key: str
    choices: tuple[int, ...]
    default: int
    tooltip: str
    cli_help: str


def _type_name(hint: Any) -> str:
    if get_origin(hint) is Literal:
        return " or ".join(repr(a) for a in get_args(hint))
    if get_origin(hint) in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in get_args(hint))
    if hint is type(None):
        return "None"
    return {int: "a whole number", float: "a number", bool: "true/false", str: "text"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def _conform(value: Any, hint: Any) -> tuple[bool, Any]:
    """(fits, value as the field's type) for ``value`` against annotation ``hint``."""
    if isinstance(value, np.generic):
        value = value.item()  # numpy scalars from a GUI spin box or an array
    origin = get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        for arg in get_args(hint):
            fits, conformed = _conform(value, arg)
            if fits:
                return True, conformed
        return False, value
    if origin is Literal:
        return value in get_args(hint), value
    if hint is type(None):
        return value is None, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if hint is str:
        return isinstance(value, str), value
    return isinstance(value, hint), value


@dataclass(frozen=True)
class ExplainerSettings:
    """Base of every method's settings: a frozen dataclass, checked when it is made.

    Each method declares its own subclass (``GradCamSettings``, ``LimeSettings``, ...), whose
    fields are the method's options with their defaults and types. Making one, from code or
    from a dict (:meth:`from_mapping`, what the command line and the viewer pass), is the one
    validation path: an unknown name, a value of the wrong type or one out of range raises
    :class:`~cxr_viewer.core.errors.ExplainError` saying what, why and what to do.
    :meth:`as_dict` is what a :class:`Heatmap` records (plain values: CSV, PDF, DICOM).
    """

    #: the method's name in messages ("LIME")
    label: ClassVar[str] = "explanation"

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            fits, conformed = _conform(value, hints[f.name])
            if not fits:
                raise ExplainError(
                    f"{self.label} setting '{f.name}' cannot be {value!r}",
                    f"it must be {_type_name(hints[f.name])}.",
                    f"Give {f.name} a value of that kind (default: {f.default!r}).",
                )
            if conformed is not value:
                object.__setattr__(self, f.name, conformed)
        self.check()

    def check(self) -> None:
        """Range checks of a method's values (types are already checked); raise ExplainError."""

    def _at_least(self, **minimums: int) -> None:
        """Raise for the first named setting (unless None) below its minimum."""
        for name, low in minimums.items():
            value = getattr(self, name)
            if value is not None and value < low:
                raise self._out_of_range(name, f"at least {low}")

    def _out_of_range(self, name: str, allowed: str) -> ExplainError:
        """The error for setting ``name`` outside ``allowed`` (e.g. "at least 1")."""
        return ExplainError(
            f"{self.label} setting '{name}' cannot be {getattr(self, name)!r}",
            f"it must be {allowed}.",
            f"Choose {name} {allowed}.",
        )

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The settings' names, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None = None) -> Self:
        """Settings from a dict of overrides of the defaults (unknown names are refused)."""
        given = dict(values or {})
        unknown = sorted(set(given) - set(cls.names()))
        if unknown:
            raise ExplainError(
                f"Unknown {cls.label} setting(s): {', '.join(unknown)}",
                f"{cls.label} takes {', '.join(sorted(cls.names()))}.",
                "Check the spelling of the setting's name.",
            )
        return cls(**given)

    def replace(self, **changes: Any) -> Self:
        """A checked copy with ``changes``."""
        return self.from_mapping({**self.as_dict(), **changes})

    def as_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (what a Heatmap records)."""
        return dataclasses.asdict(self)


@dataclass
class Heatmap:
    """An explanation map and what produced it.

    Attributes
    ----------
    values:
        float32 (rows, columns), at the model's input size (from :meth:`Explainer.explain`
        and :func:`explain_map`; :func:`explain_study` resizes to the study's pixels).
        Views and exports scale it when they draw or write it. Signed where ``signed`` (positive: toward the
        target class), else non-negative.
    method, target_class, class_name, layer, settings, seed:
        What was asked for.
    runtime_s:
        Wall-clock seconds the explanation took.
    trust:
        Figures that say how far to trust the map (e.g. ``deletion_auc``, ``insertion_auc``,
        ``completeness_gap``).
    partial:
        True for a progressive, not yet final result (LIME while samples accumulate).
    status, note:
        ``"ok"``, or ``"no signal"`` for a map with nothing to show (zero or the same value
        everywhere, :func:`signal_problem`); ``note`` then says why and what to try instead.
        Such a map gets no trust figures (:func:`~cxr_viewer.core.evaluate.trust.explain_with_trust`).
    """

    values: np.ndarray
    method: str
    target_class: int
    class_name: str
    signed: bool
    layer: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    runtime_s: float = 0.0
    trust: dict[str, float] = field(default_factory=dict)
    partial: bool = False
    status: str = "ok"
    note: str = ""

    @property
    def status_text(self) -> str:
        """The map's status in one line: ``ok``, or ``no signal: <why>; <what to try>``."""
        return self.status if not self.note else f"{self.status}: {self.note}"

    def resized(self, rows: int, columns: int) -> Heatmap:
        """The same map at (rows, columns) (:func:`~cxr_viewer.core.io.resize.resize_map`)."""
        if self.values.shape == (rows, columns):
            return self
        return replace(self, values=resize_map(self.values, rows, columns))


class Explainer(ABC):
    """Base of every explanation method.

    Subclasses set the class attributes below and implement :meth:`explain`. These attributes
    are the one place a method's facts live: the viewer (panel order, labels, shortcut,
    colormap, opacity, settings shown), ``cxr-viewer batch`` (options and extra columns), the
    self-test and the contract test read them through :mod:`.registry`. ``settings`` is an
    instance of the method's ``settings_type`` (a frozen :class:`ExplainerSettings` dataclass,
    checked when made); its :meth:`~ExplainerSettings.as_dict` is recorded in every Heatmap.
    """

    #: registry key and ``Heatmap.method``
    name: ClassVar[str]
    #: full name in messages ("SHAP (per layer)"); ``display.short_label`` is the on-screen one
    label: ClassVar[str]
    #: computed from the model's gradients (a method without declares nothing)
    needs_gradients: ClassVar[bool] = False
    #: positive toward the target class, negative against it (diverging colormaps)
    signed: ClassVar[bool]
    #: computed at a layer the user picks (implements :meth:`layers` and ``default_layer``)
    uses_layer: ClassVar[bool] = False
    #: the method's settings: names, types, defaults and range checks
    settings_type: ClassVar[type[ExplainerSettings]] = ExplainerSettings
    settings: ExplainerSettings
    display: ClassVar[DisplayDefaults]
    #: the "how many samples" control of the viewer's panel and of ``batch`` (None: none)
    samples: ClassVar[SampleControl | None] = None
    #: short settings that still prove the method runs end to end (``--self-test``)
    quick_settings: ClassVar[dict[str, Any]] = {}
    #: needs the bundle's SHAP background set (not offered for a bundle without one)
    needs_background: ClassVar[bool] = False
    #: runs many model batches, checks cancel between them and reports partial maps
    batched: ClassVar[bool] = False
    #: seconds between two partial maps the viewer draws while the method runs
    partial_interval_s: ClassVar[float] = 0.25
    #: third-party modules the method imports when it first runs (the viewer imports them while
    #: the model warms up, so the first explanation does not stall)
    libraries: ClassVar[tuple[str, ...]] = ()
    #: extra figures a Heatmap of this method carries, as ``batch`` columns
    #: ``<name>_<field>`` (values from :meth:`summary`)
    summary_fields: ClassVar[tuple[str, ...]] = ()
    #: largest GPU-vs-CPU difference of the map allowed by the device comparison, relative to
    #: the CPU map's largest value (cxr_viewer.core.device_compare)
    device_tolerance: ClassVar[float] = 0.05

    @classmethod
    def summary(cls, heatmap: Heatmap) -> dict[str, Any]:
        """The ``summary_fields`` of ``heatmap`` (empty unless a method reports some)."""
        return {}

    def __init__(
        self,
        classifier: Classifier,
        settings: ExplainerSettings | Mapping[str, Any] | None = None,
    ) -> None:
        """``settings``: the method's settings object, or a dict overriding its defaults."""
        self.classifier = classifier
        if isinstance(settings, ExplainerSettings):
            if not isinstance(settings, self.settings_type):
                raise ExplainError(
                    f"{self.label} cannot use {type(settings).__name__}",
                    f"it takes {self.settings_type.__name__}.",
                    "Pass the method's own settings (or a dict of them).",
                )
            self.settings = settings
        else:
            self.settings = self.settings_type.from_mapping(settings)

    def layers(self) -> list[str]:
        """The layers this method can be computed at (empty if it takes none)."""
        return []

    def default_layer(self) -> str | None:
        """The layer used when the settings name none (None for a method without layers)."""
        return None

    def explain(self, x: np.ndarray, target_class: int, **callbacks: Unpack[Callbacks]) -> Heatmap:
        """Explain model input ``x`` (h, w, c), preprocessed, for ``target_class``.

        Returns a Heatmap at the model's input size. ``callbacks``: ``progress``, ``cancel`` and
        ``partial`` (:class:`Callbacks`). The same for every method: the input and the class are
        checked, a cancelled token stops it before any model work, the clock starts, then the
        method's :meth:`compute` runs and builds its maps with :meth:`Run.heatmap`.
        """
        from ._common import check_input, check_target

        start = time.perf_counter()
        x = check_input(self.classifier, x)
        t = check_target(self.classifier, target_class)
        run = Run(self, t, start, **callbacks)
        if run.cancel is not None:
            run.cancel.raise_if_cancelled()
        return self.compute(x, run)

    @abstractmethod
    def compute(self, x: np.ndarray, run: Run) -> Heatmap:
        """The method itself, on a checked input ``x`` for ``run.target_class``.

        Report ``run.progress``, check ``run.cancel`` between batches, send partial maps to
        ``run.partial`` (when not None), and build every map with ``run.heatmap(values, ...)``.
        """


@dataclass
class Run:
    """One :meth:`Explainer.explain` call: its explainer, checked target class, start time and
    the caller's progress, cancel and partial-map callbacks."""

    explainer: Explainer
    target_class: int
    start: float
    progress: ProgressFn = no_progress
    cancel: CancelToken | None = None
    partial: PartialFn | None = None

    def heatmap(self, values: np.ndarray, **fields: Any) -> Heatmap:
        """A Heatmap of this run: method, class, signedness and seconds so far filled in.

        ``fields`` are the other :class:`Heatmap` fields (``layer``, ``settings``, ``seed``,
        ``trust``, ``partial``, or ``method`` for a variant such as "gradcam++").
        """
        ex = self.explainer
        fields.setdefault("method", ex.name)
        fields.setdefault("signed", ex.signed)
        return Heatmap(
            values=np.asarray(values, dtype=np.float32),
            target_class=self.target_class,
            class_name=ex.classifier.class_names[self.target_class],
            runtime_s=time.perf_counter() - self.start,
            **fields,
        )


def explain_map(
    explainer: Explainer, x: np.ndarray, target_class: int, **callbacks: Unpack[Callbacks]
) -> Heatmap:
    """Explain model input ``x``: the map at the model's input size, its run time set, and a map
    that shows nothing (:func:`signal_problem`) marked :data:`NO_SIGNAL` with what to try.

    The map (and every partial map) stays at the model's input size: whoever shows or writes it
    at a study's size scales it then (:func:`~cxr_viewer.core.io.resize.resize_map`,
    :meth:`Heatmap.resized`). The trust figures are added above this layer
    (:func:`cxr_viewer.core.evaluate.trust.explain_with_trust`).
    """
    start = time.perf_counter()
    hm = explainer.explain(x, target_class, **callbacks)
    hm.runtime_s = hm.runtime_s or (time.perf_counter() - start)
    problem = signal_problem(hm.values)
    if problem is not None:  # nothing to rank pixels by: deletion/insertion would be noise
        if hm.settings.get("no_evidence"):
            at = f" at '{hm.layer}'" if hm.layer else ""
            remedy = (
                f"no location{at} adds evidence for {hm.class_name}: the model finds none on "
                "this film; explain the other class to see what the decision rests on"
            )
        else:
            remedy = no_signal_remedy(hm.method, hm.layer)
        hm.status, hm.note = NO_SIGNAL, f"{problem}; {remedy}"
    return hm


#: :attr:`Heatmap.status` of a map with nothing to show
NO_SIGNAL = "no signal"


def signal_problem(values: np.ndarray) -> str | None:
    """Why map ``values`` shows nothing (zero, or one value, everywhere), or None if it shows
    something. Such a map is blank once drawn, and ranking its pixels for the deletion and
    insertion curves (Petsiuk et al. 2018) would rank noise."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or not np.all(np.isfinite(v)):
        return None  # not this check's business: the explainers refuse non-finite maps
    top = float(np.max(np.abs(v)))
    if top == 0.0:
        return "the map is zero everywhere"
    if float(np.ptp(v)) <= 1e-6 * top:
        return f"the map has the same value ({float(v.flat[0]):.3g}) everywhere"
    return None


def no_signal_remedy(method: str, layer: str | None) -> str:
    """What to try when a map of ``method`` (at ``layer``) has no signal (the usual cause
    first)."""
    if method.startswith("gradcam"):
        at = f" '{layer}'" if layer else ""
        return (
            f"at layer{at} the class's gradients or the ReLU feature maps are zero (a small last "
            "layer, dead channels); choose an earlier, larger layer, or explain the other class"
        )
    if layer:
        return (
            f"the prediction does not change with layer '{layer}' here; choose another "
            "layer, or explain the other class"
        )
    return (
        "the prediction does not change when parts of the image change; explain the other "
        "class, or use smaller patches or more samples"
    )


def explain_study(
    explainer: Explainer, study: Study, target_class: int, **callbacks: Unpack[Callbacks]
) -> Heatmap:
    """Explain a study (shared preprocessing), no trust figures; the map and every partial
    map resized to the study's pixels (for callers that compare or check maps at that size)."""
    partial = callbacks.get("partial")

    def _partial(h: Heatmap) -> None:
        if partial is not None:
            partial(h.resized(study.rows, study.columns))

    resized: Callbacks = {**callbacks, "partial": _partial if partial is not None else None}
    x = study_to_input(study, explainer.classifier.spec)
    hm = explain_map(explainer, x, target_class, **resized)
    return hm.resized(study.rows, study.columns)
