"""Bounded shutdown of the telemetry exporters."""

from __future__ import annotations

import threading
from collections.abc import Callable


def wait_at_most(timeout: float, work: Callable[[], object], *, name: str) -> None:
    """Runs ``work`` (a provider's flush and shutdown) on a daemon thread and waits for it at
    most ``timeout`` seconds: an exporter retrying a Collector that is down holds no exit."""
    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    thread.join(timeout)
