"""Ports: the one failure both ways of serving report alike (the gRPC address cannot be
bound), and a free loopback port for whatever a tool starts beside the service."""

from __future__ import annotations

import random
import socket


class PortInUseError(Exception):
    """The gRPC address cannot be bound: another process listens there (another server
    included), or the address is not this host's. The message names the address."""


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range (32768-60999): a port taken
    from that range could be handed to some outgoing connection before the server binds it,
    and the server (no SO_REUSEPORT) would then refuse to start."""
    for _ in range(100):
        port = random.randrange(20_000, 32_000)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")
