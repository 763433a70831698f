"""Free localhost ports for the tests' servers (Orthanc, DICOM peers, our storage SCP, TF workers).

Asking the kernel for port 0 and closing the socket is racy: between the close and the
server's bind, any outgoing connection on the machine (another pytest-xdist worker's HTTP
client, a DICOM association, Ray) may be given the same port from the ephemeral range. CI lost
a run to exactly that. So the ports handed out here come from *below* the kernel's ephemeral
range, where outgoing connections never land, and each xdist worker draws from its own slice
of it, so two workers never hand out the same port. Within a worker, ports are handed out in
turn and each is checked by binding it on every address before it is returned.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
from collections.abc import Iterator
from pathlib import Path

_LOW = 10_000  # stay clear of the well-known and registered low ports most services use


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999  # Linux's default; macOS's is 49152-65535, above it too


def _pool() -> range:
    """The ports outside the ephemeral range, this xdist worker's share of them."""
    low, high = _ephemeral_range()
    start, stop = (_LOW, low) if low - _LOW >= 2_000 else (high + 1, 65_536)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    size = (stop - start) // count
    return range(start + index * size, start + (index + 1) * size)


def _cycle() -> Iterator[int]:
    pool = _pool()
    # start somewhere new each run, so a port a killed run left in TIME_WAIT is not first
    first = random.randrange(len(pool))
    return itertools.cycle([*pool[first:], *pool[:first]])


_PORTS = _cycle()


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("0.0.0.0", port))  # fails if anything holds the port on any address
        except OSError:
            return False
    return True


def free_port() -> int:
    """A localhost TCP port nothing listens on, not handed out before in this run."""
    for _ in range(len(_pool())):
        port = next(_PORTS)
        if _is_free(port):
            return port
    raise RuntimeError(f"no free TCP port in {_pool()}")


def free_ports(n: int) -> list[int]:
    return [free_port() for _ in range(n)]
