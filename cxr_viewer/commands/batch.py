"""Predict and explain many images headless (covid-cxr's predict.py, grown up).

``cxr-viewer batch PATH --model BUNDLE --explain gradcam,lime,shap --out DIR`` writes
``DIR/predictions.csv`` — one row per input file: file, content hash, status, error message,
probability per class (a multi-label model: per finding), predicted class (multi-label: the
findings at or above their thresholds, "; "-joined), the decision rule in words, explained
class, seconds per method, the trust figures
(deletion / insertion AUC, SHAP completeness gap) and the names of its output files — and, per
image and method, an overlay PNG (``overlay_<method>``) and the heat map as ``.npy``
(``map_<method>``, float32, the study's pixel size).

Every per-file failure (unreadable or damaged file, a FIFO or dangling link in the folder, a
failed explanation, an output that cannot be written) is a row and the batch goes on. An
output folder that holds files is refused unless ``--resume`` (files already predicted, with
the same path and content hash, are skipped) or ``--overwrite``. Ctrl+C finishes the current
file, writes the CSV and exits 130. Exit status 0 if at least one file was predicted, 2 if
none, 1 if the results could not be written.

``--engine ray [--workers N] [--address auto|HOST:PORT]`` runs :func:`process_file` on a pool
of Ray workers instead (:mod:`cxr_viewer.commands.batch_ray`); the output is the same.
"""

from __future__ import annotations

import argparse
import io
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from cxr_viewer.core.errors import CxrError
from cxr_viewer.core.io.atomic import is_disk_full, write_error

from .batch_output import (
    CSV_NAME,
    JOURNAL_NAME,
    OutDirLock,
    OutputWriter,
    content_hash,
    prepare_out_dir,
    printable,
)

if TYPE_CHECKING:
    from cxr_viewer.core.io.folder import Listing

    from .batch_dicom import DicomOutput

DEFAULT_METHODS = "gradcam"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cxr_viewer.core.io.formats import format_names

    parser.add_argument("path", help=f"an image file ({format_names()}) or a folder of them")
    parser.add_argument("--model", required=True, help="model bundle folder or .zip")
    parser.add_argument("--out", required=True, help="output folder (created if needed)")
    from cxr_viewer.core.explain.registry import ALIASES, EXPLAINERS

    names = ", ".join([*EXPLAINERS, *ALIASES])
    parser.add_argument(
        "--explain",
        default=DEFAULT_METHODS,
        help=f"comma-separated methods: {names}, or 'none' (default: {DEFAULT_METHODS})",
    )
    parser.add_argument(
        "--class",
        dest="target",
        default=None,
        help="class to explain (name or index; default: the predicted class)",
    )
    add_method_options(parser)
    seeded = [
        c.display.short_label for c in EXPLAINERS.values() if "seed" in c.settings_type.names()
    ]
    parser.add_argument(
        "--seed", type=int, default=0, help=f"seed for {' and '.join(seeded)} (default 0)"
    )
    parser.add_argument(
        "--no-trust", action="store_true", help="skip the deletion/insertion AUCs (faster)"
    )
    parser.add_argument("--opacity", type=float, default=0.5, help="overlay opacity (0..1)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    again = parser.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        action="store_true",
        help="continue an earlier run in --out: skip files already predicted (same path and "
        "content), redo the others",
    )
    again.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results of an earlier run in --out (deletes the files its "
        "predictions.csv lists)",
    )
    from cxr_viewer.commands import batch_dicom

    batch_dicom.add_arguments(parser)
    scale = parser.add_argument_group("scale-out")
    scale.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process, one file after another (default); ray: a pool of Ray "
        'workers, here or on a cluster (pip install -e ".[scale]")',
    )
    scale.add_argument(
        "--address",
        default=None,
        metavar="auto|HOST:PORT",
        help="--engine ray: the Ray cluster to join (default: start Ray on this machine)",
    )
    scale.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="--engine ray: worker processes, each loading the model once (default: one per "
        "GPU of the cluster, else one per CPU)",
    )


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """Per method, from its registry entry: ``--<method>-layer`` and ``--<method>-samples``."""
    from cxr_viewer.core.explain.registry import EXPLAINERS

    for name, cls in EXPLAINERS.items():
        if cls.uses_layer:
            parser.add_argument(
                f"--{name}-layer",
                default=None,
                help=f"{cls.display.short_label} layer (bundle default)",
            )
        if cls.samples is not None:
            parser.add_argument(
                f"--{name}-samples", type=int, default=None, help=cls.samples.cli_help
            )


def _methods(spec: str) -> list[str]:
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


