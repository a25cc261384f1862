"""The one failure both ways of serving report alike: the gRPC address cannot be bound."""

from __future__ import annotations


class PortInUseError(Exception):
    """The gRPC address cannot be bound: another process listens there (another server
    included), or the address is not this host's. The message names the address."""
