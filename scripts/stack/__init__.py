"""The observability stack around the service: ``make up`` / ``make down`` / ``make status``.

With a Docker engine, the stack is docker-compose.yml. Without one, the same components at
the same versions (scripts/install-tools.sh builds them) run as native processes on loopback,
with their pid and log files under ``.stack/`` — the way CI and the end-to-end tests run it.
"""