def _settings(method: str, args: argparse.Namespace) -> dict[str, Any]:
    """The settings ``method`` gets from the command line (the options its registry entry
    declares: ``--seed``, ``--<method>-layer``, ``--<method>-samples``)."""
    from cxr_viewer.core.explain.registry import explainer_class

    cls = explainer_class(method)
    s: dict[str, Any] = {}
    if "seed" in cls.settings_type.names():
        s["seed"] = args.seed
    layer = getattr(args, f"{cls.name}_layer", None) if cls.uses_layer else None
    if layer:
        s["layer"] = layer
    samples = getattr(args, f"{cls.name}_samples", None) if cls.samples is not None else None
    if samples and cls.samples is not None:
        s[cls.samples.key] = samples
    return s


def _target(arg: str | None, class_names: tuple[str, ...]) -> int | None:
    """The class to explain for every file (``None``: each file's predicted class)."""
    if arg is None:
        return None
    if arg in class_names:
        return class_names.index(arg)
    if arg.isdigit() and int(arg) < len(class_names):
        return int(arg)
    raise CxrError(f"Unknown class '{arg}'", f"the model's classes are {', '.join(class_names)}.")


def _tag(method: str) -> str:
    return method.replace("+", "p")


def _write_map(path: Path, ctx: BatchContext, study, hm) -> None:
    buf = io.BytesIO()  # numpy's own file write reports a full disk without its errno
    np.save(buf, hm.values.astype(np.float32), allow_pickle=False)
    path.write_bytes(buf.getvalue())


def _write_overlay(path: Path, ctx: BatchContext, study, hm) -> None:
    from PIL import Image

    from cxr_viewer.core.explain.overlay import colorize, composite
    from cxr_viewer.core.io.display import display_image

    layer = colorize(hm.values, signed=hm.signed)
    rgb = composite(display_image(study), [(layer, ctx.args.opacity)])
    Image.fromarray(rgb).save(path, format="PNG")


class _Writer(Protocol):
    """An output writer, called as ``write(path, ctx=…, study=…, hm=…)``."""

    def __call__(self, path: Path, ctx: BatchContext, study: Any, hm: Any) -> None: ...


#: Output kinds written per file and method: column prefix → (file suffix, writer). Each
#: writer is called as ``write(path, ctx, study, heatmap)`` with the heat map resized to the
#: study; its file name is recorded in the column ``<prefix>_<method>``.
#: ``path`` is a temporary file that :meth:`OutputWriter.save` renames when it is complete.
OUTPUTS: dict[str, tuple[str, _Writer]] = {
    "overlay": (".png", _write_overlay),
    "map": (".npy", _write_map),
}


def _columns(class_names, methods: list[str], trust: bool) -> list[str]:
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
        cols += [f"{kind}_{_tag(m)}" for kind in OUTPUTS]
    if trust and methods:
        cols.append("most_faithful")
    if len(methods) > 1:
        cols += ["agreement", "agreement_pairs"]
    return cols


#: per method, with the trust figures: the log-odds figures (core.evaluate.trust.add_trust), the
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


@dataclass
class BatchContext:
    """What every file of a run shares: the arguments, the model and the output folder."""

    args: argparse.Namespace
    clf: Any
    methods: list[str]
    target: int | None
    root: Path
    writer: OutputWriter
    stop: threading.Event = field(default_factory=threading.Event)
    #: --dicom-out / --send (batch_dicom.DicomOutput), or None
    dicom: Any = None


def _describe_failure(exc: BaseException) -> str:
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


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix() if path != root else path.name
    except ValueError:
        return path.name


