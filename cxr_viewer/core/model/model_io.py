"""Loading Keras models safely, and where TensorFlow runs.

TensorFlow is imported here and only when called, so importing the rest of the core (and
opening the window) does not wait ~4 s for it. This is also the one place where the compute
device is chosen and the GPU's memory policy is set, both before TensorFlow's first op:

* :func:`configure` records ``--device auto|cpu|gpu:N``, ``--gpu-memory MB`` and ``--verbose``
  (the command lines and the viewer call it first thing). ``cpu`` hides every GPU from
  TensorFlow before it is imported (``CUDA_VISIBLE_DEVICES=-1``).
* :func:`import_tensorflow` imports TensorFlow and then, before any op, makes only the chosen
  GPU visible and turns on memory growth on it (TensorFlow's default is to reserve nearly all
  of the card's memory at the first call, starving every other program that draws on it), or
  caps TensorFlow's share at ``--gpu-memory`` MB.
* TensorFlow's native start-up lines (absl's "before InitializeLog" notice, oneDNN and CPU
  feature notices — twice, once per native library — and "failed call to cuInit" on a machine
  without a CUDA driver) are not the user's business: unless ``verbose``, fd 2 is filtered
  while TensorFlow starts (:func:`quiet_native_stderr`); every other line, a real error
  included, still reaches stderr as it is written.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxr_viewer.core.errors import DeviceError, ModelLoadError

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


def importing(name: str) -> contextlib.AbstractContextManager[None]:
    """:func:`gc_paused` for the import of ``name``, or nothing if it is already imported.

    Write the import itself as a plain statement inside, so that PyInstaller sees it::

        with importing("shap"):
            import shap
    """
    return contextlib.nullcontext() if name in sys.modules else gc_paused()


# ---------------------------------------------------------------------------------- device
@dataclass(frozen=True)
class DeviceRequest:
    """Where the model runs: ``auto`` (first GPU, else CPU), ``cpu``, ``gpu:N`` or ``all``
    (every GPU: ``cxr-train train``'s default, for its multi-GPU MirroredStrategy)."""

    kind: str = "auto"
    index: int | None = None

    @classmethod
    def parse(cls, text: str | DeviceRequest | None) -> DeviceRequest:
        """``auto`` / ``cpu`` / ``all`` / ``gpu`` (= ``gpu:0``) / ``gpu:N``; else ValueError."""
        if isinstance(text, DeviceRequest):
            return text
        t = (text or "auto").strip().lower()
        if t in ("auto", "cpu", "all"):
            return cls(t)
        m = re.fullmatch(r"gpu(?::(\d+))?", t)
        if m:
            return cls("gpu", int(m.group(1) or 0))
        raise ValueError(f"expected auto, cpu or gpu:N (N = 0, 1, ...) or all, got {text!r}")

    def __str__(self) -> str:
        return f"gpu:{self.index}" if self.kind == "gpu" else self.kind


@dataclass
class RuntimeConfig:
    """What :func:`configure` asked for; read by :func:`import_tensorflow`."""

    device: DeviceRequest = DeviceRequest()
    gpu_memory_mb: int | None = None
    verbose: bool = False
    #: try float16 inference on a GPU (checked against float32 at load; off by default)
    mixed_precision: bool = False


@dataclass
class RuntimeState:
    """What was actually applied to TensorFlow (``None`` before TensorFlow starts)."""

    device: str = "CPU"  # describe_device()'s text
    request: str = "auto"
    gpus_found: int = 0
    visible_gpus: list[str] | None = None
    memory_growth: bool = False
    memory_limit_mb: int | None = None
    applied_before_first_op: bool = True
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


_config = RuntimeConfig()
_state: RuntimeState | None = None
_tf_lock = threading.RLock()
#: environment values configure() replaced, so that a later choice can restore them
_env_before: dict[str, str | None] = {}


def configure(
    device: str | DeviceRequest | None = "auto",
    gpu_memory_mb: int | None = None,
    verbose: bool = False,
    mixed_precision: bool = False,
) -> bool:
    """Record the device, GPU memory policy and verbosity for TensorFlow's start.

    Call it before TensorFlow is imported (the CLIs do so right after parsing). ``cpu`` sets
    ``CUDA_VISIBLE_DEVICES=-1`` at once, so TensorFlow never sees a GPU; with no memory cap,
    ``TF_FORCE_GPU_ALLOW_GROWTH=true`` is set too, which covers any code that imports Keras
    before :func:`import_tensorflow` runs. Returns True when the choice takes effect in this
    process, False when TensorFlow has already started (or is starting, on another thread:
    this never waits for it) on another device; then it takes effect at the next start.
    """
    global _config
    req = DeviceRequest.parse(device)
    if gpu_memory_mb is not None and int(gpu_memory_mb) <= 0:
        gpu_memory_mb = None
    mb = None if gpu_memory_mb is None else int(gpu_memory_mb)
    new = RuntimeConfig(req, mb, verbose, mixed_precision)
    if not _tf_lock.acquire(blocking=False):  # TensorFlow is starting right now (a worker)
        return False
    with contextlib.ExitStack() as stack:
        stack.callback(_tf_lock.release)
        if _state is not None:  # TensorFlow runs already: only the verbosity can change
            same = str(req) == _state.request and new.gpu_memory_mb == _config.gpu_memory_mb
            _config = RuntimeConfig(_config.device, _config.gpu_memory_mb, verbose, mixed_precision)
            return same
        _config = new
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "2")
        if req.kind == "cpu":
            if os.environ.get("CUDA_VISIBLE_DEVICES") != "-1":
                _env_before.setdefault(
                    "CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES")
                )
            os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
        elif "CUDA_VISIBLE_DEVICES" in _env_before:  # an earlier configure(cpu) hid them
            old = _env_before.pop("CUDA_VISIBLE_DEVICES")
            if old is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = old
        if new.gpu_memory_mb is None:
            os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
        return True


