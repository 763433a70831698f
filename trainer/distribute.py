"""Training on several machines: ``TF_CONFIG``, ``MultiWorkerMirroredStrategy``, who writes.

``train.distribute = "multiworker"`` trains one model on every worker named in the standard
``TF_CONFIG`` environment variable (synchronous data parallelism, gradients all-reduced over the
network). Every worker runs the same ``cxr-train train`` command with its own ``TF_CONFIG``.

Who writes what: the *chief* (task type ``chief``, else ``worker`` 0) writes the run folder as
on one machine — checkpoints, ``history.csv``, logs, the report and the bundle. Every other
worker runs in a temporary folder that is deleted at the end (the standard Keras pattern for
multi-worker checkpoints); before training it copies the chief's checkpoints, so all workers
restore the same state when a run is resumed (the run folder must therefore be on a file system
every worker reads, as checkpoints on a cluster are). Evaluation, report and export run on the
chief alone, on the trained model reloaded outside the strategy.

TensorFlow requires the strategy before any other TensorFlow op, so :func:`multiworker_strategy`
is called first thing in a run. TensorFlow waits for the other workers without a time limit
while holding the interpreter lock; a small watchdog process (:func:`_watchdog`) stops the wait
after ``train.worker_timeout`` seconds with a message naming the workers that never answered.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from cxr_viewer.core.errors import TrainingError

ENV = "TF_CONFIG"
#: task types a training worker may have (``ps`` and ``evaluator`` belong to other strategies)
TASK_TYPES = ("chief", "worker")

_HINT = (
    'Set TF_CONFIG on every worker to JSON like {"cluster": {"worker": ["host1:12345", '
    '"host2:12345"]}, "task": {"type": "worker", "index": 0}} (index 1 on the second machine).'
)


@dataclass(frozen=True)
class Cluster:
    """This worker's view of the cluster, read from ``TF_CONFIG``."""

    chief: tuple[str, ...]  # the "chief" job's address, if the cluster has one
    workers: tuple[str, ...]  # the "worker" job's addresses, in index order
    task_type: str
    task_index: int

    @property
    def addresses(self) -> tuple[str, ...]:
        return (*self.chief, *self.workers)

    @property
    def address(self) -> str:
        """This worker's own address."""
        return (self.chief if self.task_type == "chief" else self.workers)[self.task_index]

    @property
    def is_chief(self) -> bool:
        if self.chief:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0

    @property
    def num_workers(self) -> int:
        return len(self.addresses)

    @property
    def peers(self) -> tuple[str, ...]:
        """Every other worker's address."""
        me = self.address
        return tuple(a for a in self.addresses if a != me)


def _bad(why: str, hint: str = _HINT) -> TrainingError:
    return TrainingError(f"Cannot start multi-worker training: {ENV} is not valid", why, hint)


def _check_address(address: Any, where: str) -> str:
    if not isinstance(address, str):
        raise _bad(f"{where} is {address!r}, not a 'host:port' string")
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _bad(f"{where} is {address!r}, not 'host:port' with a port in 1–65535")
    return address


def read_tf_config(text: str | None = None) -> Cluster:
    """Parse ``TF_CONFIG`` (the environment's when ``text`` is None) into a :class:`Cluster`.

    Raises :class:`TrainingError` naming what is wrong: absent, not JSON, no ``cluster`` or
    ``task``, unknown task type, index out of range, an address that is not ``host:port``.
    """
    if text is None:
        text = os.environ.get(ENV)
    if text is None or not text.strip():
        raise TrainingError(
            f'train.distribute = "multiworker" needs the {ENV} environment variable',
            f"{ENV} is not set, so this process does not know the other workers.",
            _HINT + ' On one machine use train.distribute = "auto" instead.',
        )
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad(f"it is not JSON ({exc.msg} at character {exc.pos})") from exc
    if not isinstance(doc, dict):
        raise _bad("it must be a JSON object with 'cluster' and 'task'")
    cluster, task = doc.get("cluster"), doc.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise _bad("'cluster' is missing or empty")
    if not isinstance(task, dict):
        raise _bad("'task' is missing")
    unknown = sorted(set(cluster) - set(TASK_TYPES))
    if unknown:
        raise _bad(
            f"cluster job(s) {', '.join(unknown)} are not used by MultiWorkerMirroredStrategy",
            "Name the machines as 'worker' (and optionally one 'chief') in TF_CONFIG.",
        )
    jobs = _read_jobs(cluster)
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in TASK_TYPES:
        raise _bad(f"task.type is {task_type!r}; expected 'worker' or 'chief'")
    if isinstance(index, bool) or not isinstance(index, int):
        raise _bad(f"task.index is {index!r}, not an integer")
    if not 0 <= index < len(jobs[task_type]):
        raise _bad(
            f"task.index {index} is out of range: cluster.{task_type} has "
            f"{len(jobs[task_type])} address(es)"
        )
    return Cluster(jobs["chief"], jobs["worker"], task_type, index)


