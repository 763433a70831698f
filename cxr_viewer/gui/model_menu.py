"""File ▸ Model: switch between the shipped models, recent bundles, open or import another.

Self-contained (the window hooks it in with :func:`install`):

- the shipped bundles: every folder of ``resources/`` with a ``metadata.json`` — the paediatric
  demo first, then the adult demo when it is there, then the other examples;
- the bundles loaded before (most recent first, kept in the settings under ``models/recent``;
  one whose file has gone is shown disabled, "Forget missing" prunes them);
- sample films shipped for a model (``resources/*_samples``, e.g. the adult films with their
  radiologists' boxes);
- "Open model…" (Ctrl+M) and "Import a Keras model…", moved here from the File menu.

The model shown is checked. Choosing another loads it on the model worker (the window stays
usable; the model panel and the status bar show the progress); once it is ready the current
study is predicted and its shown maps are computed again with it. If a model fails to load
(from here, Open model…, an import), the error is shown and the last model that was ready is
loaded again.

Keyboard: Alt+F, M opens the submenu; Ctrl+Shift+M pops it up under the toolbar's model
button; the shipped models are numbered (1, 2, …) as mnemonics.
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

from PySide6.QtCore import QObject, QPoint, QTimer
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMenu, QToolButton

from cxr_viewer.core.errors import CxrError
from cxr_viewer.core.paths import resources_dir

log = logging.getLogger(__name__)

#: how many loaded bundles the settings remember
MAX_RECENT_MODELS = 8
RECENT_KEY = "models/recent"
#: the shipped bundle listed first
PRIMARY_DEMO = "demo_bundle"


def _resolved(path: str | Path) -> str:
    try:
        return str(Path(path).expanduser().resolve())
    except OSError:
        return str(path)


def bundle_exists(path: str | Path) -> bool:
    """A bundle folder with its metadata.json, or a bundle .zip / Keras file that exists."""
    p = Path(path)
    return (p / "metadata.json").is_file() if p.is_dir() else p.is_file()


def shipped_bundles(root: Path | None = None) -> list[Path]:
    """The bundles shipped in ``resources/``: the paediatric demo, then any adult bundle, then
    the others by name."""
    root = resources_dir() if root is None else root
    try:
        found = [d for d in root.iterdir() if d.is_dir() and (d / "metadata.json").is_file()]
    except OSError:
        return []

    def rank(d: Path) -> tuple[int, str]:
        name = d.name.lower()
        return (0 if d.name == PRIMARY_DEMO else 1 if "adult" in name else 2, name)

    return sorted(found, key=rank)


def sample_folders(root: Path | None = None) -> list[Path]:
    """Sample films shipped for a model beside the default ones (``resources/adult_samples``:
    the adult demo's films with their radiologists' boxes in a ``boxes.csv``)."""
    root = resources_dir() if root is None else root
    try:
        return sorted(d for d in root.iterdir() if d.is_dir() and d.name.endswith("_samples"))
    except OSError:
        return []


def study_files(folder: Path) -> list[Path]:
    """The images of ``folder`` the viewer opens (none when it cannot be listed)."""
    from cxr_viewer.core.paths import sample_files

    try:
        return sample_files(folder)
    except CxrError:
        return []


_NAMES: dict[tuple[str, int], str] = {}


def bundle_name(path: str | Path) -> str:
    """The bundle's own name (its metadata.json), else the file or folder name."""
    p = Path(path)
    try:
        meta_path = p / "metadata.json"
        stamp = meta_path.stat().st_mtime_ns if p.is_dir() else p.stat().st_mtime_ns
    except OSError:
        return p.name
    key = (str(p), stamp)
    if key in _NAMES:
        return _NAMES[key]
    name = ""
    try:
        if p.is_dir():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        elif p.suffix.lower() == ".zip":
            with zipfile.ZipFile(p) as zf:
                member = next((n for n in zf.namelist() if n.endswith("metadata.json")), None)
                meta = json.loads(zf.read(member)) if member else {}
        else:
            meta = {}
        value = meta.get("name") if isinstance(meta, dict) else None
        name = value.strip() if isinstance(value, str) else ""
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        log.debug("cannot read the name of %s: %s", p, exc)
    _NAMES[key] = name or p.name
    return _NAMES[key]


def menu_label(name: str) -> str:
    """ "CXR Lens demo: NORMAL vs …" → "Demo: NORMAL vs …", '&' kept as text."""
    text = name.removeprefix("CXR Lens ").strip() or name
    return (text[:1].upper() + text[1:]).replace("&", "&&")


