"""A tiny evented-property helper for the viewer's state (no Qt), with typed events.

napari's layer models and ndv's psygnal models keep state in plain Python objects whose setters
validate, store and emit; views subscribe and redraw. This is the smallest version of that idea:
an :class:`Event` is a list of callbacks called synchronously, in the order they connected.
Everything that changes the state runs on the GUI thread (workers post their results there
through Qt signals first), so no locking is needed.

An event is typed by its arguments (``Event[[str, OverlayChange]]``): mypy checks every
``emit`` and every listener connected to it. What changed in an overlay is an
:class:`OverlayChange` member, never a string, so a listener cannot test for a tag that no
setter emits.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Generic, ParamSpec

log = logging.getLogger(__name__)

P = ParamSpec("P")


class OverlayChange(enum.Enum):
    """What changed in one method's overlay (the second argument of ``events.overlay``)."""

    #: the map: a new (or partial) result, or none (new study, class, layer or settings)
    HEATMAP = "heatmap"
    #: shown or hidden
    VISIBLE = "visible"
    #: opacity only: views re-composite, nothing is recomputed
    OPACITY = "opacity"
    COLORMAP = "colormap"
    #: a new model: its layers, settings and whether the method applies
    CONFIG = "config"
    LAYER = "layer"
    SETTINGS = "settings"
    #: status, progress or message of the running explanation (frequent)
    STATUS = "status"


#: changes after which a shown map must be asked for again (cache or compute)
REQUESTS_A_MAP = frozenset({OverlayChange.VISIBLE, OverlayChange.LAYER, OverlayChange.SETTINGS})
#: changes after which the views colour the map again
RECOLORS = frozenset(
    {
        OverlayChange.HEATMAP,
        OverlayChange.COLORMAP,
        OverlayChange.CONFIG,
        OverlayChange.LAYER,
        OverlayChange.SETTINGS,
    }
)
#: changes that can add or remove a pane of the image area
RELAYOUTS = frozenset({OverlayChange.VISIBLE, OverlayChange.CONFIG})


class Event(Generic[P]):
    """A named notification with any number of listeners, typed by its arguments ``P``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._callbacks: list[Callable[P, object]] = []

    def connect(self, callback: Callable[P, object]) -> Callable[P, object]:
        """Call ``callback(*args)`` on every :meth:`emit`; returns it (usable as a decorator)."""
        if callback not in self._callbacks:
            self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callable[P, object]) -> None:
        """Stop calling ``callback`` (nothing happens if it was not connected)."""
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def emit(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Call every listener with ``args``.

        A listener that raises does not stop the others: the exception goes to
        ``sys.excepthook`` (the viewer's shows it in the error dialog) after all have run.
        """
        errors: list[BaseException] = []
        for cb in list(self._callbacks):
            try:
                cb(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - reported below, after the other listeners
                errors.append(exc)
        if errors:
            raise errors[0]

    def __len__(self) -> int:
        return len(self._callbacks)
