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


def test_xdist_workers_draw_from_disjoint_slices(monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    first = ports._pool()
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    second = ports._pool()
    assert len(first) >= 1_000 and first.stop <= second.start