class RecentModels:
    """The bundles loaded before, most recent first, in the app's settings."""

    def __init__(self, settings) -> None:
        self.q = settings.q

    def paths(self) -> list[str]:
        value = self.q.value(RECENT_KEY, [])
        if isinstance(value, str):  # QSettings gives a one-item list back as a string
            value = [value]
        return [str(v) for v in value if v] if isinstance(value, list | tuple) else []

    def add(self, path: str | Path) -> list[str]:
        p = _resolved(path)
        recent = ([p] + [r for r in self.paths() if r != p])[:MAX_RECENT_MODELS]
        self.q.setValue(RECENT_KEY, recent)
        return recent

    def prune(self) -> list[str]:
        """Forget the bundles whose files are gone."""
        kept = [p for p in self.paths() if bundle_exists(p)]
        self.q.setValue(RECENT_KEY, kept)
        return kept

    def clear(self) -> None:
        self.q.setValue(RECENT_KEY, [])


class ModelMenu(QObject):
    """File ▸ Model for ``window``: the entries, which one is active, switching."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.win = window
        self.state = window.state
        self.recent = RecentModels(window.settings)
        self.menu = QMenu("&Model", window)
        self.menu.setObjectName("ModelMenu")
        self.menu.setToolTipsVisible(True)
        self.menu.aboutToShow.connect(self.rebuild)
        self.group = QActionGroup(self)
        self.group.setExclusive(True)
        #: the bundle being switched to; the last one that was ready (loaded again when a
        #: load fails); whether that is happening now
        self.pending: str | None = None
        self.last_ready: str | None = None
        self.reverting = False
        self._status = self.state.model_status
        self._signature: tuple[str | None, str, str | None] | None = None
        self.choose_action = QAction("Choose a &model…", window)
        self.choose_action.setShortcut(QKeySequence("Ctrl+Shift+M"))
        self.choose_action.setStatusTip("Switch the model: shipped demos, recent bundles, open")
        self.choose_action.triggered.connect(self.popup)
        window.addAction(self.choose_action)
        self.state.events.model.connect(self._model_changed)
        self.rebuild()

    # ------------------------------------------------------------------ entries
    def shipped(self) -> list[Path]:
        return shipped_bundles()

    def active_path(self) -> str | None:
        m = self.state.model
        return _resolved(m.path) if m is not None and m.path else None

    def entries(self) -> list[tuple[str, str, bool]]:
        """(label, path, exists) of every bundle the menu lists, shipped ones first."""
        shipped = [_resolved(p) for p in self.shipped()]
        out = [
            (
                f"&{i + 1} {menu_label(bundle_name(p))}" if i < 9 else menu_label(bundle_name(p)),
                p,
                True,
            )
            for i, p in enumerate(shipped)
        ]
        for p in self.recent.paths():
            if _resolved(p) in shipped:
                continue
            exists = bundle_exists(p)
            label = menu_label(bundle_name(p)) if exists else f"{Path(p).name} (not found)"
            out.append((label, p, exists))
        return out

    def rebuild(self) -> None:
        menu, active = self.menu, self.active_path()
        for a in self.group.actions():  # before clear() deletes the menu's own actions
            self.group.removeAction(a)
        menu.clear()
        shipped = {_resolved(p) for p in self.shipped()}
        entries = self.entries()
        self._heading("Shipped models")
        if not shipped:
            none = menu.addAction("(no bundle in resources/)")
            none.setEnabled(False)
        recent_started = False
        for label, path, exists in entries:
            if path not in shipped and not recent_started:
                menu.addSeparator()
                self._heading("Recent bundles")
                recent_started = True
            act = menu.addAction(label)
            act.setCheckable(True)
            act.setData(path)
            act.setEnabled(exists)
            loading = path == self.pending and self.state.model is None
            act.setToolTip(path if exists else f"{path} — the file is gone")
            if loading:
                act.setText(f"{label} — loading…")
            act.setChecked(path == active or loading)
            act.triggered.connect(lambda _=False, p=path: self.switch(p))
            self.group.addAction(act)
        if recent_started:
            forget = menu.addAction("Forget missing bundles")
            forget.setEnabled(any(not exists for _, _, exists in entries))
            forget.triggered.connect(self._forget_missing)
            clear = menu.addAction("Clear recent bundles")
            clear.triggered.connect(self._clear_recent)
        menu.addSeparator()
        for folder in sample_folders():
            n = len(study_files(folder))
            boxed = " with radiologists' boxes" if (folder / "boxes.csv").is_file() else ""
            what = folder.name.removesuffix("_samples").replace("_", " ").replace("&", "&&")
            films = menu.addAction(f"Open the &{what} sample films ({n}{boxed})")
            films.setToolTip(str(folder))
            films.triggered.connect(lambda _=False, f=folder: self.win.open_paths([str(f)]))
        actions = getattr(self.win, "actions_", None)
        for name in ("open_model", "import_model"):
            entry = actions.all.get(name) if actions is not None else None
            if entry is not None:
                menu.addAction(entry)

    def _heading(self, text: str) -> None:
        """A group's title (QMenu.addSection draws no text in some styles, Fusion among them)."""
        heading = self.menu.addAction(text)
        heading.setEnabled(False)
        font = heading.font()
        font.setBold(True)
        heading.setFont(font)

    def _forget_missing(self) -> None:
        self.recent.prune()
        self.rebuild()

    def _clear_recent(self) -> None:
        self.recent.clear()
        self.rebuild()

    def popup(self) -> None:
        """Show the menu under the toolbar's model button (else at the window's centre)."""
        self.rebuild()
        button = self.tool_button()
        if button is not None and button.isVisible():
            self.menu.popup(button.mapToGlobal(QPoint(0, button.height())))
        else:
            self.menu.popup(self.win.mapToGlobal(self.win.rect().center()))

    def tool_button(self) -> QToolButton | None:
        toolbar = getattr(getattr(self.win, "actions_", None), "toolbar", None)
        act = getattr(self.win, "actions_", None)
        open_act = act.all.get("open_model") if act is not None else None
        if toolbar is None or open_act is None:
            return None
        widget = toolbar.widgetForAction(open_act)
        return widget if isinstance(widget, QToolButton) else None

    # ------------------------------------------------------------------ switching
    def switch(self, path: str | Path) -> bool:
        """Load ``path`` instead of the model shown; False when it is the model shown already."""
        target = _resolved(path)
        if target == self.active_path():
            self.win.status.show_message(f"{bundle_name(target)} is the model in use")
            self.rebuild()
            return False
        self.pending = target
        self.win.status.show_message(f"Switching to {bundle_name(target)}…", 0)
        self.win.open_model_path(Path(target))
        self.rebuild()
        return True

    def _model_changed(self) -> None:
        """Remember the bundle that became ready; when a load fails (from this menu, Open
        model…, an import or a drop), load the last model that was ready again."""
        m, status = self.state.model, self.state.model_status
        newly_failed = status == "failed" and self._status != "failed"
        self._status = status
        if m is not None:
            if m.path:
                shipped = {_resolved(p) for p in self.shipped()}
                if _resolved(m.path) not in shipped:
                    self.recent.add(m.path)
                self.last_ready = _resolved(m.path)
            if self.pending is not None and self.last_ready == self.pending:
                self.win.status.show_message(f"Now using {m.name}", 8000)
            self.pending, self.reverting = None, False
        elif newly_failed:
            failed, back = self.pending, self.last_ready
            self.pending = None
            if not self.reverting and back is not None and back != failed and bundle_exists(back):
                what = bundle_name(failed) if failed else "The model"
                self.win.status.show_message(
                    f"{what} could not be loaded; back to {bundle_name(back)}", 0
                )
                self.pending, self.reverting = back, True
                # from the event loop, not from inside this state event
                QTimer.singleShot(0, lambda: self.win.load_model(back))
        signature = (self.active_path(), status, self.pending)
        if signature != self._signature and not self.menu.isVisible():
            self._signature = signature
            self.rebuild()

    def checked_path(self) -> str | None:
        """The path of the checked entry (for tests)."""
        act = self.group.checkedAction()
        return str(act.data()) if act is not None else None


def install(window) -> ModelMenu:
    """Put File ▸ Model where "Open model…" was (it and "Import…" move into the submenu), and
    the submenu on the toolbar's model button (its arrow)."""
    mm = ModelMenu(window)
    actions = getattr(window, "actions_", None)
    file_menu = getattr(actions, "file_menu", None)
    open_act = actions.all.get("open_model") if actions is not None else None
    import_act = actions.all.get("import_model") if actions is not None else None
    if file_menu is not None and open_act is not None and open_act in file_menu.actions():
        file_menu.insertMenu(open_act, mm.menu)
        file_menu.removeAction(open_act)
        if import_act is not None:
            file_menu.removeAction(import_act)
    elif file_menu is not None:
        file_menu.addMenu(mm.menu)
    else:
        window.menuBar().addMenu(mm.menu)
    mm.rebuild()  # "Open model…" and "Import…" go in
    if actions is not None:  # listed in Help ▸ Keyboard shortcuts
        actions.all.setdefault("choose_model", mm.choose_action)
    button = mm.tool_button()
    if button is not None:
        button.setMenu(mm.menu)
        button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        button.setToolTip("Open a model bundle (Ctrl+M); the arrow lists the models (Ctrl+Shift+M)")
    return mm
