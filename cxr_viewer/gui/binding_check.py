"""Refuse a Qt binding that would abort the viewer later: checked once, before the window exists.

PySide6 6.12.0 (with its shiboken6) drops one reference to ``True`` on every ``Signal.emit``
delivered to a Python slot. On Python 3.11, where ``True`` is an ordinary reference-counted
object, the count reaches zero after a few hundred emits (about 500 study switches, or opening
a folder of ~1,300 images) and the interpreter aborts with "Fatal Python error: bool_dealloc",
losing whatever the user was doing. ``pyproject.toml`` excludes that release; this check catches
an environment where it was installed anyway (a frozen build from another lock, a user's
``pip install -U``) and stops at start-up with a message saying what to install, instead of
aborting in the middle of a reading session.

The probe is direct, not a version list: emit :data:`PROBE_EMITS` signals to a Python slot and
compare ``sys.getrefcount(True)`` before and after. On Python 3.12+ ``True`` is immortal (its
count never changes), so the probe passes there and the leak is harmless.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal

#: signals emitted by the probe (each leaked reference is one of ``True``'s ~thousands)
PROBE_EMITS = 32

#: the range ``pyproject.toml`` requires (tested: 6.8.3, 6.9.3, 6.10.3, 6.11.0, 6.11.3)
SUPPORTED = "PySide6-Essentials>=6.8,<6.12"


class _Probe(QObject):
    fired = Signal(str)


class BrokenQtBinding(RuntimeError):
    """The installed Qt binding loses references on signal delivery (it would abort later)."""


def leaked_true_references(emits: int = PROBE_EMITS) -> int:
    """References to ``True`` lost while ``emits`` signals reach a Python slot (0 when sound)."""
    probe = _Probe()
    received: list[str] = []
    probe.fired.connect(lambda text: received.append(text))
    before = sys.getrefcount(True)
    for _ in range(emits):
        probe.fired.emit("probe")
    after = sys.getrefcount(True)
    probe.deleteLater()
    if len(received) != emits:
        raise BrokenQtBinding(
            f"Qt delivered {len(received)} of {emits} test signals; the Qt binding is broken. "
            f"Reinstall it: python -m pip install --force-reinstall '{SUPPORTED}'"
        )
    # a lost reference shows as a drop; other threads may add or drop a few references of
    # their own meanwhile, so only a drop of at least half the emits counts as the leak
    lost = before - after
    return lost if lost >= emits // 2 else 0


def check_qt_binding() -> None:
    """Raise :class:`BrokenQtBinding` with what to do if signal delivery leaks references."""
    lost = leaked_true_references()
    if lost:
        import PySide6

        version = getattr(PySide6, "__version__", "?")
        # give back what the probe took, so that the refusal itself cannot abort the process
        for _ in range(lost):
            _keep.append(True)
        raise BrokenQtBinding(
            f"The installed PySide6 {version} loses a reference to True on every Qt signal "
            f"({lost} lost in {PROBE_EMITS} test signals): the viewer would abort with "
            "'Fatal Python error: bool_dealloc' after a few hundred study switches and lose "
            "your work. Install a supported version and start again:\n"
            f"    python -m pip install '{SUPPORTED}'"
        )


# references handed back after a failed probe (see check_qt_binding)
_keep: list[bool] = []
