"""The frozen app (``bash packaging/build.sh`` → ``dist/cxr-viewer/``): self-test and GUI start.

Skipped when no build is present (CI does not build: ~15 min and 2 GB). ``$CXR_FROZEN_APP``
points at another build's executable.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXE_NAME = "cxr-viewer.exe" if sys.platform == "win32" else "cxr-viewer"
APP = Path(os.environ.get("CXR_FROZEN_APP") or ROOT / "dist" / "cxr-viewer" / EXE_NAME)
#: what the GUI's logger (``%(asctime)s %(levelname)s %(name)s: ...``) or Python print when
#: something failed while it started
GUI_FAILURE = re.compile(r"^Traceback|^\S+ \S+ (ERROR|CRITICAL) |unexpected error|task failed")

pytestmark = pytest.mark.skipif(
    not APP.is_file(),
    reason=f"no frozen build at {APP} (build it with `bash packaging/build.sh`)",
)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CXR_RESOURCES"}
    env.update(QT_QPA_PLATFORM="offscreen", TF_CPP_MIN_LOG_LEVEL="2")
    return env


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """The build's own demo bundle, or a tiny one when the build was made without it."""
    demo = APP.parent / "_internal" / "resources" / "demo_bundle"
    if (demo / "metadata.json").is_file():
        return demo
    from bundle_support import write_tiny_bundle

    return write_tiny_bundle(tmp_path_factory.mktemp("frozen") / "tiny_bundle")


@pytest.mark.slow
def test_frozen_self_test_passes(tmp_path, bundle):
    report_path = tmp_path / "selftest.json"
    cmd = [str(APP), "--self-test", "--report", str(report_path), "--model", str(bundle)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["ok"] and report["frozen"] is True, report["failed"]
    steps = report["steps"]
    # decoders found through pylibjpeg's entry points, i.e. its dist-info made it into the build
    assert "pylibjpeg" in steps["open_jpeg2000_dicom"]["decoders"]
    assert steps["dicom_codecs"]["plugins"]["JPEGLossless"] == ["pylibjpeg"]
    from pylibjpeg.utils import get_pixel_data_decoders

    assert steps["dicom_codecs"]["pylibjpeg_entry_points"] == len(get_pixel_data_decoders())
    assert steps["open_jpegls_dicom"]["transfer_syntax"] == "1.2.840.10008.1.2.4.80"
    assert report["device"] == "CPU" or report["device"].startswith("GPU")
    assert "SELF-TEST PASSED" in done.stdout


@pytest.mark.slow
def test_frozen_gui_starts_loads_the_model_and_quits_cleanly(bundle):
    """The window starts (offscreen), opens the samples, loads a model without an error and
    closes by itself (``--quit-when-ready``, ``--quit-after`` as the upper bound) with exit 0."""
    usage = subprocess.run(
        [str(APP), "--help"], capture_output=True, text=True, env=_env(), timeout=120
    )
    if "--quit-when-ready" not in usage.stdout:
        pytest.skip(f"the build at {APP} predates --quit-when-ready: rebuild it")
    done = subprocess.run(
        [str(APP), "--model", str(bundle), "--quit-when-ready", "--quit-after", "600"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=700,
    )
    assert done.returncode == 0, (
        f"exit code {done.returncode}:\n{done.stdout}\n{done.stderr[-4000:]}"
    )
    assert "closing by itself: the model is ready" in done.stderr, done.stderr[-4000:]
    failures = [
        line
        for line in done.stderr.splitlines()
        if GUI_FAILURE.search(line) or "did not stop within" in line
    ]
    assert not failures, done.stderr[-4000:]


@pytest.mark.slow
@pytest.mark.integration
def test_frozen_app_shows_every_real_dicom_like_the_source_install(shared_data, tmp_path):
    """Every transfer syntax in ../shared/data/dicom: the frozen `render` gives the same 8-bit
    display image as the source install, and the file no decoder accepts fails the same way."""
    import numpy as np
    from PIL import Image

    from cxr_viewer.core.errors import StudyLoadError
    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.io.display import display_image, to_uint8

    files = sorted((shared_data / "dicom").glob("*.dcm"))
    assert files
    for path in files:
        out = tmp_path / f"{path.stem}.png"
        done = subprocess.run(
            [str(APP), "render", str(path), "-o", str(out)],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=300,
        )
        try:
            expected = to_uint8(display_image(load_study(path)))
        except StudyLoadError:
            assert done.returncode == 2 and "Cannot decode" in done.stderr, path.name
            continue
        assert done.returncode == 0, f"{path.name}: {done.stderr[-2000:]}"
        assert np.array_equal(np.asarray(Image.open(out)), expected), path.name


def _elf_sections(path: Path) -> dict[str, tuple[int, int]]:
    """Section name -> (type, size) of a 64-bit little-endian ELF file ({} for anything else)."""
    import struct

    with open(path, "rb") as f:
        head = f.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            return {}
        (shoff,) = struct.unpack_from("<Q", head, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", head, 0x3A)
        f.seek(shoff)
        table = f.read(shentsize * shnum)
        headers = [struct.unpack_from("<IIQQQQ", table, i * shentsize) for i in range(shnum)]
        f.seek(headers[shstrndx][4])
        names = f.read(headers[shstrndx][5])
    return {names[h[0] : names.index(b"\0", h[0])].decode(): (h[1], h[5]) for h in headers}


def _has_symtab(path: Path) -> bool:
    return any(kind == 2 for kind, _ in _elf_sections(path).values())  # SHT_SYMTAB


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the strip step runs on Linux")
def test_frozen_build_leaves_out_what_the_viewer_never_runs():
    """The installer diet of packaging/cxr_viewer.spec holds: no trainer, no pyarrow, no Qt
    translations or StableHLO bindings, and no symbol tables left in the collected libraries
    except auditwheel's patchelf-rewritten ``*.libs`` ones (and h5py, kept as shipped)."""
    internal = APP.parent / "_internal"
    absent = [
        "trainer",
        "imblearn",
        "pyarrow",
        "ray",
        "PySide6/Qt/translations",
        "tensorflow/compiler/mlir/stablehlo",
        "matplotlib/mpl-data/sample_data",
    ]
    present = [name for name in absent if (internal / name).exists()]
    assert not present, f"collected although the viewer never uses them: {present}"
    assert not list(internal.glob("tensorflow-*.dist-info/RECORD"))
    # what the features need is still there: h5py (.h5 import), the demo bundle
    assert (internal / "h5py").is_dir()
    # PyInstaller adds the two extensions its PYZ reader needs after the spec has run
    bootstrap = {"zlib", "_struct"}
    unstripped = [
        str(path.relative_to(internal))
        for path in internal.rglob("*.so*")
        if path.is_file()
        and not path.is_symlink()
        and not any(part.endswith(".libs") for part in path.relative_to(internal).parts)
        and not str(path.relative_to(internal)).startswith("h5py")
        and path.name.split(".")[0] not in bootstrap
        and _has_symtab(path)
    ]
    assert not unstripped, f"libraries with their symbol tables: {unstripped[:20]}"
    if not (internal / "nvidia").is_dir():
        # a CPU-only build (no CUDA wheels collected) is built on tensorflow-cpu: no GPU kernels
        sections = _elf_sections(internal / "tensorflow" / "libtensorflow_cc.so.2")
        assert sections and ".nv_fatbin" not in sections