def runtime_config() -> RuntimeConfig:
    return _config


def runtime_state() -> RuntimeState | None:
    """What :func:`import_tensorflow` applied, or None if TensorFlow has not started here."""
    return _state


def runtime_initialized(tf: Any) -> bool:
    """Whether TensorFlow's eager runtime has started (after that, devices are fixed).

    Reads TensorFlow's own flag (``context.context()._initialized``, set by the first op);
    False if a TensorFlow version lacks it.
    """
    try:
        from tensorflow.python.eager import context
    except ImportError:
        return False
    return bool(getattr(context.context(), "_initialized", False))


def apply_memory_policy(tf: Any, device: Any, cap_mb: int | None) -> str:
    """Memory growth on ``device`` ("growth"), or a cap of ``cap_mb`` MB ("cap").

    TensorFlow accepts either, not both, and only before its first op.
    """
    if cap_mb:
        tf.config.set_logical_device_configuration(
            device, [tf.config.LogicalDeviceConfiguration(memory_limit=int(cap_mb))]
        )
        return "cap"
    tf.config.experimental.set_memory_growth(device, True)
    return "growth"


def apply_device_config(tf: Any, config: RuntimeConfig | None = None) -> RuntimeState:
    """Make the chosen GPU (if any) the only visible one and set its memory policy.

    Must run before TensorFlow's first op; if it is too late (TensorFlow raises RuntimeError:
    the runtime is initialised) the state says so and TensorFlow keeps what it had. Raises
    :class:`DeviceError` for ``gpu:N`` when TensorFlow sees no GPU ``N``.
    """
    config = config or _config
    req = config.device
    gpus = tf.config.list_physical_devices("GPU")
    if req.kind == "cpu":
        chosen = []
    elif req.kind == "gpu":
        if req.index is None or req.index >= len(gpus):
            found = f"{len(gpus)} GPU(s): " + ", ".join(g.name for g in gpus) if gpus else "no GPU"
            raise DeviceError(
                f"Cannot run on {req}",
                f"TensorFlow sees {found}.",
                "Choose --device auto or cpu (in the viewer: the device menu in the status "
                'bar), or check the GPU driver and the CUDA wheels (pip install -e ".[gpu]").',
            )
        chosen = [gpus[req.index]]
    elif req.kind == "all":
        chosen = gpus
    else:
        chosen = gpus[:1]
    state = RuntimeState(request=str(req), gpus_found=len(gpus))
    if runtime_initialized(tf):
        # TensorFlow would refuse (with a GPU) or silently ignore (without one) the settings
        state.applied_before_first_op = False
        state.note = "device settings not applied: TensorFlow had already run an op"
        state.visible_gpus = [g.name for g in tf.config.get_visible_devices("GPU")]
        state.memory_growth = bool(state.visible_gpus) and all(
            tf.config.experimental.get_memory_growth(g)
            for g in tf.config.get_visible_devices("GPU")
        )
        return state
    try:
        # hiding GPUs is valid on every machine; on a CPU-only one there are none to hide
        tf.config.set_visible_devices(chosen, "GPU")
        for gpu in chosen:
            if apply_memory_policy(tf, gpu, config.gpu_memory_mb) == "cap":
                state.memory_limit_mb = config.gpu_memory_mb
            else:
                state.memory_growth = True
    except RuntimeError as exc:  # the runtime already started (someone ran an op first)
        state.applied_before_first_op = False
        state.note = f"device settings not applied, TensorFlow had already started: {exc}"
        state.memory_growth = bool(chosen) and all(
            tf.config.experimental.get_memory_growth(g) for g in chosen
        )
    state.visible_gpus = [g.name for g in tf.config.get_visible_devices("GPU")]
    return state


