"""A reference gRPC user service: asyncio server, durable change feed, observability."""

from __future__ import annotations

__version__ = "0.1.0"
