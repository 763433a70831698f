"""Errors as a radiologist should see them: a headline, a plain explanation, the traceback folded.

Like mnelab's error box: ``QMessageBox`` text = what failed, informative text = why and what to
do, detailed text (behind "Show Details…") = the traceback for a bug report. Dialogs are opened
non-blocking (``open()``), so a background error never freezes the event loop and tests never
hang on a modal ``exec``.

:class:`ErrorReporter` also installs ``sys.excepthook`` and ``threading.excepthook``: an
unexpected exception anywhere is logged, shown, and the app keeps running.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import QMessageBox, QWidget

from cxr_viewer.core.errors import CxrError

log = logging.getLogger("cxr_viewer")

MAX_OPEN_DIALOGS = 3

#: the hooks :meth:`ErrorReporter.install` replaces (and ``uninstall`` puts back)
_ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], Any]
_ThreadHook = Callable[["threading.ExceptHookArgs"], Any]


#: a trailing "(…)" that quotes a library: it starts with an exception's name, or reads like
#: one of its messages ("Expected explicit VR: …"); a plain aside "(a report, …)" stays
_LIBRARY_TEXT = re.compile(
    r"^(?P<plain>.*?)\s*\((?P<lib>(?:[A-Za-z_][\w.]*(?:Error|Exception|Warning)\b|[^():]+:\s).*)\)"
    r"\s*\.?$",
    re.DOTALL,
)


def split_library_text(why: str) -> tuple[str, str]:
    """(plain sentence, library message) of an error's "why" (the message may be empty).

    Readers see "it is a DICOM file but its data set could not be parsed"; pydicom's own words
    ("ValueError: Expected explicit VR, but found …") go to the details with the traceback.
    """
    m = _LIBRARY_TEXT.match(why.strip())
    if m is None or not m.group("plain").strip():
        return why.strip(), ""
    return m.group("plain").strip(), m.group("lib").strip()


def describe(exc: BaseException) -> tuple[str, str]:
    """(headline, explanation) for any exception; CxrError carries its own three parts."""
    if isinstance(exc, CxrError):
        body, _library = split_library_text(exc.why)
        if body and not body.endswith((".", "!", "?")):
            body += "."
        if body:
            body = body[0].upper() + body[1:]
        if exc.hint:
            body = f"{body}\n\n{exc.hint}" if body else exc.hint
        return exc.what, body
    return (
        "Something went wrong inside CXR Lens",
        f"{type(exc).__name__}: {exc}\n\nThe viewer keeps running. If this happens again, "
        "please send the details below to the developers.",
    )


class ErrorDialog(QMessageBox):
    """A non-modal error box: headline, explanation, folded traceback."""

    def __init__(
        self,
        headline: str,
        explanation: str,
        details: str = "",
        parent: QWidget | None = None,
        icon: QMessageBox.Icon = QMessageBox.Icon.Warning,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("ErrorDialog")
        self.setWindowTitle("CXR Lens")
        self.setIcon(icon)
        self.setText(headline)
        self.setInformativeText(explanation)
        if details:
            self.setDetailedText(details)
        self.setStandardButtons(QMessageBox.StandardButton.Ok)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)


class ErrorReporter(QObject):
    """Shows errors from any thread in the GUI thread; owns the exception hooks."""

    _post = Signal(object, object)  # (exception, traceback text)

    def __init__(self, parent_widget: QWidget | None = None) -> None:
        super().__init__()
        self.parent_widget = parent_widget
        self.shown: list[tuple[str, str]] = []  # (headline, explanation) of every error shown
        self.open_dialogs: list[ErrorDialog] = []
        self._post.connect(self._show_posted)
        self._old_hooks: tuple[_ExceptHook, _ThreadHook] | None = None

    def report(self, exc: BaseException, details: str | None = None) -> ErrorDialog | None:
        """Log ``exc`` and show it (safe to call from any thread)."""
        if details is None:
            details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        if isinstance(exc, CxrError):
            log.warning("%s", exc)
        else:
            log.error("unexpected error:\n%s", details)
        if threading.current_thread() is not threading.main_thread():
            self._post.emit(exc, details)
            return None
        return self._show(exc, details)

    @Slot(object, object)
    def _show_posted(self, exc: BaseException, details: str) -> None:
        self._show(exc, details)

    def _show(self, exc: BaseException, details: str) -> ErrorDialog | None:
        headline, explanation = describe(exc)
        if isinstance(exc, CxrError):
            library = split_library_text(exc.why)[1]
            if library:
                details = f"Library message: {library}\n\n{details}"
        self.shown.append((headline, explanation))
        self.open_dialogs = [d for d in self.open_dialogs if _alive(d)]
        if len(self.open_dialogs) >= MAX_OPEN_DIALOGS:
            return None  # a flood of errors: they are logged, three boxes are enough
        for d in self.open_dialogs:
            if d.text() == headline and d.informativeText() == explanation:
                return d
        dialog = ErrorDialog(headline, explanation, details, self.parent_widget)
        dialog.finished.connect(self._forget)
        self.open_dialogs.append(dialog)
        dialog.open()
        return dialog

    @Slot()
    def _forget(self) -> None:
        self.open_dialogs = [d for d in self.open_dialogs if _alive(d) and d.isVisible()]

    # ------------------------------------------------------------------ hooks
    def install(self) -> None:
        """Route uncaught exceptions (GUI thread and Python threads) to :meth:`report`."""
        self._old_hooks = (sys.excepthook, threading.excepthook)
        sys.excepthook = self._excepthook
        threading.excepthook = self._thread_hook

    def uninstall(self) -> None:
        if self._old_hooks is not None:
            sys.excepthook, threading.excepthook = self._old_hooks
            self._old_hooks = None

    def _excepthook(
        self, etype: type[BaseException], value: BaseException, tb: TracebackType | None
    ) -> None:
        if issubclass(etype, KeyboardInterrupt):
            sys.__excepthook__(etype, value, tb)
            return
        try:
            self.report(value, "".join(traceback.format_exception(etype, value, tb)))
        except Exception:  # noqa: BLE001 - the hook must never raise
            sys.__excepthook__(etype, value, tb)

    def _thread_hook(self, args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            self._excepthook(args.exc_type, args.exc_value, args.exc_traceback)


def _alive(widget: QWidget) -> bool:
    try:
        widget.objectName()
    except RuntimeError:  # the C++ object was deleted (WA_DeleteOnClose)
        return False
    return True
