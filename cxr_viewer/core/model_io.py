"""Loading Keras models safely, and where TensorFlow runs.

TensorFlow is imported here and only when called, so importing the rest of the core (and
opening the window) does not wait ~4 s for it.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from .errors import ModelLoadError

#: TensorFlow's big native libraries, relative to the ``tensorflow`` package folder. Their
#: static initialisers take 0.5–1.5 s (op and kernel registration).
_TF_NATIVE_LIBS = ("libtensorflow_framework.so.2", "libtensorflow_cc.so.2")


def preload_tensorflow_libraries() -> list[str]:
    """Load TensorFlow's native libraries *without holding the GIL*; return those loaded.

    ``import tensorflow`` loads ``libtensorflow_cc`` as a dependency of its first extension
    module, and CPython's import machinery calls ``dlopen`` while holding the GIL, so every
    other Python thread (the viewer's event loop included) freezes for the 0.5–1.5 s its
    static initialisers take. A call through :mod:`ctypes` to ``dlopen`` itself releases the
    GIL for its duration; afterwards the import finds the libraries already resident and
    links against them in milliseconds. Same flags as CPython uses for extension modules
    (``RTLD_NOW | RTLD_LOCAL``), so nothing leaks into the global symbol namespace.

    Linux only (elsewhere, or when the files are not where a pip or PyInstaller install
    puts them, it does nothing and the import works as before). Never raises.
    """
    if not sys.platform.startswith("linux") or "tensorflow" in sys.modules:
        return []
    try:
        import ctypes
        import importlib.util

        spec = importlib.util.find_spec("tensorflow")
        folders = list(spec.submodule_search_locations or []) if spec else []
        libc = ctypes.CDLL(None)
        dlopen = libc.dlopen
        dlopen.restype = ctypes.c_void_p
        dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
    except (ImportError, ValueError, OSError, AttributeError):
        return []
    loaded = []
    for folder in folders:
        for name in _TF_NATIVE_LIBS:
            path = Path(folder) / name
            if path.is_file() and dlopen(os.fsencode(path), os.RTLD_NOW | os.RTLD_LOCAL):
                loaded.append(str(path))
    return loaded


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a big import; freeze what it made.

    A big import (TensorFlow makes ~700 000 Python objects, shap and lime ~60 000) triggers
    full (generation 2) collections over every object in the process, each holding the GIL
    for 0.05–0.4 s while it finds nothing to free — on a worker thread, that freezes the
    viewer's event loop. With the collector paused the import is also ~15 % faster; at the
    end the new objects are frozen (:func:`gc.freeze`, a permanent generation that later
    collections skip): module-level objects live as long as the process anyway.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def importing(name: str) -> contextlib.AbstractContextManager:
    """:func:`gc_paused` for the import of ``name``, or nothing if it is already imported.

    Write the import itself as a plain statement inside, so that PyInstaller sees it::

        with importing("shap"):
            import shap
    """
    return contextlib.nullcontext() if name in sys.modules else gc_paused()


def import_tensorflow():
    """Import TensorFlow (and Keras) quietly, without freezing other Python threads.

    Importing TensorFlow on a worker thread froze the viewer's event loop in two ways, both
    handled here: ``libtensorflow_cc`` loaded under the GIL for 0.5–1.5 s (now preloaded
    without it, :func:`preload_tensorflow_libraries`), and the garbage collector's full
    collections over the import's objects held it for 0.1–0.4 s at a time (paused,
    :func:`gc_paused`).

    ``CXR_NO_TF_PRELOAD=1`` turns both off (a way out should some TensorFlow build dislike
    it; ``benchmarks/bench_startup.py`` compares both). TensorFlow's C++ log chatter is
    not the user's business: ``TF_CPP_MIN_LOG_LEVEL=2`` unless set.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules or os.environ.get("CXR_NO_TF_PRELOAD"):
        import tensorflow as tf

        return tf
    with gc_paused():
        preload_tensorflow_libraries()
        import keras  # noqa: F401  - TensorFlow's backend, always needed next
        import tensorflow as tf
    return tf


def load_keras_model(path: str | Path):
    """Load a ``.keras`` (or flat Keras 2 ``.h5``) model with ``safe_mode=True``.

    Safe mode refuses to deserialise Python lambdas, so a model file can never run code.
    """
    path = Path(path)
    import_tensorflow()
    import keras

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except ValueError as exc:
        msg = str(exc)
        if "Lambda" in msg or "safe_mode" in msg or "unsafe" in msg.lower():
            raise ModelLoadError(
                f"Refusing to load {path.name}",
                "it contains a Lambda layer (arbitrary Python code), which safe mode does not run.",
                "Rebuild the model without Lambda layers (use a named Keras layer) and re-export.",
            ) from exc
        raise ModelLoadError(
            f"Cannot load the model {path.name}",
            msg,
            "Check that it is a Keras 3 .keras file written by `cxr-train`.",
        ) from exc
    except (OSError, TypeError, KeyError, AttributeError) as exc:
        raise ModelLoadError(
            f"Cannot load the model {path.name}",
            f"{type(exc).__name__}: {exc}",
            "The file may be truncated or from an incompatible Keras version; re-export it.",
        ) from exc


def describe_device() -> str:
    """Where TensorFlow runs: 'GPU: <name>' for the first visible GPU, else 'CPU'."""
    tf = import_tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    try:
        details = tf.config.experimental.get_device_details(gpus[0])
        name = details.get("device_name", gpus[0].name)
    except (ValueError, RuntimeError):
        name = gpus[0].name
    more = f" (+{len(gpus) - 1} more)" if len(gpus) > 1 else ""
    return f"GPU: {name}{more}"
