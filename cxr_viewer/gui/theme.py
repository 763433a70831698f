"""The dark reading-room theme (Fusion style + dark palette + ``resources/style/dark.qss``)."""

from __future__ import annotations

import logging

from PySide6.QtGui import QColor, QIcon, QPalette
from PySide6.QtWidgets import QApplication, QStyleFactory

from cxr_viewer.core.paths import resources_dir

log = logging.getLogger(__name__)


def dark_palette() -> QPalette:
    p = QPalette()
    base, alt, text = QColor(27, 28, 30), QColor(35, 36, 39), QColor(214, 214, 214)
    p.setColor(QPalette.ColorRole.Window, base)
    p.setColor(QPalette.ColorRole.WindowText, text)
    p.setColor(QPalette.ColorRole.Base, QColor(21, 22, 23))
    p.setColor(QPalette.ColorRole.AlternateBase, alt)
    p.setColor(QPalette.ColorRole.ToolTipBase, alt)
    p.setColor(QPalette.ColorRole.ToolTipText, text)
    p.setColor(QPalette.ColorRole.Text, text)
    p.setColor(QPalette.ColorRole.Button, QColor(38, 40, 44))
    p.setColor(QPalette.ColorRole.ButtonText, text)
    p.setColor(QPalette.ColorRole.Highlight, QColor(61, 90, 128))
    p.setColor(QPalette.ColorRole.HighlightedText, QColor(255, 255, 255))
    p.setColor(QPalette.ColorRole.Link, QColor(138, 161, 189))
    for role in (
        QPalette.ColorRole.Text,
        QPalette.ColorRole.WindowText,
        QPalette.ColorRole.ButtonText,
    ):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor(110, 112, 116))
    return p


def apply_theme(app: QApplication) -> None:
    """Fusion style, dark palette, the stylesheet and the window icon."""
    fusion = QStyleFactory.create("Fusion")
    if fusion is not None:
        app.setStyle(fusion)
    app.setPalette(dark_palette())
    qss = resources_dir() / "style" / "dark.qss"
    try:
        app.setStyleSheet(qss.read_text(encoding="utf-8"))
    except OSError as exc:  # a missing stylesheet leaves the palette: still dark, still usable
        log.warning("stylesheet not loaded: %s", exc)
    icon = resources_dir() / "icons" / "cxr-lens.svg"
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))


def icon(name: str) -> QIcon:
    """An icon from ``resources/icons/<name>.svg`` (empty icon if missing)."""
    path = resources_dir() / "icons" / f"{name}.svg"
    return QIcon(str(path)) if path.is_file() else QIcon()
