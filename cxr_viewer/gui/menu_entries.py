"""What a feature offers the window's menus: a :class:`MenuEntry` per command.

A feature module (e.g. :mod:`.pacs_dialogs`) lists its entries; the window passes them to
:class:`~.actions.Actions`, which makes the QActions (keys, tips, shortcuts that work with the
menu bar hidden) and puts each into the menu it names. The feature never looks for a menu, and
this module imports nothing of the viewer, so no feature depends on the window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: where an entry goes: the File menu's network/results group, or its Export submenu
FILE, FILE_EXPORT = "file", "file/export"


@dataclass(frozen=True)
class MenuEntry:
    """One command: its action name (``Actions[name]``), menu text, slot, keys and tip."""

    name: str
    text: str
    slot: Callable[[], object]
    keys: tuple[str, ...] = ()
    tip: str = ""
    menu: str = FILE
