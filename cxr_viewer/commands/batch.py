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
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from cxr_viewer.core.errors import CxrError
from cxr_viewer.core.io.atomic import write_error

from .batch_core import (
    DEFAULT_METHODS,
    BatchConfig,
    BatchContext,
    columns,
    describe_failure,
    output_writer,
    prepare_inputs,
    process_file,
    target_index,
)
from .batch_output import CSV_NAME, JOURNAL_NAME, OutDirLock, OutputWriter, content_hash, printable

if TYPE_CHECKING:
    from cxr_viewer.core.io.folder import Listing

__all__ = ["BatchConfig", "BatchContext", "add_arguments", "process_file", "run"]


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


def run(args: argparse.Namespace) -> int:
    """The batch, either engine, with ``--out`` locked for the whole run (see
    :class:`~cxr_viewer.commands.batch_output.OutDirLock`): a second run into the same folder
    is refused with exit status 2 instead of deleting the first one's files and rows."""
    config = BatchConfig.from_namespace(args)
    try:
        lock = OutDirLock.acquire(Path(config.out))
    except CxrError as exc:
        print(f"cxr-viewer batch: {describe_failure(exc)}", file=sys.stderr)
        return 2
    with lock:
        if config.engine == "ray":
            from .batch_ray import run_ray

            return run_ray(config)
        return run_local(config)


def _fail(exc: BaseException, code: int = 2) -> int:
    print(f"cxr-viewer batch: {describe_failure(exc)}", file=sys.stderr)
    return code


def _start_local(config: BatchConfig) -> tuple[BatchContext, Listing] | int:
    """The run's context and inputs, or the exit status when it cannot start."""
    out_dir = Path(config.out)
    try:
        if config.address or config.workers:
            raise CxrError(
                "--address and --workers are options of the Ray engine",
                "this run uses the local engine (one process, one file after another).",
                "Add --engine ray, or leave them out.",
            )
        inputs = prepare_inputs(config, out_dir)
        if inputs is None:
            return 2
        methods, listing, dicom = inputs
        from cxr_viewer.core.model.inference import load_classifier

        clf = load_classifier(config.model)
        target = target_index(config.target, clf.class_names)
        writer = output_writer(config, out_dir, columns(clf.class_names, methods, config.trust))
    except (CxrError, OSError) as exc:
        return _fail(exc)
    except KeyboardInterrupt:
        print("cxr-viewer batch: interrupted before any file was processed", file=sys.stderr)
        return 130
    return BatchContext(config, clf, methods, target, writer, dicom=dicom), listing


def run_local(config: BatchConfig) -> int:
    """The local engine: this process, one file after another."""
    started = _start_local(config)
    if isinstance(started, int):
        return started
    ctx, listing = started
    writer = ctx.writer
    assert isinstance(writer, OutputWriter)
    out_dir = Path(config.out)
    counts = _Counts()
    try:
        with _StopOnSigint(ctx.stop):
            _local_loop(ctx, writer, listing, counts)
    except KeyboardInterrupt:
        ctx.stop.set()
    except OSError as exc:  # the journal itself cannot be written (disk full, ...)
        writer.abandon()
        return _fail(write_error(exc.filename or out_dir / JOURNAL_NAME, exc), 1)
    try:
        csv_path = writer.close()
    except OSError as exc:
        return _fail(write_error(out_dir / CSV_NAME, exc), 1)
    if ctx.stop.is_set():
        print(
            f"cxr-viewer batch: interrupted after {counts.done} of {len(listing.files)} files; "
            f"results so far in {csv_path} (run again with --resume to continue)",
            file=sys.stderr,
        )
        return 130
    total = len(listing.files) + len(listing.skipped)
    _say(config, f"wrote {csv_path} ({counts.ok} of {total} files predicted)")
    return 0 if counts.ok else 2


def _say(config: BatchConfig, msg: str) -> None:
    if not config.quiet:
        print(printable(msg), file=sys.stderr, flush=True)


@dataclass
class _Counts:
    """Files predicted (``ok``) and processed (``done``) so far."""

    ok: int = 0
    done: int = 0


def _local_loop(ctx: BatchContext, writer: OutputWriter, listing: Listing, counts: _Counts) -> None:
    """Skipped rows, then each file in turn until done or stopped (counted in ``counts``)."""
    for path, reason in listing.skipped:
        writer.add_row({"file": printable(path), "status": "skipped", "error": reason})
        _say(ctx.config, f"[skipped] {path}: {reason}")
    for i, path in enumerate(listing.files, 1):
        if ctx.stop.is_set():
            break
        try:
            digest: str | None = content_hash(path)
        except OSError:
            digest = None
        if writer.done(printable(path), digest):
            counts.ok += 1
            counts.done += 1
            continue
        writer.release(printable(path))
        row = process_file(ctx, path, digest)
        writer.add_row(row)
        counts.ok += row["status"] in ("ok", "partial")
        counts.done += 1
        detail = row["error"] if row["status"] != "ok" else row["predicted_class"]
        _say(ctx.config, f"[{i}/{len(listing.files)}] {path}: {row['status']} {detail}")