#: TensorFlow start-up lines that are noise for a user: absl's pre-initialisation notice and
#: INFO/WARNING lines of native code (I/W + MMDD time thread file:line]), plus the
#: continuation of the CPU-feature notice.
_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:.]+\s+\d+ \S+:\d+\] .*"
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\.)\s*$"
)
#: ERROR lines TensorFlow's CUDA builds print at every start although nothing is wrong (each
#: CUDA library's plugin registered twice, once per native library)
_HARMLESS_ERRORS = re.compile(r"^E\d{4} .*Unable to register cu\w+ factory: Attempting to register")
_CUINIT = re.compile(r"^E\d{4} .*failed call to cuInit", re.IGNORECASE)
_NO_DRIVER = re.compile(r"Could not find cuda drivers on your machine", re.IGNORECASE)


class NativeLogFilter:
    """Decides line by line what of TensorFlow's native start-up output reaches stderr.

    Dropped: absl's pre-initialisation notice, INFO and WARNING lines of native code, the
    CPU-feature notice's second line, and the "Unable to register cuDNN/cuFFT/cuBLAS factory"
    ERROR lines CUDA builds print at every start. Everything else is kept, errors included.

    A cuInit failure is dropped only when there is no GPU to use: TensorFlow found no CUDA
    driver at all, or ``CUDA_VISIBLE_DEVICES`` hides every GPU (``--device cpu``). With a
    driver present it is a real fault and stays.
    """

    def __init__(self) -> None:
        self.no_driver = False
        self.dropped = 0

    def keep(self, line: str) -> bool:
        if _NO_DRIVER.search(line):
            self.no_driver = True
        if _NOISE.match(line) or _HARMLESS_ERRORS.match(line):
            self.dropped += 1
            return False
        if _CUINIT.match(line):
            hidden = os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1")
            if self.no_driver or hidden or "NO_DEVICE" in line:
                self.dropped += 1
                return False
        return True


_native_filter = NativeLogFilter()


