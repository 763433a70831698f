"""Bundle metadata schema and zip caps: bad metadata and zip bombs give one clear BundleError.

No TensorFlow here: ``open_bundle`` validates the metadata without loading the model, so the
bundles are a metadata.json next to a placeholder model file. The zip bombs are built
streaming (zeros deflate ~1000:1), so the test never holds them in memory.
"""

from __future__ import annotations

import copy
import json
import os
import random
import zipfile
from pathlib import Path

import pytest

from cxr_viewer.core.errors import BundleError, ModelLoadError
from cxr_viewer.core.io import archive
from cxr_viewer.core.model.bundle import open_bundle, sha256_file
from cxr_viewer.core.model.bundle_schema import SCHEMA, Key, metadata_problems, register_key, string

MiB = 2**20


def _bundle(root: Path, **changes) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.keras").write_bytes(b"placeholder model")
    meta = {
        "schema_version": 1,
        "name": "tiny",
        "version": "1",
        "class_names": ["neg", "pos"],
        "input": {"height": 32, "width": 32, "channels": 3, "preprocessing": "unit"},
        "output": {"activation": "softmax", "classes": 2},
        "model_file": "model.keras",
        "model_sha256": sha256_file(root / "model.keras"),
        "gradcam_layer": "conv",
        "shap_layers": ["conv"],
        "threshold": 0.5,
        "positive_class": "pos",
        "metrics": {"test": {"auc": 0.9}},  # a key the schema does not know: allowed
    }
    for key, value in changes.items():
        if value is _DELETE:
            meta.pop(key, None)
        else:
            meta[key] = value
    (root / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    return root


_DELETE = object()


def test_a_valid_bundle_with_unknown_keys_opens(tmp_path):
    b = open_bundle(_bundle(tmp_path / "b"))
    assert b.class_names == ["neg", "pos"] and b.threshold == 0.5
    assert b.metadata["metrics"]["test"]["auc"] == 0.9


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("schema_version", "abc", "'schema_version' must be an integer"),
        ("schema_version", None, "'schema_version' must be an integer"),
        ("class_names", 5, "'class_names' must be a list"),
        ("class_names", "AB", "'class_names' must be a list"),
        ("class_names", ["a", "a"], "must not repeat"),
        ("class_names", ["only"], "2 to"),
        ("model_file", 123, "'model_file' must be a file name"),
        ("model_file", "/etc/passwd", "absolute path"),
        ("model_file", "../outside.keras", "inside the bundle folder"),
        ("threshold", "high", "'threshold' must be a number"),
        ("threshold", 2.0, "between 0.0 and 1.0"),
        ("threshold", True, "must be a number"),
        ("positive_class", "maybe", "not one of the class names"),
        ("input", {"height": 32}, "'width' is missing"),
        ("input", {"height": "32", "width": 32}, "'height' must be an integer"),
        ("input", {"height": 32, "width": 32, "channels": 2}, "'channels' must be one of"),
        ("model_sha256", "abc", "not of the expected form"),
        ("shap_layers", "conv", "must be a list"),
        ("output", {"classes": 3}, "says 3 classes"),
        ("name", _DELETE, "'name' is missing"),
    ],
)
def test_each_bad_key_gets_its_own_clear_error(tmp_path, key, value, expected):
    with pytest.raises(BundleError, match="invalid") as info:
        open_bundle(_bundle(tmp_path / "b", **{key: value}))
    assert expected in str(info.value)
    assert len(info.value.problems) == 1, info.value.problems


def test_every_problem_is_listed_at_once(tmp_path):
    root = _bundle(tmp_path / "b", threshold="high", class_names="AB", model_file=123)
    with pytest.raises(BundleError, match=r"\(3 problems\)") as info:
        open_bundle(root)
    assert [p.split()[0] for p in info.value.problems] == [
        "'class_names'",
        "'model_file'",
        "'threshold'",
    ]


def test_newer_schema_asks_for_an_update(tmp_path):
    with pytest.raises(BundleError, match="newer than this CXR Lens"):
        open_bundle(_bundle(tmp_path / "b", schema_version=7, class_names=5))


def test_symlinked_model_leading_out_of_the_bundle_is_refused(tmp_path):
    outside = tmp_path / "elsewhere.keras"
    outside.write_bytes(b"someone else's model")
    root = _bundle(tmp_path / "b", model_file="linked.keras")
    os.symlink(outside, root / "linked.keras")
    with pytest.raises(BundleError, match="symbolic link that leads out"):
        open_bundle(root)
    inside = _bundle(tmp_path / "c", model_file="linked.keras")
    os.symlink(inside / "model.keras", inside / "linked.keras")  # a link inside is fine
    assert open_bundle(inside).model_path.name == "linked.keras"


