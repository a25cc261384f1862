"""The Locust gRPC load generator for the user service (``make load``, ``make load-ui``).

Locust runs as ``python -m loadtest`` (``loadtest/__main__.py``): threads unpatched, so that
grpc.aio can run on gevent's hub. Under plain ``locust``, which patches threads, grpc.aio's
poller would be a greenlet and every call would hang — so this package refuses to load there.
"""

import gevent.monkey

if gevent.monkey.is_module_patched("threading"):
    raise SystemExit(
        "the load generator runs Locust without patching threads: start it with"
        " `python -m loadtest -f loadtest/locustfile.py …` (make load, make load-ui), not `locust`"
    )
