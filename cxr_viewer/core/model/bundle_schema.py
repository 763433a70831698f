"""The schema of a bundle's ``metadata.json``: one place that says what each known key may hold.

:data:`SCHEMA` maps each known key to a :class:`Key` (required or not, and a check that
returns the problems of a value). :func:`metadata_problems` returns one plain sentence per
problem; :func:`validate_metadata` raises a :class:`~cxr_viewer.core.errors.BundleError`
listing them all. Unknown keys are allowed (a newer trainer may add some); a known key with
the wrong type or range is refused, as is a file path that leaves the bundle folder
(absolute, ``..``, or a symbolic link pointing out).

To describe a new key (an output-head description, a model card, ...), call
:func:`register_key` next to the code that writes it, or add it to :data:`SCHEMA` here; the
checks below (:func:`string`, :func:`integer`, :func:`number`, :func:`list_of`,
:func:`mapping`, :func:`bundle_path`, ...) compose.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxr_viewer.core.errors import BundleError

#: The newest schema this version reads. 1: softmax heads only. 2 adds ``output.kind``
#: (softmax / binary / multilabel), ``output.units``, ``output.activation`` (``linear`` =
#: logits, ``output.link`` turns them into probabilities), per-finding ``thresholds``,
#: ``near_threshold_band`` and per-channel ``input.value_range`` (caffe / torch conventions).
#: A softmax bundle is still written as schema 1, so older viewers open it; schema-1 bundles
#: open as softmax heads (:mod:`cxr_viewer.core.model.heads`).
SCHEMA_VERSION = 2
#: Largest metadata.json read (bytes) and deepest nesting accepted.
MAX_METADATA_BYTES = 4 * 2**20
MAX_DEPTH = 32

#: A check gets the value and the bundle folder and returns the problems ("" means none).
Check = Callable[[Any, Path], list[str]]


@dataclass(frozen=True)
class Key:
    """One known key of ``metadata.json``."""

    check: Check
    required: bool = False
    description: str = ""


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        type(value), "a list" if isinstance(value, list) else "an object"
    )


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


# -- composable checks -------------------------------------------------------------------------


def string(*, min_len: int = 0, max_len: int = 10_000, pattern: str | None = None) -> Check:
    def check(value: Any, root: Path) -> list[str]:
        if not isinstance(value, str):
            return [f"must be a string, got {_type_name(value)} {_shown(value)}"]
        if not min_len <= len(value) <= max_len:
            return [f"must have {min_len} to {max_len} characters, got {len(value)}"]
        if pattern and not re.fullmatch(pattern, value):
            return [f"{_shown(value)} is not of the expected form"]
        return []

    return check


def integer(lo: int | None = None, hi: int | None = None) -> Check:
    def check(value: Any, root: Path) -> list[str]:
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"must be an integer, got {_type_name(value)} {_shown(value)}"]
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            return [f"must be between {lo} and {hi}, got {value}"]
        return []

    return check


def number(lo: float | None = None, hi: float | None = None) -> Check:
    def check(value: Any, root: Path) -> list[str]:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return [f"must be a number, got {_type_name(value)} {_shown(value)}"]
        if not math.isfinite(value):
            return [f"must be finite, got {value}"]
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            return [f"must be between {lo} and {hi}, got {value}"]
        return []

    return check


def one_of(*choices: Any) -> Check:
    def check(value: Any, root: Path) -> list[str]:
        if isinstance(value, bool) or value not in choices:
            return [f"must be one of {', '.join(map(repr, choices))}, got {_shown(value)}"]
        return []

    return check


def one_of_list(choices: list[str]) -> Check:
    """Like :func:`one_of`, with the choices read when checking (a list filled by a registry)."""

    def check(value: Any, root: Path) -> list[str]:
        return one_of(*choices)(value, root)

    return check


def nullable(inner: Check) -> Check:
    def check(value: Any, root: Path) -> list[str]:
        return [] if value is None else inner(value, root)

    return check


def any_of(*checks: Check) -> Check:
    def check(value: Any, root: Path) -> list[str]:
        results = [c(value, root) for c in checks]
        return [] if any(not r for r in results) else results[0]

    return check


def list_of(
    item: Check, *, min_len: int = 0, max_len: int = 100_000, unique: bool = False
) -> Check:
    def check(value: Any, root: Path) -> list[str]:
        if not isinstance(value, list):
            return [f"must be a list, got {_type_name(value)} {_shown(value)}"]
        if not min_len <= len(value) <= max_len:
            return [f"must have {min_len} to {max_len} entries, got {len(value)}"]
        out = [f"entry {i}: {p}" for i, v in enumerate(value) for p in item(v, root)]
        if unique and not out and len({repr(v) for v in value}) != len(value):
            out.append("must not repeat an entry")
        return out

    return check


def mapping(fields: dict[str, Key] | None = None, values: Check | None = None) -> Check:
    """An object; ``fields`` are checked (required ones must be there), others allowed."""

    def check(value: Any, root: Path) -> list[str]:
        if not isinstance(value, dict):
            return [f"must be an object, got {_type_name(value)} {_shown(value)}"]
        out = []
        for key, spec in (fields or {}).items():
            if key not in value:
                if spec.required:
                    out.append(f"'{key}' is missing")
                continue
            out += [f"'{key}' {p}" for p in spec.check(value[key], root)]
        if values is not None:
            out += [f"'{k}' {p}" for k, v in value.items() for p in values(v, root)]
        return out

    return check


def bundle_path(value: Any, root: Path) -> list[str]:
    """A relative path to a file inside the bundle folder (no ``..``, no link leading out)."""
    if not isinstance(value, str) or not value:
        return [f"must be a file name inside the bundle, got {_type_name(value)} {_shown(value)}"]
    if "\x00" in value or "\\" in value:
        return [f"{_shown(value)} is not a valid file name"]
    rel = Path(value)
    if rel.is_absolute() or re.match(r"^[A-Za-z]:", value):
        return [f"must be relative to the bundle folder, got the absolute path {_shown(value)}"]
    if ".." in rel.parts:
        return [f"must stay inside the bundle folder, got {_shown(value)}"]
    try:
        base = root.resolve()
        target = (root / rel).resolve()
        if not target.is_relative_to(base):
            return [f"{_shown(value)} is a symbolic link that leads out of the bundle folder"]
        if target.exists() and not target.is_file():
            return [f"{_shown(value)} is not a file"]
    except (OSError, RuntimeError) as exc:  # a name too long, a symbolic link loop, ...
        why = getattr(exc, "strerror", None) or exc
        return [f"{_shown(value)} cannot be resolved ({why})"]
    return []


def _class_names(value: Any, root: Path) -> list[str]:
    return list_of(string(min_len=1, max_len=200), min_len=2, max_len=10_000, unique=True)(
        value, root
    )


_INPUT = mapping(
    {
        "height": Key(integer(8, 8192), required=True),
        "width": Key(integer(8, 8192), required=True),
        "channels": Key(one_of(1, 3)),
        "preprocessing": Key(string(min_len=1, max_len=100)),
        # [low, high], each a number or one number per channel (caffe / torch conventions)
        "value_range": Key(
            list_of(any_of(number(), list_of(number(), min_len=1, max_len=3)), min_len=2, max_len=2)
        ),
        # the training pipeline's resize and linear intensity step (core/model/preprocess.py)
        "interpolation": Key(one_of("auto", "nearest", "bilinear", "area", "cubic")),
        "intensity": Key(
            mapping(
                {
                    "scale": Key(number(1e-6, 1e6)),
                    "offset": Key(number(-1e6, 1e6)),
                    "stage": Key(one_of("pixels", "unit")),
                }
            )
        ),
    }
)

#: The head kinds ``output.kind`` may name: :func:`cxr_viewer.core.model.heads.register_head` adds
#: each kind it registers (the built-in three are listed so the schema checks them even where
#: ``heads`` was never imported).
HEAD_KIND_NAMES: list[str] = ["softmax", "binary", "multilabel"]

#: Every known key of metadata.json (schema version 1).
SCHEMA: dict[str, Key] = {
    "schema_version": Key(integer(1), True, "format version of metadata.json"),
    "name": Key(string(min_len=1, max_len=500), True, "the model's name"),
    "version": Key(any_of(string(max_len=100), integer(0), number(0)), False, "model version"),
    "class_names": Key(_class_names, True, "one distinct name per model output"),
    "input": Key(_INPUT, True, "input size, channels and preprocessing"),
    "output": Key(
        mapping(
            {
                "activation": Key(string(max_len=100)),
                "classes": Key(integer(1, 10_000)),
                "kind": Key(one_of_list(HEAD_KIND_NAMES)),
                "units": Key(integer(1, 10_000)),
                "link": Key(one_of("identity", "softmax", "sigmoid")),
            }
        ),
        False,
        "output head: kind, units, final activation, link, class count",
    ),
    "thresholds": Key(
        mapping(values=number(0.0, 1.0)), False, "multi-label: finding → decision threshold"
    ),
    "near_threshold_band": Key(
        number(0.0, 0.5), False, "p this close to its threshold is flagged near threshold"
    ),
    "model_file": Key(bundle_path, True, "the Keras model, relative to the bundle"),
    "model_sha256": Key(string(pattern=r"[0-9a-fA-F]{64}"), True, "SHA-256 of the model file"),
    "gradcam_layer": Key(nullable(string(min_len=1, max_len=500)), False, "Grad-CAM layer"),
    "shap_layers": Key(list_of(string(min_len=1, max_len=500), max_len=1000), False, "SHAP"),
    "threshold": Key(nullable(number(0.0, 1.0)), False, "decision threshold on p(positive)"),
    "positive_class": Key(nullable(string(min_len=1, max_len=200)), False, "the positive class"),
    "intended_use": Key(string(max_len=10_000), False, "what the model is for"),
    "description": Key(string(max_len=100_000), False, "free text"),
    "library_versions": Key(mapping(values=string(max_len=200)), False, "library versions"),
    "background_file": Key(nullable(bundle_path), False, "SHAP background set (.npy)"),
    "background_count": Key(integer(0, 1_000_000), False, "images in the background set"),
    "model_card": Key(mapping(), False, "the model card shown in the viewer (an object)"),
}


def register_key(name: str, key: Key) -> None:
    """Add (or replace) the description of a metadata key — the one extension point."""
    SCHEMA[name] = key


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value, counted iteratively (stops past ``limit``)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, d + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, d + 1) for v in item)
    return deepest


def metadata_problems(meta: Any, root: Path) -> list[str]:
    """Every problem of ``meta`` (the parsed metadata.json of the bundle in ``root``)."""
    if not isinstance(meta, dict):
        return [f"metadata.json must hold a JSON object, got {_type_name(meta)}"]
    if _depth(meta, MAX_DEPTH) > MAX_DEPTH:
        return [f"metadata.json is nested more than {MAX_DEPTH} levels deep"]
    problems = []
    for key, spec in SCHEMA.items():
        if key not in meta:
            if spec.required:
                problems.append(f"'{key}' is missing ({spec.description})")
            continue
        problems += [f"'{key}' {p}" for p in spec.check(meta[key], root)]
    names = meta.get("class_names")
    if any(p.startswith("'class_names'") for p in problems):
        return problems  # the checks against the class names below would only repeat it
    positive = meta.get("positive_class")
    if isinstance(names, list) and isinstance(positive, str) and positive not in names:
        problems.append(f"'positive_class' {positive!r} is not one of the class names")
    output = meta.get("output")
    if isinstance(output, dict) and isinstance(names, list):
        n = output.get("classes")
        if isinstance(n, int) and not isinstance(n, bool) and n != len(names):
            problems.append(f"'output' says {n} classes but 'class_names' has {len(names)}")
    return problems


def section(meta: dict[str, Any], key: str) -> dict[str, Any]:
    """The JSON object under ``key``; an empty one when it is absent or not an object."""
    value = meta.get(key)
    return value if isinstance(value, dict) else {}


def validate_metadata(meta: Any, root: Path, source: str = "metadata.json") -> dict[str, Any]:
    """``meta`` if it follows the schema, else a :class:`BundleError` naming every problem.

    The error's ``problems`` attribute holds the list, one sentence per problem.
    """
    version = meta.get("schema_version") if isinstance(meta, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise BundleError(
            "The bundle is newer than this CXR Lens",
            f"schema version {version}, this version reads up to {SCHEMA_VERSION}.",
            "Update CXR Lens.",
        )
    problems = metadata_problems(meta, root)
    if problems:
        listed = "; ".join(problems) if len(problems) <= 12 else "; ".join(problems[:12]) + "; …"
        error = BundleError(
            f"The bundle's {source} is invalid ({len(problems)} problem"
            f"{'s' if len(problems) != 1 else ''})",
            listed + ".",
            "Re-export the bundle with `cxr-train` (or fix these keys by hand).",
            problems=problems,
        )
        raise error
    valid: dict[str, Any] = meta
    return valid
