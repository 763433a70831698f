"""The tests' port helper keeps out of the kernel's ephemeral range and never repeats a port."""

from __future__ import annotations

import socket

import ports


def test_ports_are_outside_the_ephemeral_range_distinct_and_bindable():
    low, high = ports._ephemeral_range()
    got = ports.free_ports(50)
    assert len(set(got)) == 50
    assert all(not low <= p <= high for p in got)
    with socket.socket() as s:
        s.bind(("127.0.0.1", got[0]))  # free as promised


def test_a_port_someone_listens_on_is_not_free():
    port = ports.free_port()
    with socket.socket() as held:
        held.bind(("127.0.0.1", port))
        held.listen()
        assert not ports._is_free(port)


def _slice(monkeypatch, worker: str | None, count: str | None) -> range:
    for name, value in (("PYTEST_XDIST_WORKER", worker), ("PYTEST_XDIST_WORKER_COUNT", count)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    return ports._pool()


def test_xdist_workers_draw_from_disjoint_slices_below_the_ephemeral_range(monkeypatch):
    low, _ = ports._ephemeral_range()
    first, second = _slice(monkeypatch, "gw0", "2"), _slice(monkeypatch, "gw1", "2")
    assert len(first) >= 1_000 and first.stop <= second.start and second.stop <= low
    # a worker that replaced a crashed one (gw2 of 2) wraps into a slice, never past it
    assert _slice(monkeypatch, "gw2", "2") == first and _slice(monkeypatch, "gw3", "2") == second
    whole = _slice(monkeypatch, "gw3", None)  # a count xdist did not set: one slice
    assert whole == _slice(monkeypatch, None, None) and whole.start >= 1024 and whole.stop <= low


def test_no_room_below_the_ephemeral_range_asks_the_kernel(monkeypatch):
    monkeypatch.setattr(ports, "_ephemeral_range", lambda: (1024, 65535))
    assert ports._pool() == range(0)
    monkeypatch.setattr(ports, "_POOL", range(0))
    port = ports.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
