"""A tiny evented-property helper for the viewer's state (no Qt).

napari's layer models and ndv's psygnal models keep state in plain Python objects whose setters
validate, store and emit; views subscribe and redraw. This is the smallest version of that idea:
an :class:`Event` is a list of callbacks called synchronously, in the order they connected.
Everything that changes the state runs on the GUI thread (workers post their results there
through Qt signals first), so no locking is needed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class Event:
    """A named notification with any number of listeners."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._callbacks: list[Callable[..., Any]] = []

    def connect(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        """Call ``callback(*args)`` on every :meth:`emit`; returns it (usable as a decorator)."""
        if callback not in self._callbacks:
            self._callbacks.append(callback)
        return callback

    def emit(self, *args: Any) -> None:
        """Call every listener with ``args``.

        A listener that raises does not stop the others: the exception goes to
        ``sys.excepthook`` (the viewer's shows it in the error dialog) after all have run.
        """
        errors: list[BaseException] = []
        for cb in list(self._callbacks):
            try:
                cb(*args)
            except Exception as exc:  # noqa: BLE001 - reported below, after the other listeners
                errors.append(exc)
        if errors:
            raise errors[0]

    def __len__(self) -> int:
        return len(self._callbacks)
