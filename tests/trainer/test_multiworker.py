"""Training on several workers: TF_CONFIG checks, and two local CPU workers end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ports import free_ports

from cxr_viewer.core.errors import TrainingError
from trainer.config import load_config
from trainer.distribute import read_tf_config, timeout_message

ROOT = Path(__file__).resolve().parents[2]
#: every subprocess is killed (SIGKILL: TensorFlow's cluster agent ignores SIGTERM) past this
SUBPROCESS_TIMEOUT = 420


def _tf_config(addresses, index, job="worker"):
    return json.dumps({"cluster": {job: addresses}, "task": {"type": job, "index": index}})


# --- TF_CONFIG and the config key (no TensorFlow) -----------------------------------------


def test_tf_config_gives_the_chief_and_the_peers():
    c = read_tf_config(_tf_config(["a:1000", "b:2000"], 1))
    assert (c.address, c.is_chief, c.num_workers, c.peers) == ("b:2000", False, 2, ("a:1000",))
    assert read_tf_config(_tf_config(["a:1000", "b:2000"], 0)).is_chief
    with_chief = json.dumps(
        {"cluster": {"chief": ["c:1"], "worker": ["w:2"]}, "task": {"type": "worker", "index": 0}}
    )
    c = read_tf_config(with_chief)
    assert not c.is_chief and c.peers == ("c:1",) and c.num_workers == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"cluster": {"worker": ["a:1"]', "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"task": {"type": "worker", "index": 0}}', "'cluster' is missing"),
        ('{"cluster": {"worker": ["a:1"]}}', "'task' is missing"),
        (_tf_config(["a:1", "b:2"], 2), "task.index 2 is out of range"),
        (_tf_config(["a:1", "b"], 0), "cluster.worker[1] is 'b'"),
        (_tf_config(["a:1", "a:1"], 0), "more than once"),
        (_tf_config(["a:1"], 0, job="ps"), "ps are not used"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "evaluator"}}', "task.type"),
    ],
)
def test_malformed_tf_config_is_a_clear_error(text, expected):
    with pytest.raises(TrainingError) as err:
        read_tf_config(text)
    assert "TF_CONFIG is not valid" in err.value.what
    assert expected in err.value.why
    assert "TF_CONFIG" in err.value.hint


def test_multiworker_without_tf_config_says_what_to_set(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(TrainingError) as err:
        read_tf_config()
    assert "needs the TF_CONFIG environment variable" in err.value.what
    assert '"auto"' in err.value.hint


def test_distribute_key_is_validated():
    assert load_config(None, {"train.distribute": "multiworker"}).train.distribute == "multiworker"
    assert load_config(None, {}).train.distribute == "auto"  # mirrored over GPUs when present
    with pytest.raises(TrainingError, match="train.distribute"):
        load_config(None, {"train.distribute": "horovod"})
    with pytest.raises(TrainingError, match="search.trials"):
        load_config(None, {"train.distribute": "multiworker", "search.trials": 2})


def test_timeout_message_names_the_unreachable_address():
    text = timeout_message("localhost:1", ["localhost:2", "h:3"], ["localhost:2"], 5)
    assert "no connection to localhost:2 after 5 s" in text
    assert "worker_timeout" in text


# --- two local CPU workers ----------------------------------------------------------------


#: the shipped tiny phantom config, run on several workers (``_start_worker`` adds the rest)
TINY_CONFIG = ROOT / "trainer" / "configs" / "phantoms_tiny.toml"


def _start_worker(csv: Path, out: Path, tf_config: str, log: Path, *extra: str):
    # TMPDIR: a worker killed by the test leaves its temporary folder in the test's folder
    env = dict(os.environ, TF_CONFIG=tf_config, CUDA_VISIBLE_DEVICES="", TMPDIR=str(log.parent))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "trainer.cli", "train", "--config", str(TINY_CONFIG)]
    cmd += ["--out", str(out), "--quiet", "--set", f"data.root={json.dumps(str(csv))}"]
    cmd += ["--set", 'train.distribute="multiworker"', "--set", "train.worker_timeout=240.0"]
    cmd += list(extra)
    fh = open(log, "wb")  # noqa: SIM115 - closed by _finish
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    proc.log_file = fh  # type: ignore[attr-defined]
    return proc


def _finish(procs, deadline, stop_when=None):
    """Wait for every process until ``deadline``; kill them all on timeout, on a failure, or
    as soon as ``stop_when()`` is true."""
    try:
        pending = list(procs)
        while pending:
            for p in list(pending):
                if p.poll() is not None:
                    pending.remove(p)
                    if p.returncode != 0:
                        return  # the others are killed below: they would wait for it forever
            if time.monotonic() > deadline or (stop_when is not None and stop_when()):
                return
            time.sleep(0.1 if stop_when is not None else 0.5)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
            p.log_file.close()


@pytest.mark.slow
def test_an_unreachable_worker_is_named_after_the_timeout(phantom_csv_small, tmp_path):
    addresses = [f"localhost:{p}" for p in free_ports(2)]
    log = tmp_path / "chief.log"
    # only the chief starts; worker 1 never does
    proc = _start_worker(
        phantom_csv_small,
        tmp_path / "run",
        _tf_config(addresses, 0),
        log,
        "--set",
        "train.worker_timeout=3",
    )
    _finish([proc], time.monotonic() + SUBPROCESS_TIMEOUT)
    text = log.read_text(errors="replace")
    assert proc.returncode != 0
    assert f"no connection to {addresses[1]} after 3 s" in text, text[-2000:]
    assert "a worker is unreachable" in text


@pytest.mark.slow
def test_two_workers_killed_mid_run_resume_and_the_chief_exports_a_loadable_bundle(
    phantom_csv_small, tmp_path
):
    """Two local CPU workers train; both are killed (SIGKILL) once the chief has backed up two
    epochs; re-run, they resume at the chief's epoch, and the chief writes the run folder as
    on one machine, with a bundle the viewer's core loads and predicts with."""
    from cxr_viewer.core.model.bundle import open_bundle
    from cxr_viewer.core.model.inference import load_classifier

    run = tmp_path / "run"
    meta = run / "checkpoints" / "backup" / "training_metadata.json"

    def start(tag):
        addresses = [f"localhost:{p}" for p in free_ports(2)]
        return [
            _start_worker(
                phantom_csv_small,
                run,
                _tf_config(addresses, i),
                tmp_path / f"{tag}{i}.log",
                *("--set", "train.epochs=6", "--set", "train.patience=6"),
            )
            for i in range(2)
        ]

    def backed_up_two_epochs():
        try:
            return json.loads(meta.read_text()).get("epoch", 0) >= 2
        except (ValueError, OSError):  # absent, or read while being written
            return False

    procs = start("first")
    _finish(procs, time.monotonic() + SUBPROCESS_TIMEOUT, stop_when=backed_up_two_epochs)
    first = [(tmp_path / f"first{i}.log").read_text(errors="replace")[-3000:] for i in range(2)]
    # both killed by the test: neither finished nor failed before
    assert [p.returncode for p in procs] == [-signal.SIGKILL] * 2, first
    killed_at = json.loads(meta.read_text())["epoch"]

    procs = start("second")
    _finish(procs, time.monotonic() + SUBPROCESS_TIMEOUT)
    output = [(tmp_path / f"second{i}.log").read_text(errors="replace")[-3000:] for i in range(2)]
    assert [p.returncode for p in procs] == [0, 0], output
    assert "worker finished; the chief writes" in output[1]
    metrics = json.loads((run / "metrics.json").read_text())
    training = metrics["training"]
    assert training["resumed_from_epoch"] == killed_at >= 2
    assert training["workers"] == 2
    import pandas as pd

    history = pd.read_csv(run / "history.csv")
    assert history["epoch"].tolist() == list(range(6))  # every epoch once, none repeated
    # each worker's temporary folder is gone: the killed ones' too, cleared by their re-runs
    assert not list(tmp_path.glob("cxr-train-worker-*"))
    # the chief wrote the run folder as on one machine; the other worker wrote nothing there
    assert not (run / "checkpoints" / "backup").exists()  # finished: the backup is removed
    assert (run / "report" / "report.md").is_file()
    # ...and its bundle loads in the viewer's core and predicts
    bundle = open_bundle(run / "bundle")
    assert bundle.class_names == ["no_lesion", "lesion"]
    assert bundle.metadata["metrics"]["test_auc"] is not None
    from cxr_viewer.core.io import load_study

    splits = pd.read_csv(run / "splits.csv")
    test_file = splits[splits["split"] == "test"].iloc[0]["path"]
    pred = load_classifier(run / "bundle").predict_study(load_study(test_file))
    assert pred.probabilities.shape == (2,)
    assert pred.probabilities.sum() == pytest.approx(1, abs=1e-5)
