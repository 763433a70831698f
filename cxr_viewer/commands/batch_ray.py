"""``cxr-viewer batch --engine ray``: the same batch, on a pool of Ray workers.

The driver (this process) does what the local engine does before and after the loop: it
checks the arguments and the output folder, lists the inputs, decides with ``--resume`` what is
done, and reserves each file's output names in input order (so they are the ones the local
engine would choose). Ray Data then feeds the files to a pool of actors (:class:`ExplainWorker`):
each loads the bundle once and runs :func:`cxr_viewer.commands.batch.process_file` — the local
engine's own code, down to ``explain_with_trust`` and the overlay / map / DICOM writers — and
writes the file's outputs into ``--out`` as soon as it is done. The driver appends each row to
the journal as it arrives and writes ``predictions.csv`` in input order at the end, so the CSV is
the local engine's row for row, apart from the timing columns (``seconds_<method>``).

One difference: the local engine gives a file its output names only once it has been read, the
Ray engine before; two inputs whose names differ only in extension or case (``a.png``,
``A.jpg``) can then get other names if the first cannot be read.

Failures: a file that fails is an error row, exactly as locally. A worker process that dies
(killed, out of memory, a crash in native code) is restarted by Ray and its file retried
(:data:`TASK_RETRIES` times); a file whose worker died every time gets an error row and the run
goes on. ``--workers N`` sets the pool size (default: one per GPU of the cluster, else one per
CPU); every worker needs the package installed and ``--model``, the inputs and ``--out`` at the
same paths (a shared file system on a cluster).

Ray is an optional dependency (``pip install -e ".[scale]"``) imported only here, only when
``--engine ray`` is asked for.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from cxr_viewer.core.errors import CxrError
from cxr_viewer.core.io.atomic import write_error

from .batch_core import (
    BatchConfig,
    BatchContext,
    columns,
    describe_failure,
    output_suffixes,
    output_writer,
    prepare_inputs,
    process_file,
    rel,
    target_index,
)
from .batch_output import (
    CSV_NAME,
    JOURNAL_NAME,
    OutputWriter,
    content_hash,
    printable,
    save_output,
)

#: How often a file is tried again after its worker process died (then it is an error row).
TASK_RETRIES = 2
#: Object store of a Ray instance this command starts itself: it carries file names and rows
#: only (each worker reads its images from disk), so a small one is enough.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024 * 1024
#: Test hook, read by the driver and handed to the workers: ``NAME:FLAG`` makes the worker that
#: gets the input file called NAME exit at once (``os._exit(1)``, as a crash would) the first
#: time, when the file FLAG does not exist yet (it creates it). Used by the tests to check that
#: a dead worker is replaced and its file retried; never set it in production.
CRASH_HOOK_ENV = "CXR_LENS_RAY_TEST_CRASH_ONCE"
#: Most Ray Data blocks the input list is cut into (one file per block up to this; a dead
#: worker's whole block is retried).
MAX_BLOCKS = 10_000

RAY_MISSING = CxrError(
    "--engine ray needs Ray",
    "Ray is an optional dependency of CXR Lens and is not installed here.",
    'Install it with `pip install -e ".[scale]"` (or `pip install "cxr-lens[scale]"`), '
    "or leave out --engine ray to run on this machine.",
)


def import_ray():
    """``ray`` and ``ray.data``, or :data:`RAY_MISSING`."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RAY_MISSING from exc
    return ray


