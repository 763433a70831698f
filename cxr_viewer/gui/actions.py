"""Menus, toolbar and keyboard shortcuts of the main window.

Every frequent action has a key: open (Ctrl+O), open folder (Ctrl+Shift+O), next/previous study
(PgDown/PgUp, N/P), toggle each overlay (G, L, S), reset view (R), fit (F), 1:1 (1), zoom (+/−),
invert (I), window presets (Ctrl+1…), layouts (V cycles grid → side by side → single method;
Alt+1/2/3 choose one; M shows the next method in the single view), hide patient fields (H),
export PNG (Ctrl+E), PDF report (Ctrl+P), cancel (Esc), open model (Ctrl+M).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu, QToolBar

from .events import OverlayChange
from .menu_entries import FILE, FILE_EXPORT, MenuEntry
from .state import LAYOUT_LABELS, METHOD_LABELS, METHOD_SHORTCUTS, METHODS
from .theme import icon

if TYPE_CHECKING:
    from .window_api import ActionsHost

OVERLAY_KEYS = METHOD_SHORTCUTS

#: the tooltip (and status tip) of each of the window's own actions, by name; the shortcuts are
#: added to it
TIPS = {
    "open": "Open image files",
    "open_folder": "Open every image in a folder",
    "open_model": "Load another model bundle (folder or .zip)",
    "import_model": "Wrap a bare Keras model into a bundle and load it",
    "export_png": "Save the overlay view at full resolution",
    "export_pdf": "One-page report: image, overlays, probabilities, settings, model",
    "next": "Next study",
    "prev": "Previous study",
    "fit": "Fit the image",
    "actual": "One image pixel per screen pixel",
    "reset": "Fit, and back to the file's window",
    "invert": "Invert grey levels",
    "layout_grid": "The original and one pane per shown method, each with its legend",
    "layout_side": "The original next to one view with every shown map",
    "single": "One method's map filling the image area (M: next method)",
    "cycle_layout": "Grid → side by side → single method",
    "next_method": "Show the next method in the single view",
    "hide_patient": "Mask patient name, ID, birth date and sex (for demos)",
    "cancel": "Stop running explanations",
}


class Actions:
    """All QActions of the main window, by name; ``entries`` are the features' File-menu
    entries (:class:`~.menu_entries.MenuEntry`), placed in the File menu by this class."""

    def __init__(self, win: ActionsHost, entries: Sequence[MenuEntry] = ()) -> None:
        self.win = win
        self.all: dict[str, QAction] = {}
        s, c = win.state, win.controller

        def act(name, text, slot: Callable, keys=(), icon_name=None, checkable=False, tip=None):
            tip = TIPS.get(name, "") if tip is None else tip
            a = QAction(text, win.window())
            if icon_name:
                a.setIcon(icon(icon_name))
            if keys:
                a.setShortcuts([QKeySequence(k) for k in keys])
            a.setCheckable(checkable)
            if tip:
                a.setToolTip(f"{tip} ({', '.join(keys)})" if keys else tip)
                a.setStatusTip(tip)
            (a.toggled if checkable else a.triggered).connect(slot)
            win.addAction(a)  # shortcuts work even when the menu bar is hidden
            self.all[name] = a
            return a

        act("open", "&Open file…", win.open_file_dialog, ["Ctrl+O"], "open")
        act("open_folder", "Open &folder…", win.open_folder_dialog, ["Ctrl+Shift+O"], "folder")
        act("open_model", "Open &model…", win.open_model_dialog, ["Ctrl+M"], "model")
        act("import_model", "&Import a Keras model (.keras/.h5)…", win.import_model_dialog)
        act("export_png", "&Export view as PNG…", win.export_png_dialog, ["Ctrl+E"], "export")
        act("export_pdf", "PDF &report…", win.export_pdf_dialog, ["Ctrl+P"], "report")
        act("quit", "&Quit", win.close, ["Ctrl+Q"])
        act("next", "&Next study", lambda: c.step(1), ["PgDown", "N"], "next")
        act("prev", "&Previous study", lambda: c.step(-1), ["PgUp", "P"], "prev")
        act("fit", "&Fit to window", win.fit_views, ["F"], "fit")
        act("actual", "Actual size &1:1", win.actual_size, ["1"], "actual")
        act("zoom_in", "Zoom &in", lambda: win.zoom(1.25), ["+", "="])
        act("zoom_out", "Zoom &out", lambda: win.zoom(0.8), ["-"])
        act("reset", "&Reset view", win.reset_view, ["R"])
        act("invert", "&Invert", lambda on: s.set_invert_flip(on), ["I"], "invert", True)
        act(
            "layout_grid",
            "&Grid: one pane per method",
            lambda: self._choose_layout("grid"),
            ["Alt+1"],
        )
        act(
            "layout_side",
            "Side by si&de: original and all maps",
            lambda: self._choose_layout("side"),
            ["Alt+2"],
        )
        act(
            "single",
            "&Single method, full view",
            lambda on: s.set_single_view(on),
            ["Alt+3"],
            "single",
            True,
        )
        for name in ("layout_grid", "layout_side"):
            self.all[name].setCheckable(True)
        act("cycle_layout", "Next &layout", s.cycle_layout, ["V"])
        act("next_method", "Next &method (single view)", lambda: s.cycle_focus(1), ["M"])
        act(
            "hide_patient",
            "&Hide patient fields",
            lambda on: s.set_hide_patient(on),
            ["H"],
            checkable=True,
        )
        for m in METHODS:
            act(
                f"toggle_{m}",
                f"Show {METHOD_LABELS[m]}",
                lambda on, m=m: s.set_visible(m, on),
                [OVERLAY_KEYS[m]],
                checkable=True,
                tip=f"Toggle the {METHOD_LABELS[m]} overlay",
            )
        act("cancel", "&Cancel explanations", c.cancel_explanations, ["Esc"], "cancel")
        act("shortcuts", "&Keyboard shortcuts", win.show_shortcuts, ["F1"])
        act("about", "&About CXR Lens", win.show_about)
        self.entries = list(entries)
        for e in self.entries:
            act(e.name, e.text, e.slot, list(e.keys), tip=e.tip)

        self.recent_menu = QMenu("Open &recent", win.window())
        self.preset_menu = QMenu("&Window presets", win.window())
        self.preset_menu.setIcon(icon("window"))
        self._build_menus()
        self._build_toolbar()
        self._sync_layout()
        s.events.overlay.connect(self._sync_overlay)
        s.events.display.connect(self._sync_display)
        s.events.layout.connect(self._sync_layout)
        s.events.privacy.connect(lambda: self._set_checked("hide_patient", s.hide_patient))
        s.events.study.connect(self.rebuild_presets)

    def __getitem__(self, name: str) -> QAction:
        return self.all[name]

    def _build_menus(self) -> None:
        a, mb = self.all, self.win.menuBar()
        # kept (a menu looked up again through QAction.menu() may come back as a wrapper that
        # Qt deletes, on PySide6 6.8 and 6.9)
        self.file_menu = f = mb.addMenu("&File")
        for name in ("open", "open_folder"):
            f.addAction(a[name])
        f.addMenu(self.recent_menu)
        f.addSeparator()
        f.addAction(a["open_model"])
        f.addAction(a["import_model"])
        f.addSeparator()
        f.addAction(a["export_png"])
        f.addAction(a["export_pdf"])
        f.addSeparator()
        for entry in self.entries:
            if entry.menu == FILE:
                f.addAction(a[entry.name])
        exports = [entry for entry in self.entries if entry.menu == FILE_EXPORT]
        if exports:
            self.export_menu = f.addMenu("E&xport")
            for entry in exports:
                self.export_menu.addAction(a[entry.name])
        if self.entries:
            f.addSeparator()
        f.addAction(a["quit"])
        v = mb.addMenu("&View")
        for name in ("fit", "actual", "zoom_in", "zoom_out", "reset"):
            v.addAction(a[name])
        v.addSeparator()
        v.addAction(a["invert"])
        v.addMenu(self.preset_menu)
        v.addSeparator()
        for name in ("layout_grid", "layout_side", "single", "cycle_layout", "next_method"):
            v.addAction(a[name])
        v.addSeparator()
        v.addAction(a["hide_patient"])
        self.panels_menu = v.addMenu("&Panels")
        st = mb.addMenu("&Study")
        st.addAction(a["next"])
        st.addAction(a["prev"])
        e = mb.addMenu("&Explain")
        for m in METHODS:
            e.addAction(a[f"toggle_{m}"])
        e.addSeparator()
        e.addAction(a["cancel"])
        h = mb.addMenu("&Help")
        h.addAction(a["shortcuts"])
        h.addAction(a["about"])

    def _build_toolbar(self) -> None:
        tb = QToolBar("Main")
        tb.setObjectName("MainToolbar")
        tb.setMovable(False)
        a = self.all
        for name in ("open", "open_folder", None, "prev", "next", None, "fit", "actual", "invert"):
            if name is None:
                tb.addSeparator()
            else:
                tb.addAction(a[name])
        tb.addAction(self.preset_menu.menuAction())
        for name in (None, "single", None, "export_png", "export_pdf", None, "open_model"):
            if name is None:
                tb.addSeparator()
            else:
                tb.addAction(a[name])
        # every method one click away on the first screen (the side panel may need scrolling)
        tb.addSeparator()
        for m in METHODS:
            a[f"toggle_{m}"].setIconText(METHOD_LABELS[m])  # the button says "LIME", not "Show …"
            tb.addAction(a[f"toggle_{m}"])
        self.win.addToolBar(tb)
        self.toolbar = tb

    def _set_checked(self, name: str, on: bool) -> None:
        act = self.all[name]
        if act.isChecked() != on:
            act.blockSignals(True)
            act.setChecked(on)
            act.blockSignals(False)

    def _sync_overlay(self, method: str, what: OverlayChange) -> None:
        ov = self.win.state.overlays[method]
        self._set_checked(f"toggle_{method}", ov.visible)

    def _choose_layout(self, layout: str) -> None:
        self.win.state.set_layout(layout)
        self._sync_layout()

    def _sync_layout(self) -> None:
        layout = self.win.state.layout
        for name, mode in (("layout_grid", "grid"), ("layout_side", "side"), ("single", "single")):
            self._set_checked(name, layout == mode)
        self.all["cycle_layout"].setStatusTip(f"Now: {LAYOUT_LABELS[layout]}")

    def _sync_display(self) -> None:
        self._set_checked("invert", self.win.state.invert_flip)

    def rebuild_recent(self, paths: list[str]) -> None:
        self.recent_menu.clear()
        for p in paths:
            act = self.recent_menu.addAction(p)
            act.triggered.connect(lambda _=False, p=p: self.win.open_paths([p]))
        self.recent_menu.setEnabled(bool(paths))

    def rebuild_presets(self) -> None:
        from .presenter import DisplayPresenter

        self.preset_menu.clear()
        study = self.win.state.study
        if study is None:
            self.preset_menu.setEnabled(False)
            return
        self.preset_menu.setEnabled(True)
        for i, (name, window) in enumerate(DisplayPresenter.presets(study)):
            act = self.preset_menu.addAction(name)
            if i < 9:
                act.setShortcut(QKeySequence(f"Ctrl+{i + 1}"))
            act.triggered.connect(lambda _=False, w=window: self.win.state.set_window(w))