@contextlib.contextmanager
def quiet_native_stderr(enabled: bool = True) -> Iterator[NativeLogFilter]:
    """Filter what native code writes to fd 2 (absl logs bypass ``sys.stderr``) while inside.

    fd 2 goes to a pipe; a thread reads it and forwards, as they come, every line that
    :class:`NativeLogFilter` keeps to the real stderr (a real error shows at once, even if the
    process then dies). Does nothing when disabled or when there is no usable fd 2 (a
    windowed app).
    """
    if not enabled:
        yield _native_filter
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, AttributeError, ValueError):
        yield _native_filter
        return
    r, w = os.pipe()
    with contextlib.suppress(ImportError, AttributeError, OSError):
        import fcntl

        # room for 1 MB of output even while a writer holds the GIL the reader needs to filter
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 1 << 20)

    def write(data: bytes) -> None:
        with contextlib.suppress(OSError):  # stderr closed under us: nothing to show it on
            while data:
                data = data[os.write(saved, data) :]

    def forward() -> None:  # owns r and saved: closes them when the pipe's writers are gone
        pending = b""
        try:
            while chunk := os.read(r, 65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                out = [ln for ln in lines if _native_filter.keep(ln.decode("utf-8", "replace"))]
                if out:
                    write(b"\n".join(out) + b"\n")
            if pending and _native_filter.keep(pending.decode("utf-8", "replace")):
                write(pending)
        except OSError:
            pass
        finally:
            os.close(r)
            restored.wait(60)  # never close saved before fd 2 is a copy of it again
            os.close(saved)

    restored = threading.Event()
    reader = threading.Thread(target=forward, name="tf-stderr-filter", daemon=True)
    reader.start()
    os.dup2(w, 2)
    os.close(w)
    try:
        yield _native_filter
    finally:
        with contextlib.suppress(OSError, AttributeError, ValueError):
            sys.stderr.flush()
        # fd 2 back to the real stderr; that closes the pipe's last write end (unless a child
        # process inherited it), so the reader sees end-of-file, forwards the rest and ends
        os.dup2(saved, 2)
        restored.set()
        reader.join(timeout=10)


def import_tensorflow() -> Any:
    """Import TensorFlow (and Keras) quietly, without freezing other Python threads.

    Importing TensorFlow on a worker thread froze the viewer's event loop in two ways, both
    handled here: ``libtensorflow_cc`` loaded under the GIL for 0.5–1.5 s (now preloaded
    without it, :func:`preload_tensorflow_libraries`), and the garbage collector's full
    collections over the import's objects held it for 0.1–0.4 s at a time (paused,
    :func:`gc_paused`).

    ``CXR_NO_TF_PRELOAD=1`` turns both off (a way out should some TensorFlow build dislike
    it; ``benchmarks/bench_startup.py`` compares both). TensorFlow's C++ log chatter is
    not the user's business: ``TF_CPP_MIN_LOG_LEVEL=2`` unless set, and the lines printed
    before that setting is read are filtered (:func:`quiet_native_stderr`) unless ``verbose``.

    The first call also applies the device and GPU memory settings of :func:`configure`
    (:func:`apply_device_config`) before any op; a ``gpu:N`` that does not exist raises
    :class:`DeviceError`.
    """
    global _state
    if _state is not None:
        import tensorflow as tf

        return tf
    with _tf_lock:
        if _state is not None:
            import tensorflow as tf

            return tf
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if _config.verbose else "2")
        if _config.gpu_memory_mb is None:
            os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
        with quiet_native_stderr(not _config.verbose):
            if "tensorflow" in sys.modules or os.environ.get("CXR_NO_TF_PRELOAD"):
                import tensorflow as tf
            else:
                with gc_paused():
                    preload_tensorflow_libraries()
                    import keras  # noqa: F401  - TensorFlow's backend, always needed next
                    import tensorflow as tf
            state = apply_device_config(tf, _config)  # lists devices: cuInit runs here
        state.device = _describe(tf)
        _state = state
    return tf