def process_file(ctx: BatchContext, path: Path, digest: str | None) -> dict[str, Any]:
    """Predict and explain one file; every failure becomes the row's status and error."""
    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.model.preprocess import study_to_input

    row: dict[str, Any] = {"file": printable(path), "sha256": digest or "", "status": "ok"}
    row["error"] = ""
    clf = ctx.clf
    try:
        if digest is None:
            content_hash(path)  # raises the OSError that tells why it cannot be read
        study = load_study(path)
        x = study_to_input(study, clf.spec)
        pred = clf.make_prediction(clf.predict_inputs(x[None])[0])
    except Exception as exc:  # one bad file never stops the batch
        row.update(status="error", error=_describe_failure(exc))
        return row
    row.update({f"p_{c}": round(float(p), 6) for c, p in pred.as_dict().items()})
    row["predicted_class"] = pred.predicted_class
    row["decision"] = pred.rule_text()
    target = pred.predicted_index if ctx.target is None else ctx.target
    row["explained_class"] = clf.class_names[target]
    # what the model-agnostic methods ran on (core.model.forward), e.g. "tf.function (CPU), batch 16"
    row["forward_path"] = clf.forward_path
    if not ctx.methods:
        return row
    suffixes = [f"_{_tag(m)}{OUTPUTS[k][0]}" for m in ctx.methods for k in OUTPUTS]
    try:
        stem = ctx.writer.unique_stem(_rel(path, ctx.root), suffixes)
    except CxrError as exc:
        row.update(status="partial", error=_describe_failure(exc))
        return row
    errors, maps = [], []
    model_maps: dict[str, Any] = {}
    for method in ctx.methods:
        reason = _not_applicable(clf, method)
        if reason:  # said per map; the other methods run
            row[f"{method}_status"] = f"not applicable: {reason}"
            continue
        try:
            maps.append(_explain_one(ctx, method, x, target, study, stem, row, model_maps))
        except Exception as exc:
            errors.append(f"{method}: {_describe_failure(exc)}")
    _add_comparison(ctx, row, model_maps)
    if ctx.dicom is not None and maps:
        try:
            ctx.dicom.handle(clf, study, pred, maps, row, stem)
        except Exception as exc:
            errors.append(f"dicom: {_describe_failure(exc)}")
    if errors:
        row.update(status="partial", error="; ".join(errors))
    return row


def _not_applicable(clf: Any, method: str) -> str | None:
    """Why ``method`` does not apply to the classifier's bundle (e.g. Grad-CAM on a model
    without feature maps), or None."""
    from cxr_viewer.core.explain.registry import method_unavailable

    bundle = getattr(clf, "bundle", None)
    return method_unavailable(method, bundle) if bundle is not None else None


def _add_comparison(ctx: BatchContext, row: dict[str, Any], model_maps: dict[str, Any]) -> None:
    """The row's ``most_faithful`` and ``agreement`` columns, from the maps explained."""
    from cxr_viewer.core.evaluate.agreement import agreement_summary, agreement_words, pairwise
    from cxr_viewer.core.evaluate.trust import most_faithful
    from cxr_viewer.core.explain.registry import explainer_class

    if not ctx.args.no_trust and ctx.methods:
        best = most_faithful({m: hm.trust for m, hm in model_maps.items()})
        row["most_faithful"] = best or ("none" if model_maps else "")
    if len(model_maps) > 1:
        names = list(model_maps)
        pairs = pairwise({m: hm.values for m, hm in model_maps.items()})
        labels = {m: explainer_class(m).display.short_label for m in names}
        row["agreement"] = agreement_words(pairs, names, labels)
        row["agreement_pairs"] = agreement_summary(pairs)


def _explain_one(
    ctx: BatchContext,
    method: str,
    x,
    target: int,
    study,
    stem: str,
    row,
    model_maps: dict[str, Any] | None = None,
):
    from cxr_viewer.core.evaluate.trust import explain_with_trust, faithfulness_label, verdicts
    from cxr_viewer.core.explain.registry import create_explainer, explainer_class

    args, clf = ctx.args, ctx.clf
    explainer = create_explainer(method, clf, _settings(method, args))
    hm = explain_with_trust(explainer, x, target, trust=not args.no_trust, seed=args.seed)
    if model_maps is not None and hm.status == "ok":  # a map with no signal is not compared
        model_maps[method] = hm
    row[f"seconds_{method}"] = round(hm.runtime_s, 3)
    row[f"{method}_status"] = hm.status_text  # "no signal: …" leaves the trust figures empty
    if not args.no_trust and hm.trust:
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
    tag = _tag(method)
    for kind, (suffix, write) in OUTPUTS.items():
        ctx.writer.save(
            row,
            f"{kind}_{tag}",
            f"{stem}_{tag}{suffix}",
            partial(write, ctx=ctx, study=study, hm=full),
        )
    return full


