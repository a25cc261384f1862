"""Messages per call, by Locust row: what Locust's statistics cannot hold.

Locust's one size column ("Average size (bytes)", "Average Content Size" in its CSV) holds each
call's payload — the serialized bytes received — as its header says. How many messages a call
carried (a batch's users, a lookup's answers, a subscription's events) is counted here from the
``messages`` the request event's ``context`` names (absent: one), summed over Locust's worker
processes with its own worker-report events, and written beside Locust's CSV as
``<csv prefix>_messages.csv`` (``Type,Name,Calls,Messages``) for ``loadtest.report``'s table.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Any

from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from loadtest.report import MESSAGES_SUFFIX

REPORT_KEY = "loadtest_messages"


class MessageTally:
    """Calls and messages per row (``type\\tname``: the key survives Locust's messaging)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.messages: Counter[str] = Counter()

    def record(self, request_type: str, name: str, context: Any = None, **_: Any) -> None:
        key = f"{request_type}\t{name}"
        self.calls[key] += 1
        self.messages[key] += context.get("messages", 1) if context else 1

    def drain(self) -> dict[str, list[int]]:
        """What a worker sends the master: its counts since its last report."""
        counts = {key: [self.calls[key], self.messages[key]] for key in self.calls}
        self.calls.clear()
        self.messages.clear()
        return counts

    def merge(self, counts: dict[str, list[int]]) -> None:
        for key, (calls, messages) in counts.items():
            self.calls[key] += calls
            self.messages[key] += messages

    def write(self, path: Path) -> None:
        with path.open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["Type", "Name", "Calls", "Messages"])
            for key in sorted(self.calls):
                writer.writerow([*key.split("\t", 1), self.calls[key], self.messages[key]])


def attach(environment: Environment) -> None:
    """Counts in this process (a worker reports to its master); the process that writes the CSV
    (the master, or the only process) writes the messages file beside it when Locust quits."""
    tally = MessageTally()
    events, runner = environment.events, environment.runner
    if not isinstance(runner, MasterRunner):
        events.request.add_listener(tally.record)  # type: ignore[no-untyped-call]
    if isinstance(runner, WorkerRunner):

        def report(client_id: str, data: dict[str, Any]) -> None:
            data[REPORT_KEY] = tally.drain()

        events.report_to_master.add_listener(report)  # type: ignore[no-untyped-call]
        return

    def merge(client_id: str, data: dict[str, Any]) -> None:
        tally.merge(data.get(REPORT_KEY, {}))

    events.worker_report.add_listener(merge)  # type: ignore[no-untyped-call]
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if prefix:

        def write(**_: Any) -> None:
            tally.write(Path(f"{prefix}{MESSAGES_SUFFIX}"))

        events.quitting.add_listener(write)  # type: ignore[no-untyped-call]
