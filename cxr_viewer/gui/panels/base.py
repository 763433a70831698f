"""What the side panels share: a named widget bound to the viewer state, and wrapped labels."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QLabel, QLayout, QSizePolicy, QVBoxLayout, QWidget

from cxr_viewer.gui.state import ViewerState


class StatePanel(QWidget):
    """A side panel named ``object_name`` (the theme's selector), with a vertical layout.

    Parameters
    ----------
    state : ViewerState
        The state the panel shows and changes (kept as ``self.state``).
    object_name : str
        The Qt object name, used by the style sheet and by tests to find the panel.
    margin : int
        Contents margin of ``self.box`` in pixels on every side.
    """

    def __init__(
        self,
        state: ViewerState,
        object_name: str,
        parent: QWidget | None = None,
        margin: int = 6,
    ) -> None:
        super().__init__(parent)
        self.setObjectName(object_name)
        self.state = state
        self.box = QVBoxLayout(self)
        self.box.setContentsMargins(margin, margin, margin, margin)


def add_label(layout: QLayout, text: str, object_name: str) -> QLabel:
    """A word-wrapped label named ``object_name``, appended to ``layout``."""
    label = QLabel(text)
    label.setObjectName(object_name)
    label.setWordWrap(True)
    layout.addWidget(label)
    return label


class ElidedLabel(QLabel):
    """One line of plain text cut with "…" to the space it has; the whole text in its tooltip.

    Its size hint never grows with the text beyond ``preferred_width`` (default: a fixed 60
    px), and its minimum is 20 px, so a long message cannot widen a dock or the window.
    """

    def __init__(
        self,
        text: str = "",
        parent: QWidget | None = None,
        mode: Qt.TextElideMode = Qt.TextElideMode.ElideRight,
        preferred_width: int | None = None,
    ) -> None:
        super().__init__(parent)
        self._full = ""
        self._mode = mode
        self._preferred = preferred_width
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(20)
        self.set_full_text(text)

    def set_full_text(self, text: str, tooltip: str | None = None) -> None:
        """Show ``text`` (elided to fit); the tooltip is ``tooltip`` or the whole text."""
        self._full = text or ""
        self.setToolTip(tooltip if tooltip is not None else self._full)
        self._elide()
        if self._preferred is not None:
            self.updateGeometry()  # the size hint follows the text, up to preferred_width

    setText = set_full_text  # noqa: N815 - QLabel's name, so callers need not know

    def shown_text(self) -> str:
        """The text as drawn (with "…" when cut)."""
        return super().text()

    def text(self) -> str:  # the whole text, as a plain QLabel would return it
        return self._full

    def is_elided(self) -> bool:
        return self.shown_text() != self._full

    def _elide(self) -> None:
        width = max(self.contentsRect().width(), 10)
        shown = self.fontMetrics().elidedText(self._full, self._mode, width)
        QLabel.setText(self, shown)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._elide()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(20, super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        if self._preferred is None:
            return QSize(60, super().sizeHint().height())
        m = self.contentsMargins()
        wanted = self.fontMetrics().horizontalAdvance(self._full) + m.left() + m.right() + 4
        return QSize(max(20, min(wanted, self._preferred)), super().sizeHint().height())