class _StopOnSigint:
    """While active, the first Ctrl+C (SIGINT) asks the loop to stop after the current file;
    a second one interrupts at once (KeyboardInterrupt)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        #: the SIGINT handler before ours (``signal.signal``'s answer: a function, SIG_DFL /
        #: SIG_IGN, or None when it was not installed from Python)
        self.previous: Callable[[int, FrameType | None], Any] | int | None = None

    def __enter__(self) -> _StopOnSigint:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _prepare_inputs(
    args: argparse.Namespace, out_dir: Path
) -> tuple[list[str], Listing, DicomOutput | None] | None:
    """(methods, input listing, DICOM output or None) with the output folder prepared (both engines).

    None, after saying so, when the input holds no study file. A ``--send`` node is checked
    here, before any model loads or worker starts.
    """
    from cxr_viewer.commands.batch_dicom import DicomOutput
    from cxr_viewer.core.io import format_names, scan_study_files

    methods = _methods(args.explain)
    listing = scan_study_files(args.path)
    if not listing.files and not listing.skipped:
        print(
            f"cxr-viewer batch: no {format_names()} files in {printable(args.path)}",
            file=sys.stderr,
        )
        return None
    prepare_out_dir(out_dir, resume=args.resume, overwrite=args.overwrite)
    return methods, listing, DicomOutput.from_args(args)


def _output_writer(args: argparse.Namespace, out_dir: Path, cols: list[str]) -> OutputWriter:
    """The CSV/journal writer of a run (both engines): ``--resume`` / ``--overwrite`` honoured."""
    return OutputWriter(
        out_dir,
        cols,
        resume=args.resume,
        overwrite=args.overwrite,
        output_prefixes=tuple(f"{kind}_" for kind in OUTPUTS),
    )


def run(args: argparse.Namespace) -> int:
    """The batch, either engine, with ``--out`` locked for the whole run (see
    :class:`~cxr_viewer.commands.batch_output.OutDirLock`): a second run into the same folder
    is refused with exit status 2 instead of deleting the first one's files and rows."""
    try:
        lock = OutDirLock.acquire(Path(args.out))
    except CxrError as exc:
        print(f"cxr-viewer batch: {_describe_failure(exc)}", file=sys.stderr)
        return 2
    with lock:
        if getattr(args, "engine", "local") == "ray":
            from .batch_ray import run_ray

            return run_ray(args)
        return _run_local(args)


def _run_local(args: argparse.Namespace) -> int:
    def say(msg: str) -> None:
        if not args.quiet:
            print(printable(msg), file=sys.stderr, flush=True)

    def fail(exc: BaseException, code: int = 2) -> int:
        print(f"cxr-viewer batch: {_describe_failure(exc)}", file=sys.stderr)
        return code

    out_dir = Path(args.out)
    try:
        if getattr(args, "address", None) or getattr(args, "workers", None):
            raise CxrError(
                "--address and --workers are options of the Ray engine",
                "this run uses the local engine (one process, one file after another).",
                "Add --engine ray, or leave them out.",
            )
        inputs = _prepare_inputs(args, out_dir)
        if inputs is None:
            return 2
        methods, listing, dicom = inputs
        from cxr_viewer.core.model.inference import load_classifier

        clf = load_classifier(args.model)
        target = _target(args.target, clf.class_names)
        cols = _columns(clf.class_names, methods, not args.no_trust)
        writer = _output_writer(args, out_dir, cols)
    except (CxrError, OSError) as exc:
        return fail(exc)
    except KeyboardInterrupt:
        print("cxr-viewer batch: interrupted before any file was processed", file=sys.stderr)
        return 130
    ctx = BatchContext(args, clf, methods, target, Path(args.path), writer, dicom=dicom)
    total = len(listing.files) + len(listing.skipped)
    n_ok = n_done = 0
    try:
        with _StopOnSigint(ctx.stop):
            for path, reason in listing.skipped:
                writer.add_row({"file": printable(path), "status": "skipped", "error": reason})
                say(f"[skipped] {path}: {reason}")
            for i, path in enumerate(listing.files, 1):
                if ctx.stop.is_set():
                    break
                try:
                    digest: str | None = content_hash(path)
                except OSError:
                    digest = None
                if writer.done(printable(path), digest):
                    n_ok += 1
                    n_done += 1
                    continue
                writer.release(printable(path))
                row = process_file(ctx, path, digest)
                writer.add_row(row)
                n_ok += row["status"] in ("ok", "partial")
                n_done += 1
                detail = row["error"] if row["status"] != "ok" else row["predicted_class"]
                say(f"[{i}/{len(listing.files)}] {path}: {row['status']} {detail}")
    except KeyboardInterrupt:
        ctx.stop.set()
    except OSError as exc:  # the journal itself cannot be written (disk full, ...)
        writer.abandon()
        return fail(write_error(exc.filename or out_dir / JOURNAL_NAME, exc), 1)
    try:
        csv_path = writer.close()
    except OSError as exc:
        return fail(write_error(out_dir / CSV_NAME, exc), 1)
    if ctx.stop.is_set():
        print(
            f"cxr-viewer batch: interrupted after {n_done} of {len(listing.files)} files; "
            f"results so far in {csv_path} (run again with --resume to continue)",
            file=sys.stderr,
        )
        return 130
    say(f"wrote {csv_path} ({n_ok} of {total} files predicted)")
    return 0 if n_ok else 2
