"""What both batch engines share: the run's typed configuration, the CSV columns and one file's
row (:func:`process_file`, which runs the core's analysis pipeline, :mod:`cxr_viewer.core.analysis`).

``cxr_viewer.commands.batch`` (the command and the local engine) and
``cxr_viewer.commands.batch_ray`` (the Ray engine) both import this module and never each other
at run time, except that ``batch.run`` hands a ``--engine ray`` run to ``batch_ray.run_ray``.
"""

from __future__ import annotations

import argparse
import io
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from cxr_viewer.core.errors import CxrError
from cxr_viewer.core.io.atomic import is_disk_full, write_error

from .batch_dicom import DicomOptions
from .batch_output import OutputWriter, content_hash, prepare_out_dir, printable

if TYPE_CHECKING:
    from cxr_viewer.core.analysis import ExplainerCache, ExplainRequest, MethodResult
    from cxr_viewer.core.io.folder import Listing

    from .batch_dicom import DicomOutput

DEFAULT_METHODS = "gradcam"


# ---------------------------------------------------------------- methods and their options
def parse_methods(spec: str) -> list[str]:
    """The methods of ``--explain`` (names or aliases, in order, without repeats)."""
    from cxr_viewer.core.explain.registry import ALIASES, EXPLAINERS

    if spec.strip().lower() in ("", "none"):
        return []
    names = [m.strip().lower() for m in spec.split(",") if m.strip()]
    known = {*EXPLAINERS, *ALIASES}
    bad = [m for m in names if m not in known]
    if bad:
        raise CxrError(
            f"Unknown explanation method(s): {', '.join(bad)}",
            f"choose from {', '.join(sorted(known))}.",
        )
    return list(dict.fromkeys(names))


def method_options(ns: argparse.Namespace) -> tuple[dict[str, str], dict[str, int]]:
    """(method → ``--<method>-layer``, method → ``--<method>-samples``) given on the command
    line (the options :func:`~cxr_viewer.commands.batch.add_method_options` declares)."""
    from cxr_viewer.core.explain.registry import EXPLAINERS

    layers: dict[str, str] = {}
    samples: dict[str, int] = {}
    for name, cls in EXPLAINERS.items():
        layer = getattr(ns, f"{name}_layer", None) if cls.uses_layer else None
        if layer:
            layers[name] = str(layer)
        n = getattr(ns, f"{name}_samples", None) if cls.samples is not None else None
        if n:
            samples[name] = int(n)
    return layers, samples


def method_settings(
    method: str, seed: int, layers: Mapping[str, str], samples: Mapping[str, int]
) -> dict[str, Any]:
    """The settings ``method`` gets from the command line (the options its registry entry
    declares: ``--seed``, ``--<method>-layer``, ``--<method>-samples``)."""
    from cxr_viewer.core.explain.registry import explainer_class

    cls = explainer_class(method)
    s: dict[str, Any] = {}
    if "seed" in cls.settings_type.names():
        s["seed"] = seed
    if cls.uses_layer and layers.get(cls.name):
        s["layer"] = layers[cls.name]
    if cls.samples is not None and samples.get(cls.name):
        s[cls.samples.key] = samples[cls.name]
    return s


def target_index(arg: str | None, class_names: tuple[str, ...]) -> int | None:
    """The class to explain for every file (``None``: each file's predicted class)."""
    if arg is None:
        return None
    if arg in class_names:
        return class_names.index(arg)
    if arg.isdigit() and int(arg) < len(class_names):
        return int(arg)
    raise CxrError(f"Unknown class '{arg}'", f"the model's classes are {', '.join(class_names)}.")


