"""Progress reporting and cancellation shared by every long-running core function.

Core functions take ``progress`` (a callable receiving a fraction in [0, 1] and a short
message) and ``cancel`` (a :class:`CancelToken`). Workers in the GUI connect them to a progress
bar and a Cancel button; the CLI connects them to tqdm. Neither knows about Qt.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from cxr_viewer.core.errors import Cancelled

ProgressFn = Callable[[float, str], None]


def no_progress(fraction: float, message: str = "") -> None:
    """A progress callback that ignores its arguments."""


class CancelToken:
    """A thread-safe flag that long work polls to stop promptly."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the work to stop at its next check."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise :class:`~cxr_viewer.core.errors.Cancelled` if :meth:`cancel` was called."""
        if self._event.is_set():
            raise Cancelled("Cancelled", "The user cancelled the operation.")
