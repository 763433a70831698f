"""Radiologist boxes in the viewer: File ▸ Open annotations…, outlines on every pane, and a
"peak in box" line per explanation method.

Self-contained so that any image view can host it:

- :class:`BoxOutlineItem` is a QGraphicsItem in study-pixel scene coordinates (the views'
  convention) that draws the outlines of some boxes with a cosmetic pen and labels each with
  its finding in a fixed-size font; add one to any QGraphicsScene.
- :class:`AnnotationLayer` reads a box CSV (the ``localize`` command's format) or finds a
  per-study sidecar (``chest.png`` → ``chest.boxes.csv``) or a ``boxes.csv`` in the study's
  folder (the shipped sample films' radiologist boxes), keeps one BoxOutlineItem on each
  pane of the window (``window.views``, checked again on every update so panes added later get
  one too), follows the study shown, and adds to each method's overlay controls the line
  "peak in box: yes · 34 % of the map inside the box" (:func:`cxr_viewer.core.evaluate.localize.box_agreement`).
- :func:`install` adds the two menu actions (open, show/hide with B) to the File menu and a
  "Radiologist boxes (B)" check box under the methods in the overlay panel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QRectF, QSignalBlocker, Qt
from PySide6.QtGui import QAction, QColor, QFont, QKeySequence, QPainter, QPen, QTransform
from PySide6.QtWidgets import (
    QBoxLayout,
    QCheckBox,
    QFileDialog,
    QGraphicsItem,
    QGraphicsSimpleTextItem,
    QLabel,
    QMenu,
    QStyleOptionGraphicsItem,
    QWidget,
)

from cxr_viewer.core.errors import CxrError
from cxr_viewer.core.evaluate import localize as loc
from cxr_viewer.core.model.localization_card import class_named

from .events import OverlayChange

log = logging.getLogger(__name__)

BOX_COLOR = QColor(80, 255, 120)
#: a table of boxes beside the films it annotates (the shipped samples' radiologist boxes)
FOLDER_BOXES = "boxes.csv"
BOX_Z = 50.0


class BoxOutlineItem(QGraphicsItem):
    """Outlines of boxes given in scene (= study pixel) coordinates, each labelled."""

    def __init__(self, parent: QGraphicsItem | None = None) -> None:
        super().__init__(parent)
        self.setZValue(BOX_Z)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self._rects: list[tuple[QRectF, str]] = []
        self._labels: list[QGraphicsSimpleTextItem] = []
        self._pen = QPen(BOX_COLOR, 2.0)
        self._pen.setCosmetic(True)  # two screen pixels wide at any zoom
        self._font = QFont()
        self._font.setPointSize(10)
        self._font.setBold(True)

    def set_boxes(self, rects: list[tuple[QRectF, str]]) -> None:
        """Replace the boxes: (rectangle in scene coordinates, finding)."""
        self.prepareGeometryChange()
        self._rects = list(rects)
        for label in self._labels:
            label.setParentItem(None)  # type: ignore[arg-type]  # stubs omit None; Qt takes nullptr
            scene = label.scene()
            if scene is not None:
                scene.removeItem(label)
        self._labels = []
        for rect, text in self._rects:
            label = QGraphicsSimpleTextItem(text, self)
            label.setFont(self._font)
            label.setBrush(BOX_COLOR)
            label.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, True)
            label.setPos(rect.left(), rect.top())
            # just above the box's top-left corner, in screen pixels (the label ignores zoom)
            label.setTransform(QTransform.fromTranslate(0, -label.boundingRect().height()))
            self._labels.append(label)
        self.update()

    def boxes(self) -> list[tuple[QRectF, str]]:
        return list(self._rects)

    def label_texts(self) -> list[str]:
        return [label.text() for label in self._labels]

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt API
        out = QRectF()
        for rect, _ in self._rects:
            out = out.united(rect)
        return out.adjusted(-2, -2, 2, 2)

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        painter.setPen(self._pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        for rect, _ in self._rects:
            painter.drawRect(rect)


class AnnotationLayer(QObject):
    """Boxes of the study shown, on every pane of ``window``, and their trust-panel lines."""

    # set by :func:`install`
    open_action: QAction
    toggle_action: QAction
    open_path: Callable[[str], None]

    def __init__(self, window) -> None:
        super().__init__(window)
        self.win = window
        self.state = window.state
        self.visible = True
        self.source: Path | None = None  # the CSV opened with "Open annotations…"
        self._boxes: list[loc.Box] = []
        self._sidecars: dict[Path, list[loc.Box]] = {}
        self._items: dict[int, BoxOutlineItem] = {}
        self._lines: dict[str, QLabel] = {}
        self.current: list[loc.Box] = []
        #: the overlay panel's check box (set by :func:`install` when the window has the panel)
        self.checkbox: QCheckBox | None = None
        self.state.events.study.connect(self.refresh)
        self.state.events.overlay.connect(self._overlay_changed)

    # ------------------------------------------------------------------ loading
    def load(self, path: str | Path) -> int:
        """Read a box CSV (raises :class:`~cxr_viewer.core.evaluate.localize.AnnotationError`);
        returns how many boxes belong to the study shown."""
        boxes = loc.read_boxes(path)
        self._boxes = boxes
        self.source = Path(path).resolve()
        self.visible = True
        self.refresh()
        return len(self.current)

    def _read_once(self, path: Path, what: str) -> list[loc.Box]:
        """The boxes of box file ``path``, read once and kept: none if it is missing, or (with a
        warning naming it as ``what``) if it cannot be read."""
        if path not in self._sidecars:
            try:
                self._sidecars[path] = loc.read_boxes(path) if path.is_file() else []
            except CxrError as exc:
                log.warning("ignoring the %s %s: %s", what, path, exc)
                self._sidecars[path] = []
        return self._sidecars[path]

    def _sidecar(self, study_path: Path) -> list[loc.Box]:
        return self._read_once(loc.sidecar_path(study_path), "annotation sidecar")

    def _folder_boxes(self, study_path: Path) -> list[loc.Box]:
        """The boxes of ``study_path`` in a ``boxes.csv`` beside it (as the shipped sample films
        carry their radiologists' boxes), matched by path or file name."""
        table = study_path.parent / FOLDER_BOXES
        boxes = self._read_once(table, "box table")
        return loc.boxes_for_image(boxes, study_path, table.parent) if boxes else []

    def boxes_for(self, study) -> list[loc.Box]:
        """Boxes of ``study``: from the opened CSV, else from its sidecar (any filename), else
        from a ``boxes.csv`` in its folder."""
        if study is None or getattr(study, "path", None) is None:
            return []
        path = Path(study.path)
        found: list[loc.Box] = []
        if self._boxes and self.source is not None:  # the CSV's folder resolves relative names
            found = loc.boxes_for_image(self._boxes, path, self.source.parent)
        return found or self._sidecar(path) or self._folder_boxes(path)

    # ------------------------------------------------------------------ drawing
    def set_visible(self, on: bool) -> None:
        self.visible = bool(on)
        self.refresh()

    def items(self) -> list[BoxOutlineItem]:
        """The outline item of every pane (created on demand)."""
        out = []
        for view in getattr(self.win, "views", []):
            item = self._items.get(id(view))
            if item is None or item.scene() is not view.scene():
                item = BoxOutlineItem()
                view.scene().addItem(item)
                self._items[id(view)] = item
            out.append(item)
        return out

    def _scaled(self, study) -> list[loc.Box]:
        """The current boxes in the study's own pixels."""
        out = []
        for b in self.current:
            x0, y0, x1, y1 = b.scaled(study.rows, study.columns)
            out.append(
                loc.Box(
                    b.filename,
                    b.finding,
                    x0,
                    y0,
                    x1 - x0,
                    y1 - y0,
                    float(study.columns),
                    float(study.rows),
                    b.patient_id,
                )
            )
        return out

    def refresh(self) -> None:
        study = self.state.study
        self.current = self.boxes_for(study)
        rects = []
        if study is not None:
            rects = [(QRectF(b.x, b.y, b.w, b.h), b.finding) for b in self._scaled(study)]
        for item in self.items():
            item.set_boxes(rects)
            item.setVisible(self.visible and bool(rects))
        for method in self.state.overlays:
            self._update_line(method)
        self._sync_checkbox()

    def _sync_checkbox(self) -> None:
        box = self.checkbox
        if box is None:
            return
        n = len(self.current)
        with QSignalBlocker(box):
            box.setChecked(self.visible)
        box.setEnabled(n > 0)
        box.setText(f"Radiologist boxes (B): {n} on this film" if n else "Radiologist boxes (B)")
        box.setToolTip(
            "Show or hide the radiologists' boxes of this film on every pane (B)"
            if n
            else "This film has no radiologist boxes (File ▸ Open annotations… reads a CSV; "
            "a boxes.csv beside the films is read by itself)"
        )

    # ------------------------------------------------------------------ trust lines
    def _overlay_changed(self, method: str, what: OverlayChange) -> None:
        if what in (OverlayChange.HEATMAP, OverlayChange.VISIBLE):
            self._update_line(method)

    def _line(self, method: str) -> QLabel | None:
        label = self._lines.get(method)
        if label is not None:
            return label
        panel = getattr(self.win, "overlay_panel", None)
        controls = getattr(panel, "controls", {}).get(method) if panel is not None else None
        if controls is None or controls.layout() is None:
            return None
        label = QLabel("")
        label.setObjectName("BoxAgreement")
        label.setToolTip(
            "Against the radiologist boxes of this study: is the map's highest point inside a "
            "box, and what share of the map's positive mass lies inside the boxes"
        )
        label.setWordWrap(True)
        controls.layout().addWidget(label)
        self._lines[method] = label
        return label

    def agreement_text(self, method: str) -> str:
        """ "peak in box: yes · 34 % of the map inside the box" for the method's finished map,
        one line per finding; empty without boxes or map."""
        study = self.state.study
        ov = self.state.overlays.get(method)
        result = getattr(ov, "heatmap", None)
        if study is None or not self.current or result is None or result.partial:
            return ""
        values = result.preview  # the screen-size copy: cheap on the GUI thread
        boxes = self._scaled(study)
        lines = []
        findings = list(dict.fromkeys(b.finding for b in boxes))
        for finding in findings:
            prefix = f"{finding}: " if len(findings) > 1 else ""
            other = self._other_class(finding, getattr(result.heatmap, "class_name", ""))
            if other:
                # a "no opacity" map is not meant to lie in the opacity boxes
                lines.append(f"{prefix}these boxes mark {finding}; this map explains {other}")
                continue
            group = [b for b in boxes if b.finding == finding]
            a = loc.box_agreement(values, group)
            share = a["energy_inside"]
            share_txt = "no positive map mass" if share != share else f"{share * 100:.0f} %"
            lines.append(
                f"{prefix}peak in box: {'yes' if a['peak_in_box'] else 'no'} · "
                f"{share_txt} of the map inside the box"
            )
        return "\n".join(lines)

    def _other_class(self, finding: str, explained: str) -> str:
        """``explained`` when the boxes' finding is one of the model's classes (by name, e.g.
        "Lung Opacity" ↔ lung_opacity) and the map explains another of them; else ""."""
        model = self.state.model
        if model is None or explained not in model.class_names:
            return ""
        own = class_named(finding, model.class_names)
        return explained if own is not None and own != explained else ""

    def _update_line(self, method: str) -> None:
        text = self.agreement_text(method)
        label = self._line(method) if text else self._lines.get(method)
        if label is not None:
            label.setText(text)
            label.setVisible(bool(text))


def install(window) -> AnnotationLayer:
    """Create the layer for ``window`` and put its actions in the File menu (after "Open
    folder…") with B to show or hide the boxes."""
    layer = AnnotationLayer(window)

    def open_dialog() -> None:
        start = getattr(getattr(window, "settings", None), "last_dir", "")
        path, _ = QFileDialog.getOpenFileName(
            window,
            "Open box annotations (CSV: filename, finding, x, y, w, h)",
            start,
            "Box annotations (*.csv);;All files (*)",
        )
        if path:
            open_path(path)

    def open_path(path: str) -> None:
        try:
            n = layer.load(path)
        except CxrError as exc:
            window.reporter.report(exc)
            return
        msg = f"Annotations: {len(layer._boxes)} boxes from {Path(path).name}"
        if window.state.study is not None:
            msg += f", {n} on this study"
        window.status.show_message(msg)
        toggle.setChecked(True)

    open_act = QAction("Open &annotations…", window)
    open_act.setStatusTip("Radiologist boxes (CSV) drawn on every pane")
    open_act.triggered.connect(open_dialog)
    toggle = QAction("Show &annotations", window)
    toggle.setCheckable(True)
    toggle.setChecked(True)
    toggle.setShortcut(QKeySequence("B"))
    toggle.setStatusTip("Show or hide the annotation boxes (B)")
    toggle.toggled.connect(layer.set_visible)
    window.addAction(toggle)
    layer.open_action, layer.toggle_action, layer.open_path = open_act, toggle, open_path
    panel = getattr(window, "overlay_panel", None)
    panel_layout = panel.layout() if panel is not None else None
    if isinstance(panel_layout, QBoxLayout):
        box = QCheckBox("Radiologist boxes (B)")
        box.setObjectName("BoxesToggle")
        box.toggled.connect(toggle.setChecked)
        # before the panel's closing stretch
        panel_layout.insertWidget(max(0, panel_layout.count() - 1), box)
        layer.checkbox = box
        layer._sync_checkbox()
    actions = getattr(window, "actions_", None)
    if actions is not None:  # listed in Help ▸ Keyboard shortcuts
        actions.all.setdefault("toggle_boxes", toggle)
    anchor = actions.all.get("open_model") if actions is not None else None
    menus = [m for m in (anchor.associatedObjects() if anchor else []) if isinstance(m, QMenu)]
    if menus and anchor is not None:
        menus[0].insertAction(anchor, open_act)
        menus[0].insertAction(anchor, toggle)
        menus[0].insertSeparator(anchor)
    else:
        window.menuBar().addAction(open_act)
    return layer