# ---------------------------------------------------------------- the run's configuration
@dataclass(frozen=True)
class BatchConfig:
    """Everything a batch run was asked to do, typed (built once from the command line by
    :meth:`from_namespace`; the Ray engine ships it to its workers)."""

    path: str
    model: str
    out: str
    explain: str = DEFAULT_METHODS
    #: ``--class``: the class to explain (name or index), None: each file's predicted class
    target: str | None = None
    seed: int = 0
    trust: bool = True
    opacity: float = 0.5
    quiet: bool = False
    resume: bool = False
    overwrite: bool = False
    engine: str = "local"
    address: str | None = None
    workers: int | None = None
    #: method → ``--<method>-layer`` / ``--<method>-samples``
    layers: Mapping[str, str] = field(default_factory=dict)
    samples: Mapping[str, int] = field(default_factory=dict)
    dicom: DicomOptions | None = None
    #: the runtime options (``--device`` …) a Ray worker applies before loading the model
    device: str | None = None
    gpu_memory: int | None = None
    verbose: bool = False
    mixed_precision: bool = False

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> BatchConfig:
        layers, samples = method_options(ns)
        return cls(
            path=str(ns.path),
            model=str(ns.model),
            out=str(ns.out),
            explain=str(getattr(ns, "explain", DEFAULT_METHODS)),
            target=getattr(ns, "target", None),
            seed=int(getattr(ns, "seed", 0)),
            trust=not getattr(ns, "no_trust", False),
            opacity=float(getattr(ns, "opacity", 0.5)),
            quiet=bool(getattr(ns, "quiet", False)),
            resume=bool(getattr(ns, "resume", False)),
            overwrite=bool(getattr(ns, "overwrite", False)),
            engine=str(getattr(ns, "engine", "local")),
            address=getattr(ns, "address", None),
            workers=getattr(ns, "workers", None),
            layers=layers,
            samples=samples,
            dicom=DicomOptions.from_namespace(ns),
            device=getattr(ns, "device", None),
            gpu_memory=getattr(ns, "gpu_memory", None),
            verbose=bool(getattr(ns, "verbose", False)),
            mixed_precision=bool(getattr(ns, "mixed_precision", False)),
        )

    def settings(self, method: str) -> dict[str, Any]:
        return method_settings(method, self.seed, self.layers, self.samples)

    def requests(self, methods: list[str], target: int | None) -> list[ExplainRequest]:
        """One analysis request per method (the trust figures seeded by ``--seed``)."""
        from cxr_viewer.core.analysis import ExplainRequest

        return [
            ExplainRequest(m, self.settings(m), target, trust=self.trust, seed=self.seed)
            for m in methods
        ]


# ---------------------------------------------------------------- outputs and columns
def tag(method: str) -> str:
    return method.replace("+", "p")


def _write_map(path: Path, ctx: BatchContext, study: Any, hm: Any) -> None:
    buf = io.BytesIO()  # numpy's own file write reports a full disk without its errno
    np.save(buf, hm.values.astype(np.float32), allow_pickle=False)
    path.write_bytes(buf.getvalue())


def _write_overlay(path: Path, ctx: BatchContext, study: Any, hm: Any) -> None:
    from PIL import Image

    from cxr_viewer.core.explain.overlay import colorize, composite
    from cxr_viewer.core.io.display import display_image

    layer = colorize(hm.values, signed=hm.signed)
    rgb = composite(display_image(study), [(layer, ctx.config.opacity)])
    Image.fromarray(rgb).save(path, format="PNG")


class Writer(Protocol):
    """An output writer, called as ``write(path, ctx=…, study=…, hm=…)``."""

    def __call__(self, path: Path, ctx: BatchContext, study: Any, hm: Any) -> None: ...


#: Output kinds written per file and method: column prefix → (file suffix, writer). Each
#: writer is called as ``write(path, ctx, study, heatmap)`` with the heat map resized to the
#: study; its file name is recorded in the column ``<prefix>_<method>``.
#: ``path`` is a temporary file that :meth:`OutputWriter.save` renames when it is complete.
OUTPUTS: dict[str, tuple[str, Writer]] = {
    "overlay": (".png", _write_overlay),
    "map": (".npy", _write_map),
}

#: per method, with the trust figures: the log-odds figures (core.trust.add_trust), the
#: faithfulness word and every verdict the viewer shows next to the map
TRUST_COLUMNS = (
    "logit_deletion_auc",
    "logit_insertion_auc",
    "margin",
    "margin_lo",
    "margin_hi",
    "faithfulness",
    "verdict",
)