def load_keras_model(path: str | Path) -> Any:
    """Load a ``.keras`` (or flat Keras 2 ``.h5``) model with ``safe_mode=True``.

    Safe mode refuses to deserialise Python lambdas, so a model file can never run code.
    A ``.keras`` archive is checked against size and compression-ratio caps first
    (:data:`~cxr_viewer.core.io.archive.KERAS_LIMITS`).
    """
    path = Path(path)
    from cxr_viewer.core.io.archive import KERAS_LIMITS, ArchiveError, check_zip_file

    try:
        check_zip_file(path, KERAS_LIMITS)  # a .keras file is a zip: no zip bomb reaches Keras
    except ArchiveError as exc:
        raise ModelLoadError(exc.what, exc.why, exc.hint) from exc
    import_tensorflow()
    import keras

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        refused = code_reference(str(exc))
        if refused is not None:
            raise ModelLoadError(
                f"Refusing to load {path.name}",
                f"it references code that safe mode will not run: {refused}. A model file "
                "is never allowed to run code of its own.",
                "Rebuild the model from Keras's own layers and functions (no custom classes, "
                "Lambda layers or other Python functions) and save it again.",
            ) from exc
        if isinstance(exc, ValueError):
            raise ModelLoadError(
                f"Cannot load the model {path.name}",
                str(exc),
                "Check that it is a Keras 3 .keras file written by `cxr-train`.",
            ) from exc
        if isinstance(exc, OSError | TypeError | KeyError | AttributeError):
            raise ModelLoadError(
                f"Cannot load the model {path.name}",
                f"{type(exc).__name__}: {exc}",
                "The file may be truncated or from an incompatible Keras version; re-export it.",
            ) from exc
        raise


#: What Keras's safe mode says when a model file names code it does not run (Keras 3).
_REFUSALS = (
    # a class Keras does not know: custom layers, or anything else (subprocess.Popen, ...)
    (re.compile(r"Could not locate class '([^']+)'"), "class"),
    (re.compile(r"Could not locate function '([^']+)'"), "function"),
    # a Keras function that is not a modeling function (keras.utils.get_file, ...)
    (re.compile(r"Cannot deserialize `([^`]+)` because it is not a modeling function"), "function"),
    (re.compile(r"(Lambda)\b.*safe_mode|safe_mode.*\b(lambda)\b", re.I | re.S), "layer"),
)


def code_reference(message: str) -> str | None:
    """The class or function a Keras load error says safe mode refused, in words, or None."""
    for pattern, kind in _REFUSALS:
        m = pattern.search(message)
        if m is None:
            continue
        name = next(g for g in m.groups() if g)
        if kind == "layer":
            return "a Lambda layer (arbitrary Python code)"
        where = re.search(r"'module': '([^']+)', 'class_name': '" + re.escape(name) + "'", message)
        module = f" from the module '{where.group(1)}'" if where else ""
        return f"the {kind} '{name}'{module}"
    if "safe_mode" in message or "unsafe" in message.lower():
        return "Python code (a lambda or a function)"
    return None


def _describe(tf: Any) -> str:
    gpus = tf.config.get_visible_devices("GPU")
    if not gpus:
        return "CPU"
    try:
        details = tf.config.experimental.get_device_details(gpus[0])
        name = details.get("device_name", gpus[0].name)
    except (ValueError, RuntimeError):
        name = gpus[0].name
    index = gpus[0].name.rsplit(":", 1)[-1]
    more = f" (+{len(gpus) - 1} more)" if len(gpus) > 1 else ""
    return f"GPU {index}: {name}{more}"


def describe_device() -> str:
    """Where TensorFlow runs: 'GPU <N>: <name>' for the GPU in use, else 'CPU'."""
    import_tensorflow()
    return _state.device if _state is not None else "CPU"


def gpu_memory_in_use() -> int | None:
    """Bytes TensorFlow holds on the GPU in use now, or None (CPU, or TensorFlow not started).

    Never imports TensorFlow (cheap enough to poll from a status bar).
    """
    if _state is None or not _state.visible_gpus or "tensorflow" not in sys.modules:
        return None
    import tensorflow as tf

    try:
        return int(tf.config.experimental.get_memory_info("GPU:0")["current"])
    except (ValueError, RuntimeError, KeyError):
        return None
