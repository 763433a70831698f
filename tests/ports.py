"""Free localhost ports for the tests' servers (Orthanc, DICOM peers, our storage SCP, TF workers).

Asking the kernel for port 0 and closing the socket is racy: between the close and the
server's bind, any outgoing connection on the machine (another pytest-xdist worker's HTTP
client, a DICOM association, Ray) may be given the same port from the ephemeral range. CI lost
a run to exactly that. So the ports handed out here come from *below* the kernel's ephemeral
range, where outgoing connections never land, and each xdist worker of a session draws from its
own slice of it, so two workers of one session never hand out the same port (two sessions on
one host may; the bind check below still skips a port the other holds). Within a worker, ports
are handed out in turn and each is checked by binding it (IPv4 and, where the host has it, IPv6
wildcard addresses) before it is returned. Where no such range exists (an ephemeral range that
starts near 1024), the kernel's port 0 is used, with the old race.
"""

from __future__ import annotations

import errno
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


#: a worker's slice smaller than this is not worth cycling through: use port 0 instead
_MIN_SLICE = 200


def _pool() -> range:
    """The ports outside the ephemeral range, this xdist worker's share of them (empty when
    there is no room: :func:`free_port` then asks the kernel)."""
    low, high = _ephemeral_range()
    start, stop = (_LOW, low) if low - _LOW >= 2_000 else (high + 1, 65_536)
    given = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")
    count = max(1, int(given) if given.isdigit() else 1)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    # a worker that replaces a crashed one gets a new id (gw2 of 2): wrap it into the slices
    index = (int(worker[2:]) if worker[2:].isdigit() else 0) % count
    size = max(0, stop - start) // count
    if size < _MIN_SLICE:
        return range(0)
    return range(start + index * size, start + (index + 1) * size)


def _cycle(pool: range) -> Iterator[int]:
    # start somewhere new each run, so a port a killed run left in TIME_WAIT is not first
    first = random.randrange(len(pool))
    return itertools.cycle([*pool[first:], *pool[:first]])


_POOL = _pool()
_PORTS = _cycle(_POOL) if _POOL else iter(())


def _is_free(port: int) -> bool:
    """Nothing holds ``port`` on any IPv4 address, nor on any IPv6 one where the host has IPv6."""
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no such address family here
        with s:
            try:
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.bind((address, port))
            except OSError as exc:
                if family == socket.AF_INET or exc.errno == errno.EADDRINUSE:
                    return False  # (IPv6 switched off on the host is not "in use")
    return True


def _kernel_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port() -> int:
    """A localhost TCP port nothing listens on, not handed out before in this run."""
    if not _POOL:
        return _kernel_port()
    for _ in range(len(_POOL)):
        port = next(_PORTS)
        if _is_free(port):
            return port
    raise RuntimeError(f"no free TCP port in {_POOL}")


def free_ports(n: int) -> list[int]:
    return [free_port() for _ in range(n)]