def _read_jobs(cluster: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """Job type → its checked ``host:port`` addresses (at most one chief, no duplicates)."""
    jobs: dict[str, tuple[str, ...]] = {}
    for job in TASK_TYPES:
        addresses = cluster.get(job, [])
        if not isinstance(addresses, list):
            raise _bad(f"cluster.{job} must be a list of 'host:port' strings")
        jobs[job] = tuple(_check_address(a, f"cluster.{job}[{i}]") for i, a in enumerate(addresses))
    if len(jobs["chief"]) > 1:
        raise _bad("a cluster has at most one 'chief'")
    everyone = jobs["chief"] + jobs["worker"]
    if not jobs["worker"] and not jobs["chief"]:
        raise _bad("the cluster lists no worker")
    duplicated = sorted({a for a in everyone if everyone.count(a) > 1})
    if duplicated:
        raise _bad(f"address(es) {', '.join(duplicated)} appear more than once")
    return jobs


def _reachable(address: str, timeout: float = 2.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except OSError:
        return False


#: run by the watchdog process: waits for "ok" on stdin; after the timeout, names the workers
#: whose port does not accept connections and kills the waiting parent (TensorFlow ignores
#: SIGTERM while it waits, and it holds the interpreter lock, so no thread could interrupt it)
_WATCHDOG = r"""
import json, os, select, signal, sys
from trainer.distribute import _reachable, timeout_message
args = json.loads(sys.argv[1])
ready, _, _ = select.select([sys.stdin], [], [], args["timeout"])
if ready:
    sys.exit(0)  # "ok", or EOF because the parent ended
missing = [a for a in args["peers"] if not _reachable(a)]
sys.stderr.write("cxr-train train: " + timeout_message(args["me"], args["peers"], missing,
                                                      args["timeout"]) + "\n")
sys.stderr.flush()
os.kill(args["parent"], signal.SIGKILL)
sys.exit(1)
"""


def timeout_message(me: str, peers: list[str], missing: list[str], timeout: float) -> str:
    """The watchdog's message: which workers did not answer, and what to check."""
    if missing:
        why = (
            f"no connection to {', '.join(missing)} after {timeout:g} s "
            f"(this worker is {me}; the cluster's other workers: {', '.join(peers)})"
        )
    else:
        why = (
            f"{', '.join(peers)} accept connections but the cluster did not form within "
            f"{timeout:g} s (this worker is {me}): a worker may run with a different {ENV}"
        )
    return str(
        TrainingError(
            "Multi-worker training could not start: a worker is unreachable",
            why,
            f"Start `cxr-train train` with the same config on every address of {ENV} (each "
            "with its own task.index), check that the ports are open between the machines, or "
            "raise train.worker_timeout.",
        )
    )


def _watchdog(cluster: Cluster, timeout: float) -> subprocess.Popen:
    args = {
        "timeout": float(timeout),
        "peers": list(cluster.peers),
        "me": cluster.address,
        "parent": os.getpid(),
    }
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, json.dumps(args)], stdin=subprocess.PIPE, env=env
    )


def _patch_keras_scalar_mean() -> None:
    """Let Keras average scalar logs over several workers.

    Keras 3 (3.15) averages each step's logs (loss, metrics: scalars) over the replicas of a
    multi-worker strategy with ``strategy.reduce("MEAN", v, axis=0)``, which fails for a
    scalar ("Invalid reduction dimension 0 for input with 0 dimensions"). Scalars are averaged
    with ``axis=None`` here; everything else goes through Keras's own reduction unchanged.
    """
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica
    if getattr(original, "cxr_scalar_mean", False):
        return

    def reduce_per_replica(values, strategy, reduction="auto"):
        if reduction not in ("auto", "mean") or not tf_trainer._collective_all_reduce_multi_worker(
            strategy
        ):
            return original(values, strategy, reduction)

        def one(v):
            local = strategy.experimental_local_results(v)
            if local and getattr(local[0], "shape", None) is not None and local[0].shape.rank == 0:
                return strategy.reduce("MEAN", v, axis=None)
            return original(v, strategy, reduction)

        return tree.map_structure(one, values)

    reduce_per_replica.cxr_scalar_mean = True  # type: ignore[attr-defined]
    tf_trainer.reduce_per_replica = reduce_per_replica


_strategy: Any = None
_cluster: Cluster | None = None


def multiworker_strategy(timeout: float) -> tuple[Any, Cluster]:
    """The process's ``MultiWorkerMirroredStrategy`` (created once) and its :class:`Cluster`.

    Waits at most ``timeout`` seconds for every worker of ``TF_CONFIG`` to join; past that the
    process ends with a message naming the unreachable addresses (see :func:`_watchdog`).
    """
    global _strategy, _cluster
    if _strategy is not None and _cluster is not None:
        return _strategy, _cluster
    cluster = read_tf_config()
    from cxr_viewer.core.model.model_io import import_tensorflow

    tf = import_tensorflow()
    from tensorflow.python.eager import context

    if context.context()._context_handle is not None:  # an op already ran: too late
        raise TrainingError(
            "Cannot start multi-worker training in this process",
            "TensorFlow has already run an operation, and MultiWorkerMirroredStrategy must be "
            "created before any.",
            'Start a fresh process (cxr-train train) for a train.distribute = "multiworker" run.',
        )
    watchdog = _watchdog(cluster, timeout)
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=tf.distribute.cluster_resolver.TFConfigClusterResolver()
        )
    except (ValueError, RuntimeError, tf.errors.OpError) as exc:
        raise TrainingError(
            "Multi-worker training could not start",
            f"TensorFlow refused the cluster of {ENV}: {exc}",
            _HINT,
        ) from exc
    finally:
        try:
            assert watchdog.stdin is not None
            watchdog.stdin.write(b"ok\n")
            watchdog.stdin.close()
        except OSError:
            pass
        watchdog.wait(timeout=30)
    _patch_keras_scalar_mean()
    _strategy, _cluster = strategy, cluster
    return strategy, cluster


def barrier() -> None:
    """Wait until every worker reaches this point (a one-number all-reduce), so no worker
    leaves the cluster while the chief still evaluates and exports."""
    if _strategy is None:
        return
    import tensorflow as tf

    strategy = _strategy

    @tf.function
    def one_each():
        return strategy.run(lambda: tf.constant(1.0))

    strategy.reduce("SUM", one_each(), axis=None)


def current_cluster() -> Cluster | None:
    """The cluster of the multi-worker strategy made in this process, if any."""
    return _cluster
