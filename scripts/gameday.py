"""`make gameday SEED=N`: faults the operator does not choose, found by the alerts alone.

    python -m scripts.gameday [--seed N] [--faults 4] [--seconds 180] [--no-load]

Draws ``--faults`` stories of ``make incident`` (``scripts/incident.py``) in an order fixed by the
seed, and for each: the fault on for ``--seconds`` (then off, whatever happens — bounded and
auto-reverted), every alert that started firing meanwhile with its time to detect, then a quiet
period until no alert fires (bounded too). Unlike an incident it is not told which alert should
fire: the table says which did, and a fault that no alert detected is printed as a finding.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial

from devkit.dev_credentials import ensure_dev_credentials
from scripts.faults import edit, flags_file, turn_off, turn_on
from scripts.incident import BASELINE_SECONDS, POLL_SECONDS, Stack, Story, background_load, runnable
from scripts.stack.observe import Jaeger, Prometheus, eventually
from scripts.stack.plan import REPO, StackPlan

QUIET_WITHIN = 420.0  # a 5-minute window must empty after a fault: the slowest alerts' resolve


@dataclass
class Round:
    story: Story
    replica: str | None
    detected: dict[str, float] = field(default_factory=dict)  # alert -> seconds from fault on
    quiet_after: float | None = None  # seconds from fault off until no alert fired


def plan(seed: int, faults: int, replicas: int) -> list[Story]:
    """``faults`` stories in an order the seed fixes (those the stack can run)."""
    dealt = sorted(runnable(replicas), key=lambda story: story.name)
    return random.Random(seed).sample(dealt, min(faults, len(dealt)))


def firing(prometheus: Prometheus) -> set[str]:
    return {a["labels"]["alertname"] for a in prometheus.alerts() if a["state"] == "firing"}


def play(story: Story, stack: Stack, seconds: float) -> Round:
    replica = stack.replica(story)
    played = Round(story, replica)
    already = firing(stack.prometheus)
    began = time.monotonic()
    try:
        for flag, variant in story.flags:
            edit(stack.flags_file, partial(turn_on, name=flag, variant=variant, replica=replica))
        while (elapsed := time.monotonic() - began) < seconds:
            for alert in firing(stack.prometheus) - already - set(played.detected):
                played.detected[alert] = elapsed
            time.sleep(POLL_SECONDS)
    finally:
        for flag, _ in story.flags:
            edit(stack.flags_file, partial(turn_off, name=flag))
    off = time.monotonic()
    if eventually(lambda: not firing(stack.prometheus), QUIET_WITHIN, POLL_SECONDS * 5):
        played.quiet_after = time.monotonic() - off
    return played


def table(rounds: list[Round]) -> str:
    lines = [f"{'fault':<16} {'aimed at':<16} {'alerts that fired (time to detect)':<60} quiet after off"]
    for played in rounds:
        fired = ", ".join(f"{alert} ({seconds:.0f} s)" for alert, seconds in sorted(played.detected.items()))
        quiet = f"{played.quiet_after:.0f} s" if played.quiet_after is not None else f"> {QUIET_WITHIN:.0f} s"
        lines.append(
            f"{played.story.name:<16} {played.replica or 'every replica':<16}"
            f" {fired or 'NONE — a finding: no alert detects this fault':<60} {quiet}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--faults", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=180.0, help="how long each fault stays on")
    parser.add_argument("--no-load", dest="load", action="store_false", help="the stack already has load")
    args = parser.parse_args(argv)
    stack_plan = StackPlan.load()
    stack = Stack.found(flags_file(), Prometheus(stack_plan.prometheus_url), Jaeger(stack_plan.jaeger_url))
    drawn = plan(args.seed, args.faults, len(stack.replicas))
    print(f"== gameday, seed {args.seed}: {', '.join(story.name for story in drawn)}")
    rounds: list[Round] = []
    longest = BASELINE_SECONDS + (args.seconds + QUIET_WITHIN) * len(drawn) + 60
    with _loaded(args.load, stack_plan, stack, longest):
        for story in drawn:
            print(f"-- {story.name} on for {args.seconds:.0f} s", flush=True)
            rounds.append(play(story, stack, args.seconds))
            print(table(rounds[-1:]).splitlines()[-1], flush=True)
    print("\n" + table(rounds))
    return 0


@contextlib.contextmanager
def _loaded(enabled: bool, stack_plan: StackPlan, stack: Stack, seconds: float) -> Iterator[None]:
    """Background load for the whole game, after its baseline — unless the stack has its own."""
    if not enabled:
        yield
        return
    credentials = ensure_dev_credentials(stack_plan.credentials_dir)
    with background_load(stack_plan, credentials, stack.flags_file, seconds, REPO / "reports/gameday"):
        time.sleep(BASELINE_SECONDS)
        yield


if __name__ == "__main__":
    raise SystemExit(main())
