"""Can Qt open a window here? Checked before the QApplication exists (no Qt import here).

Qt aborts the whole process (exit 134) when its platform plugin cannot be loaded, and its own
message often blames the wrong library. So before creating the window the viewer works out
which platform Qt will use (the same rules as ``QGuiApplication``: ``QT_QPA_PLATFORM``, else
``XDG_SESSION_TYPE``, else xcb) and, for xcb, asks the dynamic loader (``ldd`` on the plugin
PySide6 ships) which shared libraries are missing. On PySide6 6.x the xcb plugin needs,
besides libxcb and libX11, ``libxcb-icccm4``, ``libxcb-keysyms1``, ``libxcb-cursor0``,
``libxcb-image0``, ``libxcb-render-util0``, ``libxcb-randr0``, ``libxcb-shape0``,
``libxcb-xkb1``, ``libxkbcommon-x11-0`` … (:data:`APT_PACKAGES`); what is missing is read
from the plugin at run time, not assumed.
A missing library or no display at all gives a :class:`DisplayUnavailable` whose message names
the Debian/Ubuntu packages and the ways to run without a screen.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from cxr_viewer.core.errors import CxrError

#: the one line the README documents: what ``ldd`` lists for the xcb plugin of PySide6 6.12
#: beyond libraries every Debian/Ubuntu system has (libc, libX11, libxcb, glib, freetype)
APT_PACKAGES = (
    "libxcb-cursor0",
    "libxcb-icccm4",
    "libxcb-image0",
    "libxcb-keysyms1",
    "libxcb-randr0",
    "libxcb-render-util0",
    "libxcb-shape0",
    "libxcb-shm0",
    "libxcb-sync1",
    "libxcb-util1",
    "libxcb-xfixes0",
    "libxcb-xkb1",
    "libx11-xcb1",
    "libxkbcommon-x11-0",
    "libegl1",
    "libgl1",
    "libfontconfig1",
    "libdbus-1-3",
)
APT_LINE = "sudo apt-get install -y " + " ".join(APT_PACKAGES)

#: shared-library name → Debian/Ubuntu package
SONAME_PACKAGES: dict[str, str] = {
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libGLX.so.0": "libglx0",
    "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6",
}

#: what the xcb plugin links when ``ldd`` is not available (checked with find_library)
XCB_LIBRARIES = (
    "xcb-icccm",
    "xcb-keysyms",
    "xcb-cursor",
    "xcb-image",
    "xcb-render-util",
    "xcb-randr",
    "xcb-shape",
    "xcb-xkb",
    "xkbcommon-x11",
    "xkbcommon",
    "X11-xcb",
    "xcb",
    "EGL",
    "fontconfig",
)

HEADLESS_PLATFORMS = ("offscreen", "minimal", "vnc", "linuxfb", "eglfs", "vkkhrdisplay")

ALTERNATIVES = (
    "Without a screen: `cxr-viewer --self-test` checks the installation, "
    "`QT_QPA_PLATFORM=offscreen cxr-viewer …` runs the window invisibly, "
    "`cxr-viewer info|render|batch …` work headless, and `xvfb-run -a cxr-viewer` "
    "uses a virtual screen (after `sudo apt-get install -y xvfb`)."
)


class DisplayUnavailable(CxrError):
    """Qt cannot open a window: no display, or the platform plugin's libraries are missing."""


def package_for(soname: str) -> str:
    """The Debian/Ubuntu package that ships ``soname`` (a guess from the name if unknown)."""
    if soname in SONAME_PACKAGES:
        return SONAME_PACKAGES[soname]
    m = re.match(r"lib(.+?)\.so\.(\d+)", soname)
    if not m:
        return soname
    stem, major = m.group(1).lower(), m.group(2)
    return f"lib{stem}-{major}" if stem[-1].isdigit() else f"lib{stem}{major}"


def platform_plan(env: Mapping[str, str]) -> list[str]:
    """The platform plugins Qt will try, in order (QGuiApplication's own rules, simplified)."""
    forced = env.get("QT_QPA_PLATFORM", "").strip()
    if forced:
        return [p.split(":")[0].strip() for p in forced.split(";") if p.strip()]
    session = env.get("XDG_SESSION_TYPE", "").strip().lower()
    desktop = (env.get("XDG_CURRENT_DESKTOP", "") + env.get("XDG_SESSION_DESKTOP", "")).lower()
    if session == "wayland" and "gnome" not in desktop:
        return ["wayland", "xcb"]
    return ["xcb"]