def columns(class_names: tuple[str, ...], methods: list[str], trust: bool) -> list[str]:
    from cxr_viewer.core.explain.registry import explainer_class

    cols = ["file", "sha256", "status", "error"]
    cols += [f"p_{c}" for c in class_names]
    cols += ["predicted_class", "decision", "explained_class", "forward_path"]
    for m in methods:
        cols += [f"seconds_{m}", f"{m}_status"]
        if trust:
            cols += [f"{m}_deletion_auc", f"{m}_insertion_auc"]
            cols += [f"{m}_{f}" for f in TRUST_COLUMNS]
        cols += [f"{m}_{f}" for f in explainer_class(m).summary_fields]
        cols += [f"{kind}_{tag(m)}" for kind in OUTPUTS]
    if trust and methods:
        cols.append("most_faithful")
    if len(methods) > 1:
        cols += ["agreement", "agreement_pairs"]
    return cols


def output_suffixes(methods: list[str]) -> list[str]:
    """The suffixes of one file's outputs (``_<method><ext>`` per method and output kind)."""
    return [f"_{tag(m)}{OUTPUTS[k][0]}" for m in methods for k in OUTPUTS]


# ---------------------------------------------------------------- one file
class StemSource(Protocol):
    """The part of :class:`OutputWriter` :func:`process_file` uses."""

    def unique_stem(self, rel: str, suffixes: Any = ()) -> str: ...

    def save(self, row: dict[str, Any], column: str, name: str, write: Any) -> Path: ...


@dataclass
class BatchContext:
    """What every file of a run shares: the configuration, the model and the output folder."""

    config: BatchConfig
    clf: Any
    methods: list[str]
    target: int | None
    writer: StemSource
    stop: threading.Event = field(default_factory=threading.Event)
    #: --dicom-out / --send (batch_dicom.DicomOutput), or None
    dicom: DicomOutput | None = None
    #: the explainers of this run's model, built once (core.analysis)
    explainers: ExplainerCache | None = None

    @property
    def root(self) -> Path:
        return Path(self.config.path)

    def cache(self) -> ExplainerCache:
        from cxr_viewer.core.analysis import ExplainerCache

        if self.explainers is None:
            self.explainers = ExplainerCache(self.clf)
        return self.explainers


def describe_failure(exc: BaseException) -> str:
    """One line for a row's error column: the project's own message, else type + message."""
    if isinstance(exc, CxrError):
        return printable(exc)
    if isinstance(exc, MemoryError):
        return "there is not enough memory to process this file"
    if isinstance(exc, OSError) and exc.filename and is_disk_full(exc):
        return printable(write_error(exc.filename, exc))  # one line: file, free space, what to do
    if isinstance(exc, OSError):
        where = f" {printable(exc.filename)}" if exc.filename else ""
        return f"cannot read or write{where}: {exc.strerror or exc}"
    return f"unexpected {type(exc).__name__}: {printable(exc)}"


def rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix() if path != root else path.name
    except ValueError:
        return path.name


def process_file(ctx: BatchContext, path: Path, digest: str | None) -> dict[str, Any]:
    """Predict and explain one file; every failure becomes the row's status and error."""
    from cxr_viewer.core.analysis import explain, prepare
    from cxr_viewer.core.io import load_study

    row: dict[str, Any] = {"file": printable(path), "sha256": digest or "", "status": "ok"}
    row["error"] = ""
    clf = ctx.clf
    try:
        if digest is None:
            content_hash(path)  # raises the OSError that tells why it cannot be read
        analysis = prepare(load_study(path), clf)
    except Exception as exc:  # one bad file never stops the batch
        row.update(status="error", error=describe_failure(exc))
        return row
    pred = analysis.prediction
    assert pred is not None
    row.update({f"p_{c}": round(float(p), 6) for c, p in pred.as_dict().items()})
    row["predicted_class"] = pred.predicted_class
    row["decision"] = pred.rule_text()
    target = pred.predicted_index if ctx.target is None else ctx.target
    row["explained_class"] = clf.class_names[target]
    # what the model-agnostic methods ran on (core.forward), e.g. "tf.function (CPU), batch 16"
    row["forward_path"] = clf.forward_path
    if not ctx.methods:
        return row
    try:
        stem = ctx.writer.unique_stem(rel(path, ctx.root), output_suffixes(ctx.methods))
    except CxrError as exc:
        row.update(status="partial", error=describe_failure(exc))
        return row
    errors: list[str] = []
    maps: list[Any] = []

    def record(result: MethodResult) -> None:
        if result.not_applicable:  # said per map; the other methods run
            row[f"{result.method}_status"] = f"not applicable: {result.not_applicable}"
            return
        try:
            if result.error is not None:
                raise result.error
            assert result.heatmap is not None
            maps.append(_record_map(ctx, result.method, result.heatmap, analysis.study, stem, row))
        except Exception as exc:
            errors.append(f"{result.method}: {describe_failure(exc)}")

    explain(
        analysis,
        ctx.config.requests(ctx.methods, ctx.target),
        explainers=ctx.cache(),
        on_result=record,
    )
    _add_comparison(ctx, row, analysis)
    if ctx.dicom is not None and maps:
        try:
            ctx.dicom.handle(analysis, maps, row, stem)
        except Exception as exc:
            errors.append(f"dicom: {describe_failure(exc)}")
    if errors:
        row.update(status="partial", error="; ".join(errors))
    return row


