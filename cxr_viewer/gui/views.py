"""The image views: zoom (wheel, fit, 1:1), pan (left drag), window/level (right drag).

An :class:`ImageView` shows the study in scene coordinates equal to study pixels, whatever the
resolution of the pixmaps it draws (screen-size previews are scaled up by their item transform).
Overlay items sit above the image; their opacity is an item property, so fading an overlay
repaints without touching the map. :class:`ViewLink` keeps zoom and pan of several views in step.
Views own no state: window/level drags are reported as signals and the state decides.
A view draws its caption (top left), verdict badges under it and its legends (bottom left)
itself, over the image: they never change the size of anything around the view.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter, QPixmap, QTransform
from PySide6.QtWidgets import QGraphicsPixmapItem, QGraphicsScene, QGraphicsView, QWidget

#: badge colours by verdict level (cxr_viewer.core.evaluate.trust.LEVELS)
BADGE_COLORS = {
    "good": QColor(46, 125, 50),
    "warn": QColor(176, 110, 0),
    "bad": QColor(183, 28, 28),
    "info": QColor(69, 90, 100),
}


@dataclass
class Legend:
    """A colour bar drawn inside a view: the strip, its two ends and a caption."""

    title: str
    strip: QImage
    low: str
    high: str
    caption: str


ZOOM_STEP = 1.25
ZOOM_MIN, ZOOM_MAX = 0.02, 40.0


class ImageView(QGraphicsView):
    """One image with optional overlays; emits zoom/pan and window/level gestures."""

    #: (dx, dy) in screen pixels since the last report while the right button is held
    windowDragged = Signal(float, float)
    windowDragFinished = Signal()
    #: zoom or pan changed (for linked views)
    viewChanged = Signal()
    #: the pointer is over study pixel (x, y) (or (-1, -1) when off the image)
    hovered = Signal(int, int)
    #: files dropped on the view
    filesDropped = Signal(list)

    def __init__(self, caption: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ImageView")
        self.caption = caption
        self._scene = QGraphicsScene(self)
        self.setScene(self._scene)
        self.setBackgroundBrush(QColor(0, 0, 0))
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setMouseTracking(True)
        self.setAcceptDrops(True)
        self._image_item = QGraphicsPixmapItem()
        self._image_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._scene.addItem(self._image_item)
        self._overlays: dict[str, QGraphicsPixmapItem] = {}
        self._image_size: tuple[int, int] | None = None  # (columns, rows) of the study
        self._fit = True
        self._right_last: QPointF | None = None
        self.horizontalScrollBar().valueChanged.connect(self._scrolled)
        self.verticalScrollBar().valueChanged.connect(self._scrolled)
        self.paint_count = 0
        self._caption_font: QFont | None = None
        self._caption_pen: QColor | None = None
        self.legends: list[Legend] = []
        self.badges: list[tuple[str, str]] = []  # (level, text)

    # ------------------------------------------------------------------ content
    def set_image(self, image: QImage | QPixmap | None, study_size: tuple[int, int] | None) -> None:
        """Show ``image`` stretched to ``study_size`` = (columns, rows) scene units."""
        if image is None or study_size is None:
            self._image_item.setPixmap(QPixmap())
            self._image_size = None
            for item in self._overlays.values():
                item.setPixmap(QPixmap())
            self.viewport().update()
            return
        new_size = (int(study_size[0]), int(study_size[1]))
        first = self._image_size != new_size
        self._image_size = new_size
        pixmap = image if isinstance(image, QPixmap) else QPixmap.fromImage(image)
        self._place(self._image_item, pixmap)
        self._scene.setSceneRect(QRectF(0, 0, new_size[0], new_size[1]))
        if first or self._fit:
            self.fit()

    def set_overlay(self, name: str, image: QImage | QPixmap | None, z: float = 1.0) -> None:
        """Put an RGBA image above the study (None removes it)."""
        item = self._overlays.get(name)
        if image is None:
            if item is not None:
                item.setPixmap(QPixmap())
            return
        if item is None:
            item = QGraphicsPixmapItem()
            item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
            item.setZValue(z)
            self._scene.addItem(item)
            self._overlays[name] = item
        self._place(item, image if isinstance(image, QPixmap) else QPixmap.fromImage(image))

    def set_overlay_opacity(self, name: str, opacity: float) -> None:
        item = self._overlays.get(name)
        if item is not None:
            item.setOpacity(float(opacity))

    def set_overlay_visible(self, name: str, visible: bool) -> None:
        item = self._overlays.get(name)
        if item is not None:
            item.setVisible(bool(visible))

    def overlay_item(self, name: str) -> QGraphicsPixmapItem | None:
        return self._overlays.get(name)

    def image_item(self) -> QGraphicsPixmapItem:
        return self._image_item

    def has_image(self) -> bool:
        return self._image_size is not None

    def _place(self, item: QGraphicsPixmapItem, pixmap: QPixmap) -> None:
        item.setPixmap(pixmap)
        if self._image_size is not None and pixmap.width() > 0:
            sx = self._image_size[0] / pixmap.width()
            sy = self._image_size[1] / pixmap.height()
            item.setTransform(QTransform.fromScale(sx, sy))

    # ------------------------------------------------------------------ zoom & pan
    @property
    def zoom(self) -> float:
        return float(self.transform().m11())

    @property
    def fit_mode(self) -> bool:
        return self._fit

    def fit(self) -> None:
        """Fit the whole image in the view (and keep fitting on resize)."""
        self._fit = True
        if self._image_size is not None:
            self.fitInView(self._scene.sceneRect(), Qt.AspectRatioMode.KeepAspectRatio)
        self.viewChanged.emit()

    def actual_size(self) -> None:
        """1:1 — one image pixel per physical screen pixel (high-DPI aware)."""
        self._fit = False
        ratio = self.devicePixelRatioF() or 1.0
        self.setTransform(QTransform.fromScale(1.0 / ratio, 1.0 / ratio))
        self.viewChanged.emit()

    def zoom_by(self, factor: float) -> None:
        new = self.zoom * factor
        if not (ZOOM_MIN <= new <= ZOOM_MAX):
            return
        self._fit = False
        self.scale(factor, factor)
        self.viewChanged.emit()

    def copy_view_from(self, other: ImageView) -> None:
        """Take ``other``'s zoom and scroll position (used by ViewLink)."""
        self._fit = other._fit
        if self.transform() != other.transform():
            self.setTransform(other.transform())
        self.horizontalScrollBar().setValue(other.horizontalScrollBar().value())
        self.verticalScrollBar().setValue(other.verticalScrollBar().value())

    def _scrolled(self, _value: int) -> None:
        self.viewChanged.emit()

    # ------------------------------------------------------------------ events
    def wheelEvent(self, event) -> None:  # noqa: N802 - Qt API
        delta = event.angleDelta().y()
        if delta:
            self.zoom_by(ZOOM_STEP if delta > 0 else 1.0 / ZOOM_STEP)
        event.accept()

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self._fit and self._image_size is not None:
            self.fitInView(self._scene.sceneRect(), Qt.AspectRatioMode.KeepAspectRatio)

    def mousePressEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.RightButton:
            self._right_last = event.position()
            self.viewport().setCursor(Qt.CursorShape.SizeAllCursor)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self._right_last is not None:
            pos = event.position()
            d = pos - self._right_last
            self._right_last = pos
            if d.x() or d.y():
                self.windowDragged.emit(float(d.x()), float(d.y()))
            event.accept()
            return
        if self._image_size is not None:
            p = self.mapToScene(event.position().toPoint())
            x, y = int(p.x()), int(p.y())
            inside = 0 <= x < self._image_size[0] and 0 <= y < self._image_size[1]
            self.hovered.emit(x if inside else -1, y if inside else -1)
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.RightButton and self._right_last is not None:
            self._right_last = None
            self.viewport().unsetCursor()
            self.windowDragFinished.emit()
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def contextMenuEvent(self, event) -> None:  # noqa: N802 - right button is window/level
        event.accept()

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802
        urls = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.filesDropped.emit(urls)
            event.acceptProposedAction()
        else:
            super().dropEvent(event)

    # ------------------------------------------------------------------ annotations
    def set_annotations(
        self, caption: str, badges: list[tuple[str, str]], legends: list[Legend]
    ) -> None:
        """Caption, verdict badges ((level, text)) and legends drawn over the image."""
        if (caption, badges, legends) != (self.caption, self.badges, self.legends):
            self.caption, self.badges, self.legends = caption, list(badges), list(legends)
            self.viewport().update()

    def drawForeground(self, painter: QPainter, rect: QRectF | QRect) -> None:  # noqa: N802
        super().drawForeground(painter, rect)
        self.paint_count += 1
        if not (self.caption or self.badges or self.legends):
            return
        painter.save()
        painter.resetTransform()
        if self._caption_font is None:  # made once: building it costs ~1 ms per paint
            self._caption_font = painter.font()
            self._caption_font.setPointSizeF(max(9.0, self._caption_font.pointSizeF()))
            self._caption_pen = QColor(230, 230, 230)
        painter.setFont(self._caption_font)
        fm = QFontMetrics(self._caption_font)
        width = self.viewport().width()
        if self.caption:
            painter.setPen(self._caption_pen)
            text = fm.elidedText(self.caption, Qt.TextElideMode.ElideRight, max(20, width - 16))
            painter.drawText(8, 18, text)
        y = 26.0
        flags = Qt.AlignmentFlag.AlignLeft | Qt.TextFlag.TextWordWrap
        for level, text in self.badges:
            avail = max(40, min(width - 28, 460))
            bound = fm.boundingRect(0, 0, avail, fm.height() * 2, flags, text)
            box = QRectF(8, y, bound.width() + 12, min(bound.height(), fm.height() * 2) + 4)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(BADGE_COLORS.get(level, BADGE_COLORS["info"]))
            painter.drawRoundedRect(box, 4, 4)
            painter.setPen(QColor(255, 255, 255))
            painter.drawText(box.adjusted(6, 2, -6, -2), flags, text)
            y += box.height() + 4
        self._draw_legends(painter, fm)
        painter.restore()

    def _draw_legends(self, painter: QPainter, fm: QFontMetrics) -> None:
        if not self.legends:
            return
        vw, vh = self.viewport().width(), self.viewport().height()
        w = min(420, vw - 16)
        if w < 60:
            return
        line = fm.height()
        one = 10 + line * 2 + 12  # strip, end labels, caption, padding
        y = vh - 6 - one * len(self.legends)
        for lg in self.legends:
            box = QRectF(8, y, w, one - 4)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(0, 0, 0, 175))
            painter.drawRoundedRect(box, 4, 4)
            bar = QRectF(box.left() + 6, box.top() + 5, w - 12, 10)
            painter.fillRect(bar, QColor(40, 40, 40))
            painter.drawImage(bar, lg.strip)
            painter.setPen(QColor(225, 225, 225))
            ends = QRectF(bar.left(), bar.bottom() + 1, bar.width(), line)
            half = int(bar.width() / 2) - 4
            painter.drawText(
                ends,
                Qt.AlignmentFlag.AlignLeft,
                fm.elidedText(lg.low, Qt.TextElideMode.ElideRight, half),
            )
            painter.drawText(
                ends,
                Qt.AlignmentFlag.AlignRight,
                fm.elidedText(lg.high, Qt.TextElideMode.ElideRight, half),
            )
            painter.setPen(QColor(175, 181, 189))
            cap = fm.elidedText(
                f"{lg.title}: {lg.caption}", Qt.TextElideMode.ElideRight, int(bar.width())
            )
            painter.drawText(QRectF(bar.left(), ends.bottom(), bar.width(), line), 0, cap)
            y += one


class ViewLink:
    """Keeps zoom and pan of several ImageViews identical."""

    def __init__(self, *views: ImageView) -> None:
        self.views = list(views)
        self._busy = False
        for v in self.views:
            v.viewChanged.connect(self._make_sync(v))

    def _make_sync(self, source: ImageView):
        def sync() -> None:
            if self._busy:
                return
            self._busy = True
            try:
                for v in self.views:
                    if v is not source and v.isVisible():
                        v.copy_view_from(source)
            finally:
                self._busy = False

        return sync
