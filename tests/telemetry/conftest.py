"""Scraping /metrics the way Prometheus does, in either exposition format."""

from __future__ import annotations

import asyncio
import urllib.request

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


async def scrape(port: int | None, accept: str | None = None) -> str:
    assert port is not None, "metrics are not served"
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Accept": accept} if accept else {}
    )

    def fetch() -> str:
        with urllib.request.urlopen(request, timeout=5) as response:
            return str(response.read().decode())

    return await asyncio.to_thread(fetch)
