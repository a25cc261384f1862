"""Locust for this project's gRPC users: ``python -m loadtest -f loadtest/locustfile.py …``.

The same command line as ``locust``, with gevent patching only what Locust itself needs — time
(its waits) and os (the fork of ``--processes``) — and not threads, so that grpc.aio can run on
gevent's hub (``loadtest.hub_loop``) and the OpenTelemetry exporters run on native threads, off
the loop that times the calls.
"""

from __future__ import annotations

import os

os.environ["LOCUST_SKIP_MONKEY_PATCH"] = "1"  # read when locust is imported, below

from gevent import monkey

monkey.patch_time()
monkey.patch_os()

from locust.main import main  # noqa: E402

if __name__ == "__main__":
    main()  # type: ignore[no-untyped-call]
