"""The measured window of a capacity run, taken inside Locust (imported by the benchmark's
locustfiles, never run on its own)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import gevent
from locust import events
from locust.env import Environment


@events.test_start.add_listener  # type: ignore[untyped-decorator]
def _measure_window(environment: Environment, **_: Any) -> None:
    """Counts requests and this process's CPU seconds over a steady window (after
    ``BENCH_WARMUP`` s, for ``BENCH_DURATION`` s) and writes them to ``BENCH_WINDOW``:
    measured inside Locust, so the count and the CPU cover exactly the same interval."""
    path = os.environ.get("BENCH_WINDOW")
    if not path:
        return

    def measure() -> None:
        gevent.sleep(float(os.environ["BENCH_WARMUP"]))
        cpu, requests = time.process_time(), environment.stats.total.num_requests
        gevent.sleep(float(os.environ["BENCH_DURATION"]))
        window = {
            "cpu": time.process_time() - cpu,
            "requests": environment.stats.total.num_requests - requests,
        }
        Path(path).write_text(json.dumps(window))

    gevent.spawn(measure)