def _add_comparison(ctx: BatchContext, row: dict[str, Any], analysis: Any) -> None:
    """The row's ``most_faithful`` and ``agreement`` columns, from the maps explained."""
    from cxr_viewer.core.explain.registry import explainer_class

    with_signal = analysis.heatmaps(with_signal=True)
    if ctx.config.trust and ctx.methods:
        row["most_faithful"] = analysis.most_faithful() or ("none" if with_signal else "")
    labels = {m: explainer_class(m).display.short_label for m in with_signal}
    agreement = analysis.agreement(labels)
    if agreement is not None:
        row["agreement"], row["agreement_pairs"] = agreement


def _record_map(
    ctx: BatchContext, method: str, hm: Any, study: Any, stem: str, row: dict[str, Any]
) -> Any:
    """One map's columns (seconds, status, trust figures, method summary) and output files;
    returns the map at the study's size."""
    from cxr_viewer.core.evaluate.trust import faithfulness_label, verdicts
    from cxr_viewer.core.explain.registry import explainer_class

    row[f"seconds_{method}"] = round(hm.runtime_s, 3)
    row[f"{method}_status"] = hm.status_text  # "no signal: …" leaves the trust figures empty
    if ctx.config.trust and hm.trust:
        row[f"{method}_deletion_auc"] = round(hm.trust["deletion_auc"], 4)
        row[f"{method}_insertion_auc"] = round(hm.trust["insertion_auc"], 4)
        for f in TRUST_COLUMNS[:5]:
            row[f"{method}_{f}"] = round(float(hm.trust.get(f, float("nan"))), 4)
        row[f"{method}_faithfulness"] = faithfulness_label(hm.trust)
        row[f"{method}_verdict"] = "; ".join(
            v.text for v in verdicts(method, hm.trust, hm.settings)
        )
    for f, value in explainer_class(method).summary(hm).items():
        row[f"{method}_{f}"] = value
    full = hm.resized(study.rows, study.columns)
    t = tag(method)
    for kind, (suffix, write) in OUTPUTS.items():
        ctx.writer.save(
            row, f"{kind}_{t}", f"{stem}_{t}{suffix}", partial(write, ctx=ctx, study=study, hm=full)
        )
    return full


# ---------------------------------------------------------------- the run's set-up (both engines)
def prepare_inputs(
    config: BatchConfig, out_dir: Path
) -> tuple[list[str], Listing, DicomOutput | None] | None:
    """(methods, input listing, DICOM output or None) with the output folder prepared.

    None, after saying so, when the input holds no study file. A ``--send`` node is checked
    here, before any model loads or worker starts.
    """
    import sys

    from cxr_viewer.core.io import format_names, scan_study_files

    from .batch_dicom import DicomOutput

    methods = parse_methods(config.explain)
    listing = scan_study_files(config.path)
    if not listing.files and not listing.skipped:
        print(
            f"cxr-viewer batch: no {format_names()} files in {printable(config.path)}",
            file=sys.stderr,
        )
        return None
    prepare_out_dir(out_dir, resume=config.resume, overwrite=config.overwrite)
    return methods, listing, DicomOutput.from_options(config.dicom)


def output_writer(config: BatchConfig, out_dir: Path, cols: list[str]) -> OutputWriter:
    """The CSV/journal writer of a run: ``--resume`` / ``--overwrite`` honoured."""
    return OutputWriter(
        out_dir,
        cols,
        resume=config.resume,
        overwrite=config.overwrite,
        output_prefixes=tuple(f"{kind}_" for kind in OUTPUTS),
    )
