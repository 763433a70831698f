"""`cxr-viewer batch --engine ray`: a local Ray instance (2 CPUs, small object store) with two
workers gives the local engine's CSV and maps; a worker that dies is replaced and its file
retried; without Ray the local engine runs and `--engine ray` says how to install it."""

from __future__ import annotations

import csv
import ipaddress
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_viewer.cli import main

N_IMAGES = 5


@pytest.fixture(scope="module")
def bundle_root(tiny_bundle):
    return tiny_bundle


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    src = tmp_path_factory.mktemp("ray-in")
    (src / "sub").mkdir()
    rng = np.random.default_rng(3)
    for i in range(N_IMAGES):
        where = src / "sub" if i == 0 else src
        Image.fromarray((rng.random((36 + i, 40)) * 255).astype(np.uint8)).save(
            where / f"im{i}.png"
        )
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # an error row
    return src


def _batch(src, bundle_root, out, *extra):
    args = ["batch", str(src), "--model", str(bundle_root), "--out", str(out)]
    return main([*args, "--explain", "gradcam", "--quiet", *extra])


def _rows(out):
    with open(out / "predictions.csv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _without_timing(rows):
    return [{k: v for k, v in r.items() if not k.startswith("seconds_")} for r in rows]


@pytest.fixture(scope="module")
def local_out(tmp_path_factory, inputs, bundle_root):
    out = tmp_path_factory.mktemp("local-out")
    assert _batch(inputs, bundle_root, out) == 0
    return out


def _listening_sockets(pids):
    """(pid, local address) of every listening TCP socket (IPv4 and IPv6) of ``pids``,
    from /proc (Linux): the kernel's socket tables, matched to each process's open files."""
    listening = {}  # socket inode -> address
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            hex_ip, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_ip)
            # the kernel prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            ip = ipaddress.ip_address(raw) if width == 8 else ipaddress.IPv6Address(raw)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            listening[fields[9]] = f"{ip}:{int(hex_port, 16)}"
    found = []
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in listening:
                found.append((pid, listening[target[8:-1]]))
    return found


def _this_process_tree():
    """This process and every process it started, directly or not (Ray's GCS, raylet, workers)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [os.getpid()]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def _assert_same_as_local(out, local_out):
    local, rows = _rows(local_out), _rows(out)
    assert list(rows[0]) == list(local[0])  # the same columns, in the same order
    assert _without_timing(rows) == _without_timing(local)  # row for row
    statuses = sorted(r["status"] for r in rows)
    assert statuses == ["error"] + ["ok"] * N_IMAGES
    for r in rows:
        if r["status"] != "ok":
            continue
        assert float(r["seconds_gradcam"]) >= 0
        name = r["map_gradcam"]
        np.testing.assert_allclose(
            np.load(out / name, allow_pickle=False),
            np.load(local_out / name, allow_pickle=False),
            atol=1e-5,
        )
        with (
            Image.open(out / r["overlay_gradcam"]) as a,
            Image.open(local_out / name.replace(".npy", ".png")) as b,
        ):
            assert a.size == b.size
    left = sorted(p.name for p in out.iterdir())
    assert left == sorted(p.name for p in local_out.iterdir())  # no temporary files either


@pytest.mark.slow
def test_ray_engine_with_two_workers_writes_the_local_engines_csv_when_a_worker_dies(
    tmp_path, inputs, bundle_root, local_out, ray_session, monkeypatch
):
    """Two CPU workers, one of which dies part way: every row arrives, equal to the local run's.

    One engine run checks both (Ray's start-up on a busy 2-core CI machine is the cost of this
    file): the CSV, maps and overlays equal the local engine's apart from timing columns, and
    the worker given im3.png exited (``os._exit``) mid-run and was replaced.
    """
    from cxr_viewer.commands.batch_ray import CRASH_HOOK_ENV

    flag = tmp_path / "crashed-once"
    monkeypatch.setenv(CRASH_HOOK_ENV, f"im3.png:{flag}")
    out = tmp_path / "ray-out"
    assert _batch(inputs, bundle_root, out, "--engine", "ray", "--workers", "2") == 0
    assert flag.exists()  # the worker given im3.png died once
    _assert_same_as_local(out, local_out)
    # issue 26 item 5: every socket Ray listens on (GCS, raylet, object manager, the workers'
    # RPC servers, agents) is on the loopback interface (before: ~10 ports on all interfaces)
    sockets = _listening_sockets(_this_process_tree())
    assert len(sockets) >= 3  # at least the GCS, the raylet and this driver's RPC server
    assert [s for s in sockets if not s[1].startswith("127.0.0.1:")] == []
    before = _rows(out)
    # --resume on a part of the same inputs: its file is done, so nothing runs again (its row,
    # timing included, is kept) and the rows of the other files stay
    monkeypatch.delenv(CRASH_HOOK_ENV)
    assert _batch(inputs / "sub", bundle_root, out, "--engine", "ray", "--resume") == 0
    assert _rows(out) == before


def test_without_ray_the_local_engine_runs_and_the_ray_engine_says_how_to_install(
    tmp_path, inputs, bundle_root, local_out, monkeypatch, capsys
):
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    out = tmp_path / "local"
    assert _batch(inputs, bundle_root, out) == 0
    assert _without_timing(_rows(out)) == _without_timing(_rows(local_out))
    capsys.readouterr()
    assert _batch(inputs, bundle_root, tmp_path / "ray", "--engine", "ray") == 2
    err = capsys.readouterr().err
    assert "--engine ray needs Ray" in err and 'pip install -e ".[scale]"' in err
    assert not (tmp_path / "ray").exists()  # refused before anything was written
    assert _batch(inputs, bundle_root, tmp_path / "w", "--workers", "2") == 2
    assert "--address and --workers are options of the Ray engine" in capsys.readouterr().err