def xcb_plugin() -> Path | None:
    """PySide6's xcb platform plugin (found without importing PySide6)."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        for rel in ("Qt/plugins/platforms/libqxcb.so", "plugins/platforms/libqxcb.so"):
            p = Path(root) / rel
            if p.exists():
                return p
    return None


def missing_with_ldd(library: Path) -> list[str] | None:
    """Shared libraries ``library`` needs that the loader cannot find (None: no ldd)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return None
    try:
        out = subprocess.run(
            [ldd, str(library)], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    missing = re.findall(r"^\s*(\S+)\s*=>\s*not found", out, flags=re.MULTILINE)
    return sorted(set(missing))


def missing_with_find_library(names=XCB_LIBRARIES) -> list[str]:
    """``lib<name>.so`` of each of ``names`` that ``ctypes.util.find_library`` cannot find."""
    return [f"lib{n}.so" for n in names if ctypes.util.find_library(n) is None]


def x_server_answers(display: str) -> bool | None:
    """Whether an X server accepts a connection at ``display`` (None: libxcb not loadable).

    Uses libxcb itself (``xcb_connect``), as Qt's xcb plugin will: a DISPLAY left over from
    another session (or an X server that has gone) makes Qt abort just like a missing library.
    """
    import ctypes

    name = ctypes.util.find_library("xcb")
    if name is None:
        return None
    try:
        xcb = ctypes.CDLL(name)
    except OSError:
        return None
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    conn = xcb.xcb_connect(display.encode(), None)
    try:
        return conn is not None and xcb.xcb_connection_has_error(conn) == 0
    finally:
        if conn is not None:
            xcb.xcb_disconnect(conn)


def check_display(
    env: Mapping[str, str] | None = None,
    find_missing: Callable[[], list[str] | None] | None = None,
    answers: Callable[[str], bool | None] = x_server_answers,
) -> None:
    """Raise :class:`DisplayUnavailable` when Qt would abort opening the window.

    Parameters
    ----------
    env:
        The environment (default ``os.environ``).
    find_missing:
        Returns the missing shared libraries of the xcb plugin (default: ``ldd`` on PySide6's
        plugin, else ``find_library`` on the known list). Tests pass their own.
    answers:
        Whether the X server at a display accepts connections (default: ask libxcb).
    """
    env = os.environ if env is None else env
    plan = platform_plan(env)
    if not plan or plan[0] in HEADLESS_PLATFORMS:
        return
    if plan[0] == "wayland" and env.get("WAYLAND_DISPLAY"):
        return
    if "xcb" not in plan:
        if plan[0] == "wayland":
            raise DisplayUnavailable(
                "CXR Lens cannot open its window: there is no Wayland display",
                "QT_QPA_PLATFORM asks for Wayland but WAYLAND_DISPLAY is not set.",
                ALTERNATIVES,
            )
        return  # a platform this check does not know: let Qt try
    if not env.get("DISPLAY"):
        if env.get("WAYLAND_DISPLAY"):
            return  # Qt falls back to Wayland
        raise DisplayUnavailable(
            "CXR Lens cannot open its window: there is no display",
            "neither DISPLAY (X11) nor WAYLAND_DISPLAY (Wayland) is set, so this session "
            "has no screen to draw on (an SSH login or a container, for example).",
            ALTERNATIVES,
        )
    if find_missing is None:

        def find_missing() -> list[str] | None:
            plugin = xcb_plugin()
            found = missing_with_ldd(plugin) if plugin is not None else None
            return found if found is not None else missing_with_find_library()

    missing = find_missing() or []
    if missing:
        packages = sorted({package_for(s) for s in missing})
        raise DisplayUnavailable(
            "CXR Lens cannot open its window: system libraries Qt needs are missing",
            f"Qt's X11 (xcb) platform plugin needs {', '.join(missing)}, which "
            "this system does not have.",
            f"Install them (Debian/Ubuntu): sudo apt-get install -y {' '.join(packages)}\n"
            f"or everything the viewer needs at once: {APT_LINE}\n{ALTERNATIVES}",
        )
    display = env["DISPLAY"]
    if answers(display) is False:
        raise DisplayUnavailable(
            f"CXR Lens cannot open its window: no X server answers at DISPLAY={display}",
            "the display named by DISPLAY does not accept connections (an X server that has "
            "stopped, or a DISPLAY left over from another session).",
            f"Start the desktop session again or correct DISPLAY.\n{ALTERNATIVES}",
        )


def message(exc: CxrError) -> str:
    """The text printed on the terminal for ``exc`` (what, why, what to do)."""
    why = exc.why.strip()
    why = why[:1].upper() + why[1:]
    return f"{exc.what}.\n{why}\n\n{exc.hint}\n" if why else f"{exc.what}.\n\n{exc.hint}\n"
