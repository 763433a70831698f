"""The base of the viewer's non-visual parts: the controller and the parts it is made of.

A :class:`ViewerPart` works on the viewer's state (mostly through worker threads), says what it
does in short status-bar messages and reports what fails. The controller is one; the study
loader and the explanation scheduler are made by it and share its state and error reporter.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from .error_dialog import ErrorReporter
from .state import ViewerState
from .worker import Failure


class ViewerPart(QObject):
    """A non-visual part of the viewer, working on ``state`` and reporting with ``reporter``.

    A part made by another one passes ``owner.state, owner.reporter, owner``: it shares the
    owner's state and reporter and is its Qt child.
    """

    #: a short message for the status bar
    message = Signal(str)

    def __init__(
        self, state: ViewerState, reporter: ErrorReporter, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.state = state
        self.reporter = reporter

    def report_failure(self, message: str, failure: Failure) -> None:
        """A task failed: ``message`` in the status bar, then the failure reported."""
        self.message.emit(message)
        self.reporter.report(failure.exc, failure.traceback)
