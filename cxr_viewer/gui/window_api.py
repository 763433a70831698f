"""What the main window's add-ons use of it, as protocols that ``MainWindow`` satisfies.

:class:`~.actions.Actions` is built by ``MainWindow`` and calls back into it. Typing it against
these protocols rather than ``MainWindow`` itself keeps it below ``main_window.py`` in the import
graph (no cycle, ``tests/test_import_graph.py``), and says in one place which parts of the window
it relies on. (The PACS dialogs need none of the window: :mod:`.pacs_dialogs` gets what they use
and lists its menu entries, which ``Actions`` builds.) Nothing here is imported at run time but
Qt and :mod:`typing`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenuBar, QToolBar, QWidget

if TYPE_CHECKING:
    from .controller import Controller
    from .settings import Settings
    from .state import ViewerState
    from .status import StatusArea


class NamedActions(Protocol):
    """The window's actions by name (``Actions.all``)."""

    @property
    def all(self) -> dict[str, QAction]: ...


class ViewerWindow(Protocol):
    """The window as an add-on sees it: its state, services, menu bar and actions."""

    # read-only here (properties), so the window's own attribute types satisfy them
    @property
    def state(self) -> ViewerState: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def status(self) -> StatusArea: ...

    @property
    def controller(self) -> Controller: ...

    @property
    def actions_(self) -> NamedActions: ...

    def window(self) -> QWidget:
        """The top-level widget (the window itself): the Qt parent of what an add-on creates."""
        ...

    def menuBar(self) -> QMenuBar: ...  # noqa: N802 (Qt's name)

    def addAction(self, action: QAction) -> None: ...  # noqa: N802 (Qt's name)


class ActionsHost(ViewerWindow, Protocol):
    """The window as :class:`~.actions.Actions` sees it: the slots its menus and keys call."""

    def open_paths(self, paths: list[str]) -> None: ...

    def open_file_dialog(self) -> None: ...

    def open_folder_dialog(self) -> None: ...

    def open_model_dialog(self) -> None: ...

    def import_model_dialog(self) -> None: ...

    def export_png_dialog(self) -> None: ...

    def export_pdf_dialog(self) -> None: ...

    def fit_views(self) -> None: ...

    def actual_size(self) -> None: ...

    def zoom(self, factor: float) -> None: ...

    def reset_view(self) -> None: ...

    def show_shortcuts(self) -> None: ...

    def show_about(self) -> None: ...

    def close(self) -> bool: ...

    def addToolBar(self, toolbar: QToolBar) -> None: ...  # noqa: N802 (Qt's name)
