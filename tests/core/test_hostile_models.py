"""Hostile model files and bundles get one clear error, built in the test (issue 26, 6 and 11).

- a ``.keras`` whose ``config.json`` inflates far past its cap is refused before anything is
  inflated (before: ``cxr-train import`` inflated a 1 MB file to a 2.84 GB peak, then refused);
  one that declares a small size but inflates large is stopped at the declared size;
- a bundle's ``metadata.json`` with a 5000-digit integer, a ``background_file`` that is a zip
  (``.npz``) or a ``.npy`` whose header declares more than the file holds;
- models that name a custom class, ``subprocess.Popen`` or ``keras.utils.get_file``: refused
  because they reference code safe mode will not run, naming it (before: "the file may be
  truncated").
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cxr_viewer.cli import main as viewer_main
from cxr_viewer.core.errors import BundleError, ModelLoadError
from cxr_viewer.core.importer.inspect import read_config
from cxr_viewer.core.importer.sources import read_source
from cxr_viewer.core.io import archive
from cxr_viewer.core.model.bundle import open_bundle
from cxr_viewer.core.paths import demo_bundle_dir, samples_dir

MiB = 2**20
CAP = 1 * MiB  # the test's config.json cap (the shipped one is 64 MiB)


@pytest.fixture
def small_cap(monkeypatch):
    limits = archive.ZipLimits(
        max_total=archive.KERAS_LIMITS.max_total,
        max_entry=archive.KERAS_LIMITS.max_entry,
        max_entries=archive.KERAS_LIMITS.max_entries,
        named=(("config.json", CAP), ("metadata.json", CAP)),
    )
    monkeypatch.setattr(archive, "KERAS_LIMITS", limits)


def _keras_zip(path: Path, config: bytes, declared: int | None = None) -> Path:
    """A ``.keras``-shaped zip; ``declared`` overwrites config.json's declared size."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", config)
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.0.0"}))
        zf.writestr("model.weights.h5", b"\0" * 64)
    data = bytearray(buf.getvalue())
    if declared is not None:  # local header (offset 22) and central directory (offset 24)
        assert data.find(b"PK\x03\x04") == 0
        struct.pack_into("<I", data, 22, declared)
        struct.pack_into("<I", data, data.find(b"PK\x01\x02") + 24, declared)
    path.write_bytes(bytes(data))
    return path


def _bomb_config(n_bytes: int) -> bytes:
    """Valid JSON of ``n_bytes`` that deflates ~1000:1 (spaces inside a list)."""
    head, tail = b'{"class_name": "Functional", "config": {"layers": [', b"]}}"
    return head + b" " * (n_bytes - len(head) - len(tail)) + tail


@pytest.mark.parametrize("reader", [read_config, read_source], ids=["inspect", "import"])
def test_config_json_past_its_cap_is_refused_before_it_is_inflated(tmp_path, small_cap, reader):
    path = _keras_zip(tmp_path / "bomb.keras", _bomb_config(16 * CAP))
    assert path.stat().st_size < CAP // 8  # a small file ...
    tracemalloc.start()
    try:
        with pytest.raises(archive.ArchiveError) as err:
            reader(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < CAP // 2  # ... refused from its declared size: nothing was inflated
    assert "config.json" in str(err.value) and "zip bomb" in str(err.value)


def test_config_json_that_inflates_past_its_declared_size_is_stopped(tmp_path, small_cap):
    path = _keras_zip(tmp_path / "liar.keras", _bomb_config(16 * CAP), declared=1000)
    tracemalloc.start()
    try:
        with pytest.raises(BundleError) as err:
            read_config(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < CAP // 2
    assert str(err.value).startswith("Cannot read liar.keras: it is not a readable Keras model")


def _bundle_copy(tmp_path: Path) -> Path:
    root = tmp_path / "bundle"
    shutil.copytree(demo_bundle_dir(), root, ignore=shutil.ignore_patterns("report"))
    return root


def _edit_metadata(root: Path, text_edit) -> None:
    meta = root / "metadata.json"
    meta.write_text(text_edit(meta.read_text(encoding="utf-8")), encoding="utf-8")


def test_a_5000_digit_integer_in_metadata_is_one_clear_error(tmp_path, capsys):
    root = _bundle_copy(tmp_path)
    _edit_metadata(
        root, lambda t: t.replace('"version": "', '"build": ' + "9" * 5000 + ', "v": "', 1)
    )
    with pytest.raises(BundleError) as err:
        open_bundle(root)
    assert "more than 4,300 digits" in str(err.value) and "Re-export the bundle" in str(err.value)
    # the command line: one line, no traceback, exit 2
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(samples_dir() / "phantom_selftest.png", src)
    code = viewer_main(["batch", str(src), "--model", str(root), "--out", str(tmp_path / "o")])
    err_text = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err_text and "4,300 digits" in err_text
    assert len(err_text.splitlines()) == 1


def test_background_file_that_is_a_zip_or_declares_too_much_is_refused(tmp_path):
    root = _bundle_copy(tmp_path)
    np.savez(root / "background.npz", a=np.zeros((2, 2)))
    _edit_metadata(root, lambda t: t.replace('"background.npy"', '"background.npz"'))
    with pytest.raises(BundleError) as err:
        open_bundle(root).background()
    assert "it is a zip archive (.npz)" in str(err.value)
    assert "background_file must be one .npy array" in str(err.value)

    # a .npy header declaring 10^12 float32 values in a 200-byte file: refused, not allocated
    root2 = _bundle_copy(tmp_path / "2")
    path = root2 / "background.npy"
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)}
    )
    path.write_bytes(buf.getvalue() + b"\0" * 64)
    with pytest.raises(BundleError) as err:
        open_bundle(root2).background()
    assert "declares 4,000,000,000,000 bytes" in str(err.value)


# -- models that name code ------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_keras(tmp_path_factory):
    pytest.importorskip("tensorflow")
    from cxr_viewer.core.model.model_io import import_tensorflow

    import_tensorflow()
    import keras

    inp = keras.Input((8,))
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="d")(inp))
    path = tmp_path_factory.mktemp("base") / "base.keras"
    model.save(path)
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _with_dense_edited(files: dict[str, bytes], path: Path, edit) -> Path:
    config = json.loads(files["config.json"])
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "Dense":
            edit(layer)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, json.dumps(config) if name == "config.json" else data)
    return path


def _custom(layer):
    layer.update(class_name="MyLayer", module="my_pkg.layers", registered_name="Custom>MyLayer")


def _popen(layer):
    layer.update(class_name="Popen", module="subprocess", registered_name=None)
    layer["config"] = {"args": ["touch", "pwned"]}


def _get_file(layer):
    layer["config"]["activation"] = {
        "module": "keras.utils",
        "class_name": "function",
        "config": "get_file",
        "registered_name": "get_file",
    }


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (_custom, "the class 'MyLayer' from the module 'my_pkg.layers'"),
        (_popen, "the class 'Popen' from the module 'subprocess'"),
        (_get_file, "the function 'keras.utils.get_file'"),
    ],
    ids=["custom", "popen", "get_file"],
)
def test_models_naming_code_are_refused_for_that_reason(base_keras, tmp_path, edit, named):
    from cxr_viewer.core.model.model_io import load_keras_model

    path = _with_dense_edited(base_keras, tmp_path / "m.keras", edit)
    with pytest.raises(ModelLoadError) as err:
        load_keras_model(path)
    assert err.value.what == "Refusing to load m.keras"
    assert err.value.why.startswith(f"it references code that safe mode will not run: {named}.")
    assert "truncated" not in str(err.value)
    assert not (tmp_path / "pwned").exists()
