"""What the side panels share: a named widget bound to the viewer state, and wrapped labels."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QLayout, QVBoxLayout, QWidget

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
