"""A colour bar for one overlay: the colormap strip with its scale and what the ends mean."""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget

from cxr_viewer.core.overlay import colorbar_image
from cxr_viewer.gui.imaging import rgba_qimage


class ColorBar(QWidget):
    """Horizontal legend: low end left, high end right, labelled ``−vmax … 0 … +vmax``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ColorBar")
        self.setMinimumHeight(46)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self._image = None
        self._signed = False
        self._vmax: float | None = None
        self._class = ""
        self._strip_key: tuple | None = None

    def set_scale(self, colormap: str, signed: bool, vmax: float | None, class_name: str) -> None:
        if (colormap, signed) != self._strip_key:
            strip = colorbar_image(
                signed=signed, colormap=colormap, vertical=False, with_alpha=True
            )
            self._image = rgba_qimage(strip)
            self._strip_key = (colormap, signed)
            self.update()
        if (signed, vmax, class_name) != (self._signed, self._vmax, self._class):
            self._signed, self._vmax, self._class = signed, vmax, class_name
            self.update()

    def describe(self) -> tuple[str, str, str]:
        """(left, right, caption) labels as drawn."""
        v = f"{self._vmax:.3g}" if self._vmax is not None else "max"
        if self._signed:
            return f"−{v}", f"+{v}", f"blue: against {self._class} · red: toward it"
        return "0", v, f"evidence for {self._class}"

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        if self._image is None:
            return
        p = QPainter(self)
        bar = QRectF(4, 2, self.width() - 8, 12)
        p.fillRect(bar, QColor(40, 40, 40))
        p.drawImage(bar, self._image)
        p.setPen(QColor(200, 200, 200))
        left, right, caption = self.describe()
        text_rect = QRectF(4, 15, self.width() - 8, self.height() - 15)
        top = Qt.AlignmentFlag.AlignTop
        p.drawText(text_rect, Qt.AlignmentFlag.AlignLeft | top, left)
        p.drawText(text_rect, Qt.AlignmentFlag.AlignRight | top, right)
        p.setPen(QColor(150, 156, 164))
        p.drawText(text_rect, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom, caption)
        p.end()