class _PresetNames:
    """The part of :class:`OutputWriter` a worker uses: the output names the driver reserved
    for the file being processed, and atomic writes into the output folder."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.stem = ""
        self.stem_error = ""

    def unique_stem(self, rel: str, suffixes=()) -> str:
        if self.stem_error:
            raise CxrError(self.stem_error)
        return self.stem

    def save(self, row: dict[str, Any], column: str, name: str, write) -> Path:
        return save_output(self.out_dir, row, column, name, write)


def _cell(value: Any) -> str:
    """A row value as ``csv`` writes it (so the driver's CSV is byte for byte the local one)."""
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


class ExplainWorker:
    """A Ray actor: loads the bundle once, then predicts and explains the files it is given.

    Each batch holds ``path`` (the file name as bytes), ``sha256`` (the driver's hash, or empty:
    the worker computes it), ``stem`` and ``stem_error`` (the output names the driver reserved);
    it returns ``row``: each file's CSV row as JSON.
    """

    def __init__(
        self,
        config: BatchConfig,
        methods: list[str],
        target: int | None,
        threads: int = 0,
        crash_hook: str = "",
    ) -> None:
        if threads > 0:  # TensorFlow reads these when it starts (below, at the model's load)
            os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(threads))
            os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
        from cxr_viewer.commands.batch_dicom import DicomOutput
        from cxr_viewer.commands.runtime import apply_runtime_arguments
        from cxr_viewer.core.model.inference import load_classifier

        self.names = _PresetNames(Path(config.out))
        self.crash_name, _, self.crash_flag = crash_hook.partition(":")
        self.ctx: BatchContext | None = None
        #: why this worker has no model (its files become error rows saying so), or ''
        self.load_error = ""
        try:
            apply_runtime_arguments(config)
            clf = load_classifier(config.model)
            dicom = DicomOutput.from_options(config.dicom)
        except Exception as exc:  # a worker that cannot start must not take the run down
            self.load_error = f"the worker could not load the model: {describe_failure(exc)}"
            return
        self.ctx = BatchContext(config, clf, methods, target, self.names, dicom=dicom)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        rows = []
        for raw, digest, stem, stem_error in zip(
            batch["path"], batch["sha256"], batch["stem"], batch["stem_error"], strict=True
        ):
            path = Path(os.fsdecode(bytes(raw)))
            self._maybe_crash(path)
            if not digest:
                try:
                    digest = content_hash(path)
                except OSError:
                    digest = None
            self.names.stem, self.names.stem_error = str(stem), str(stem_error)
            if self.ctx is None:
                row = {"file": printable(path), "sha256": digest or "", "status": "error"}
                row["error"] = self.load_error
            else:
                row = process_file(self.ctx, path, digest)
            rows.append(json.dumps({k: _cell(v) for k, v in row.items()}))
        return {"row": rows}

    def _maybe_crash(self, path: Path) -> None:
        if self.crash_name and path.name == self.crash_name and self.crash_flag:
            try:
                fd = os.open(self.crash_flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.close(fd)
            os._exit(1)


def _start_ray(ray, args: BatchConfig) -> tuple[bool, str]:
    """Join ``--address`` or the Ray instance this process runs already, else start one here.
    Returns (whether this call started it, the dashboard address or '')."""
    if ray.is_initialized():
        return False, ""
    quiet = {"logging_level": "ERROR", "log_to_driver": not args.quiet}
    try:
        if args.address:
            info = ray.init(address=args.address, **quiet)
        else:
            info = init_local_ray(ray, object_store_memory=LOCAL_OBJECT_STORE_BYTES, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {args.address}" if args.address else "Ray on this machine"
        raise CxrError(
            f"Cannot start {where}",
            printable(exc),
            "Check that the cluster runs (`ray status`) and the address, or leave out --address "
            "to start Ray here.",
        ) from exc
    return True, str(getattr(info, "dashboard_url", "") or "")


#: Ray reads this variable when it is imported: false makes it take 127.0.0.1 as this node's
#: address (what it does on Windows and macOS), so that its servers bind there.
_RAY_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOOPBACK = "127.0.0.1"


def init_local_ray(ray, **options: Any):
    """Start a new Ray instance on this machine that listens on 127.0.0.1 only.

    Ray's servers (GCS, raylet, object manager, every worker's RPC server, the runtime-env
    agent) have no authentication unless a cluster is set up with a token or TLS; by default
    they bind to all interfaces. A node address of 127.0.0.1 makes each of them bind to the
    loopback interface: Ray takes it from ``_node_ip_address`` only when it runs "without
    clusters", which the variable above says, for this process (already imported, hence the
    module constant) and for the processes Ray starts. The dashboard is not started. Raises
    :class:`CxrError` (after shutting Ray down) if the node still took another address.
    """
    from ray._private import ray_constants

    saved_env = os.environ.get(_RAY_CLUSTER_ENV)
    saved_flag = getattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    os.environ[_RAY_CLUSTER_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        info = ray.init(
            address="local",  # a new instance, even where a cluster runs (--address joins it)
            include_dashboard=False,
            _node_ip_address=LOOPBACK,
            **options,
        )
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(_RAY_CLUSTER_ENV, None)
        else:
            os.environ[_RAY_CLUSTER_ENV] = saved_env
    address = str(getattr(info, "address_info", {}).get("node_ip_address", ""))
    if address != LOOPBACK:
        ray.shutdown()
        raise CxrError(
            "Ray did not start on the loopback interface",
            f"its node took the address {address or 'unknown'}, so its unauthenticated "
            "servers would be reachable from the network.",
            "Use a Ray version this package supports (see pyproject.toml), or start a Ray "
            "cluster with its own authentication and pass --address.",
        )
    return info


def _pool(ray, args: BatchConfig) -> tuple[int, dict[str, Any], int]:
    """(workers, Ray resources per worker, TensorFlow threads per worker)."""
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    cpus = max(1, int(res.get("CPU", 1)))
    if gpus and args.device != "cpu":
        workers = args.workers or gpus
        return workers, {"num_gpus": 1, "num_cpus": 1}, 0
    workers = args.workers or cpus
    per = max(1, cpus // workers)
    return workers, {"num_cpus": per}, per


def _fail(exc: BaseException, code: int = 2) -> int:
    print(f"cxr-viewer batch: {describe_failure(exc)}", file=sys.stderr)
    return code


class _Run:
    """The driver's state of one Ray run: Ray (and whether this run started it), the inputs,
    the methods and class to explain, and the CSV writer."""

    def __init__(self, config: BatchConfig) -> None:
        self.config = config
        self.out_dir = Path(config.out)
        self.ray: Any = None
        self.started = False
        self.dashboard = ""
        self.methods: list[str] = []
        self.listing: Any = None
        self.target: int | None = None
        self.writer: OutputWriter | None = None

    def start(self) -> int | None:
        """Check the arguments, open the bundle, start Ray and the writer; an exit status if
        the run cannot start."""
        from cxr_viewer.core.model.bundle import open_bundle

        config = self.config
        try:
            if config.workers is not None and config.workers < 1:
                raise CxrError("--workers must be at least 1", f"got {config.workers}.")
            self.ray = import_ray()
            inputs = prepare_inputs(config, self.out_dir)  # checks a --send node first
            if inputs is None:
                return 2
            self.methods, self.listing, _dicom = inputs
            bundle = open_bundle(config.model)  # the class names; each worker loads the model
            class_names = tuple(bundle.class_names)
            self.target = target_index(config.target, class_names)
            cols = columns(class_names, self.methods, config.trust)
            self.started, self.dashboard = _start_ray(self.ray, config)  # before --out changes
            self.writer = output_writer(config, self.out_dir, cols)
        except (CxrError, OSError) as exc:
            self.stop()
            return _fail(exc)
        except KeyboardInterrupt:
            self.stop()
            print("cxr-viewer batch: interrupted before any file was processed", file=sys.stderr)
            return 130
        return None

    def stop(self) -> None:
        _stop_ray(self.ray, self.started)

    def items(self, writer: OutputWriter) -> tuple[list[dict[str, Any]], int]:
        """The driver's part of the local engine's loop: (files to process with their reserved
        output names, files kept from an earlier run)."""
        suffixes = output_suffixes(self.methods)
        items: list[dict[str, Any]] = []
        n_kept = 0
        root = Path(self.config.path)
        for path in self.listing.files:
            digest = ""
            if writer.kept_rows:
                try:
                    digest = content_hash(path)
                except OSError:
                    digest = ""
            if writer.done(printable(path), digest or None):
                n_kept += 1
                continue
            writer.release(printable(path))
            stem = stem_error = ""
            if self.methods:
                try:
                    stem = writer.unique_stem(rel(path, root), suffixes)
                except CxrError as exc:
                    stem_error = describe_failure(exc)
            items.append(
                {
                    "path": os.fsencode(path),
                    "sha256": digest,
                    "stem": stem,
                    "stem_error": stem_error,
                }
            )
        return items, n_kept


def _add_lost_rows(writer: OutputWriter, items: list[dict[str, Any]], arrived: set[str]) -> None:
    """An error row for each file whose worker died every time it was tried."""
    for it in items:
        if printable(os.fsdecode(it["path"])) in arrived:
            continue
        writer.add_row(
            {
                "file": printable(os.fsdecode(it["path"])),
                "sha256": it["sha256"],
                "status": "error",
                "error": f"the worker processing this file died {TASK_RETRIES + 1} times "
                "(out of memory, or a crash while reading or explaining it)",
            }
        )


def run_ray(config: BatchConfig) -> int:
    run = _Run(config)
    status = run.start()
    if status is not None:
        return status
    writer, listing = run.writer, run.listing
    assert writer is not None
    if run.dashboard and not config.quiet:
        print(f"cxr-viewer batch: Ray dashboard at {run.dashboard}", file=sys.stderr)
    items, n_kept = run.items(writer)
    order = [printable(p) for p, _ in listing.skipped] + [printable(p) for p in listing.files]
    for path, reason in listing.skipped:
        writer.add_row({"file": printable(path), "status": "skipped", "error": reason})
    arrived: set[str] = set()
    n_ok = n_kept
    interrupted = False
    try:
        if items:
            n_ok += _run_pool(run.ray, config, run.methods, run.target, items, writer, arrived)
    except KeyboardInterrupt:
        interrupted = True
    except (CxrError, OSError) as exc:
        writer.abandon()
        run.stop()
        if isinstance(exc, CxrError):
            return _fail(exc)
        # the journal itself cannot be written (disk full, ...)
        return _fail(write_error(exc.filename or run.out_dir / JOURNAL_NAME, exc), 1)
    if not interrupted:
        _add_lost_rows(writer, items, arrived)
    run.stop()
    try:
        csv_path = writer.close(order)
    except OSError as exc:
        return _fail(write_error(run.out_dir / CSV_NAME, exc), 1)
    total = len(listing.files) + len(listing.skipped)
    if interrupted:
        print(
            f"cxr-viewer batch: interrupted after {n_kept + len(arrived)} of "
            f"{len(listing.files)} files; results so far in {csv_path} (run again with "
            "--resume to continue)",
            file=sys.stderr,
        )
        return 130
    if not config.quiet:
        print(f"wrote {csv_path} ({n_ok} of {total} files predicted)", file=sys.stderr)
    return 0 if n_ok else 2


def _run_pool(ray, args, methods, target, items, writer: OutputWriter, arrived: set[str]) -> int:
    """Feed ``items`` to the worker pool; journal each row as it arrives. Returns how many
    files were predicted."""
    from ray.data import DataContext
    from tqdm import tqdm

    workers, resources, threads = _pool(ray, args)
    data_ctx = DataContext.get_current()
    data_ctx.enable_progress_bars = False  # the driver shows one bar per file instead
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its start/finish lines would cut it
    data_ctx.max_errored_blocks = -1  # a file whose worker kept dying: an error row, not a lost run
    data_ctx.log_internal_stack_trace = False
    ds = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_BLOCKS))
    with warnings.catch_warnings():
        # Ray 2.60 deprecates passing actor options this way but offers no other for
        # max_task_retries (its default, -1, would retry a file that kills its worker forever)
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        ds = ds.map_batches(
            ExplainWorker,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=min(workers, len(items))),
            fn_constructor_kwargs={
                "config": args,
                "methods": methods,
                "target": target,
                "threads": threads,
                "crash_hook": os.environ.get(CRASH_HOOK_ENV, ""),
            },
            # a dead worker is replaced (always) and its file tried again (TASK_RETRIES times)
            max_restarts=-1,
            max_task_retries=TASK_RETRIES,
            **resources,
        )
    n_ok = 0
    bar = tqdm(total=len(items), unit="file", disable=args.quiet, file=sys.stderr)
    try:
        for record in ds.iter_rows():
            row = json.loads(record["row"])
            writer.add_row(row)
            arrived.add(row["file"])
            n_ok += row["status"] in ("ok", "partial")
            bar.update(1)
    except Exception as exc:  # Ray's own errors (a worker that cannot start, a lost node...)
        raise CxrError(
            "The Ray workers failed",
            printable(str(exc).strip().splitlines()[-1] if str(exc).strip() else exc),
            "The rows written so far are kept: fix the cause and run again with --resume.",
        ) from exc
    finally:
        bar.close()
    return n_ok


def _stop_ray(ray, started: bool) -> None:
    if started and ray is not None:
        ray.shutdown()