def test_deeply_nested_or_huge_metadata_is_refused(tmp_path):
    root = _bundle(tmp_path / "b")
    (root / "metadata.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BundleError, match="nested too deeply|JSON object"):
        open_bundle(root)
    deep: dict = {}
    node = deep
    for _ in range(60):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(BundleError, match="nested more than"):
        open_bundle(_bundle(tmp_path / "c", extra=deep))
    (root / "metadata.json").write_bytes(b" " * (5 * MiB))
    with pytest.raises(BundleError, match="at most"):
        open_bundle(root)


def test_extension_point_validates_a_new_key(tmp_path, monkeypatch):
    monkeypatch.setitem(SCHEMA, "model_card", SCHEMA["name"])  # restored after the test
    register_key("model_card", Key(string(min_len=1, max_len=50), False, "a model card"))
    assert not metadata_problems({"model_card": "ok"}, tmp_path)[-1:] == ["'model_card'"]
    with pytest.raises(BundleError, match="'model_card' must be a string"):
        open_bundle(_bundle(tmp_path / "b", model_card=7))


_VALUES = [
    None,
    True,
    0,
    -1,
    2,
    10**30,
    0.5,
    2.0,
    float("nan"),
    "",
    "abc",
    "../x",
    "/abs/path",
    "a\\b",
    [],
    ["a"],
    ["a", "b"],
    [1, 2],
    {},
    {"height": 8, "width": 8},
    {"height": -1, "width": 1e9},
    "x" * 5000,
]


def test_metadata_fuzz_gives_a_bundle_or_a_bundle_error(tmp_path):
    rng = random.Random(1234)
    base = json.loads((_bundle(tmp_path / "seed") / "metadata.json").read_text())
    keys = sorted(base) + ["background_file", "library_versions", "unknown_key"]
    opened = refused = 0
    for i in range(300):
        meta = copy.deepcopy(base)
        for _ in range(rng.randint(1, 3)):
            key = rng.choice(keys)
            if rng.random() < 0.15:
                meta.pop(key, None)
            else:
                meta[key] = copy.deepcopy(rng.choice(_VALUES))
        root = tmp_path / f"f{i}"
        root.mkdir()
        (root / "model.keras").write_bytes(b"placeholder model")
        (root / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
        try:
            b = open_bundle(root)
        except BundleError as exc:
            assert exc.what and exc.why
            refused += 1
            continue
        opened += 1
        assert len(b.class_names) >= 2 and all(isinstance(c, str) for c in b.class_names)
        assert b.threshold is None or 0.0 <= b.threshold <= 1.0
        assert b.model_path.resolve().is_relative_to(root.resolve())
        assert b.input_spec.height >= 8
    assert opened > 10 and refused > 100  # both branches exercised


def _zip_with_zeros(path: Path, name: str, size: int, extra: dict[str, bytes] | None = None):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for other, data in (extra or {}).items():
            zf.writestr(other, data)
        with zf.open(name, "w", force_zip64=True) as out:
            block = b"\x00" * MiB
            for _ in range(size // MiB):
                out.write(block)


def test_bundle_zip_bomb_is_refused_before_extraction(tmp_path, monkeypatch):
    src = _bundle(tmp_path / "b")
    bomb = tmp_path / "bomb.zip"
    extra = {f"b/{p.name}": p.read_bytes() for p in src.iterdir()}
    _zip_with_zeros(bomb, "b/padding.bin", 64 * MiB, extra)
    assert bomb.stat().st_size < MiB
    made: list[str] = []
    real_mkdtemp = __import__("tempfile").mkdtemp
    monkeypatch.setattr(
        "tempfile.mkdtemp", lambda *a, **k: made.append(real_mkdtemp(*a, **k)) or made[-1]
    )
    with pytest.raises(BundleError, match="compressed .*:1") as info:
        open_bundle(bomb)
    assert "zip bomb" in str(info.value)
    assert made and not Path(made[0]).exists()  # the temporary folder is cleaned up
    # the same zip without the padding opens
    ok = tmp_path / "ok.zip"
    with zipfile.ZipFile(ok, "w") as zf:
        for name, data in extra.items():
            zf.writestr(name, data)
    assert open_bundle(ok).class_names == ["neg", "pos"]


def test_total_and_per_entry_caps_and_lying_sizes(tmp_path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a.bin", os.urandom(300_000))
        zf.writestr("b.bin", os.urandom(300_000))
    dest = tmp_path / "out"
    dest.mkdir()
    tight = archive.ZipLimits(max_total=500_000, max_entry=400_000)
    with pytest.raises(archive.ArchiveError, match="in total"):
        archive.extract_zip(path, dest, tight)
    with pytest.raises(archive.ArchiveError, match="'a.bin' inflates to"):
        archive.extract_zip(path, dest, archive.ZipLimits(max_total=10**9, max_entry=200_000))
    assert not list(dest.iterdir())  # refused before anything was written
    # an entry whose central directory understates its size is stopped while streaming
    data = bytearray(path.read_bytes())
    cd = data.rindex(b"PK\x01\x02", 0, data.rindex(b"PK\x01\x02"))  # first entry's record
    data[cd + 24 : cd + 28] = (1000).to_bytes(4, "little")  # its uncompressed size
    lying = tmp_path / "lying.zip"
    lying.write_bytes(bytes(data))
    with pytest.raises((archive.ArchiveError, zipfile.BadZipFile)):
        archive.extract_zip(lying, tmp_path / "out2", archive.BUNDLE_LIMITS)
    assert not (tmp_path / "out2" / "a.bin").exists() or (
        (tmp_path / "out2" / "a.bin").stat().st_size <= 1000
    )


def test_zip_entries_leaving_the_folder_or_symlinks_are_refused(tmp_path):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("../evil.txt", b"x")
    with pytest.raises(archive.ArchiveError, match="outside"):
        archive.extract_zip(path, tmp_path / "o", archive.BUNDLE_LIMITS)
    link = zipfile.ZipInfo("link")
    link.external_attr = 0o120777 << 16
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(archive.ArchiveError, match="symbolic link"):
        archive.extract_zip(path, tmp_path / "o", archive.BUNDLE_LIMITS)


def test_keras_file_whose_config_inflates_too_far_is_refused_before_keras(tmp_path):
    from cxr_viewer.core.model.model_io import load_keras_model

    path = tmp_path / "bomb.keras"
    _zip_with_zeros(path, "config.json", 65 * MiB, {"metadata.json": b"{}"})
    with pytest.raises(ModelLoadError, match="config.json' inflates to 65 MiB"):
        load_keras_model(path)
