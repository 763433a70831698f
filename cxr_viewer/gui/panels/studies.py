"""The study list: one row per file with its thumbnail (filled in by a background worker)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSignalBlocker, QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QWidget

from cxr_viewer.gui.state import ViewerState

THUMB = 72


class StudyList(QListWidget):
    """Lists ``state.studies``; choosing a row asks to open it (``openRequested(index)``)."""

    openRequested = Signal(int)

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("StudyList")
        self.viewer_state = state  # not `state`: QAbstractItemView.state() exists
        self.setIconSize(QSize(THUMB, THUMB))
        self.setUniformItemSizes(True)
        self.setWordWrap(False)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # the full path is the tooltip
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._thumbs: dict[Path, QIcon] = {}
        self._unreadable: set[str] = set()
        self._placeholder = self._blank()
        self.currentRowChanged.connect(self._row_changed)
        state.events.studies.connect(self.rebuild)
        state.events.study.connect(self._select_current)
        self.rebuild()

    def _row_changed(self, row: int) -> None:
        if row >= 0 and row != self.viewer_state.index:
            self.openRequested.emit(row)

    def _blank(self) -> QIcon:
        pm = QPixmap(THUMB, THUMB)
        pm.fill(Qt.GlobalColor.black)
        return QIcon(pm)

    def rebuild(self) -> None:
        with QSignalBlocker(self):
            self.clear()
            for p in self.viewer_state.studies:
                item = QListWidgetItem(self._thumbs.get(p, self._placeholder), p.name)
                item.setToolTip(str(p))
                item.setData(Qt.ItemDataRole.UserRole, str(p))
                # as wide as the list: a longer name is elided (middle), never scrolled
                item.setSizeHint(QSize(max(60, self.width() - 24), THUMB + 8))
                self.addItem(item)
                if str(p) in self._unreadable:
                    self._mark(item, p)
        self._select_current()

    def _select_current(self) -> None:
        with QSignalBlocker(self):
            if 0 <= self.viewer_state.index < self.count():
                self.setCurrentRow(self.viewer_state.index)

    def set_thumbnail(self, path: Path, image: QImage) -> None:
        icon = QIcon(QPixmap.fromImage(image))
        self._thumbs[Path(path)] = icon
        for i in range(self.count()):
            item = self.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == str(path):
                item.setIcon(icon)

    def mark_unreadable(self, path: Path) -> None:
        """Grey out a file that could not be read (its error was shown when it was opened)."""
        self._unreadable.add(str(path))
        for i in range(self.count()):
            item = self.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == str(path):
                self._mark(item, Path(path))

    @staticmethod
    def _mark(item: QListWidgetItem, path: Path) -> None:
        item.setForeground(Qt.GlobalColor.darkGray)
        item.setText(f"{path.name} (unreadable)")
        item.setToolTip(f"{path}\ncould not be read (the error was shown when it was opened)")

    def is_unreadable(self, path: Path) -> bool:
        return str(path) in self._unreadable

    def has_thumbnail(self, path: Path) -> bool:
        return Path(path) in self._thumbs
