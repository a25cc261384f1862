"""`make incident NAME=...`: one fault's whole story on a running stack, each step checked.

    python -m scripts.incident errors|latency|feed-stall|memory-leak|slow-database|cpu-hog|
                               pool-starvation|not-ready|all [--no-load]

1. load: a background Locust run through the stack (the demo's mix, 2 % of calls traced from the
   generator), and a baseline before the fault;
2. the fault on (``make fault``, aimed at one replica when the story says so), seen by Prometheus
   (the series the dashboards' "Fault flags on" marks come from), then the alert that must notice
   it, from Prometheus's alerts API: pending, firing;
3. where the fault leaves traces: an exemplar of the affected series from the fault's window
   (Prometheus's exemplar API), and its trace in Jaeger, printed as a tree with the span that
   names the flag (OpenTelemetry's ``feature_flag.*`` attributes);
4. the fault off, and the alert resolved.

It prints a timeline (fault on at T; pending at T+x; firing at T+y; the exemplar's trace;
resolved at T+z) and exits 1 when a step misses its bound. ``all`` runs the stories in waves: the
stories of a wave strike signals apart (different methods, alerts, replicas), so they run at once
without one keeping another's alert up.

Bounds. The burn-rate alerts page on 14.4x the budget rate over 1 h *and* 5 min (the SRE
workbook's fast burn, no ``for:``): on a stack with little history, as after ``make demo``, the
1 h ratio is the fault's share of what little traffic there was, so they fire within seconds of
the first scrapes; after a full hour of steady healthy traffic a fault striking half of GetUser
(~30 % of calls) crosses 1.44 % after ~3 min, and a 400 ms ListUsers (~30 % of unary calls slow)
crosses 14.4 % after ~30 min — the rule is the production one, only history differs. They resolve
when the fault's minutes leave the 5-minute window. The other alerts look at 1-2 minute windows
and hold for a minute: they fire about 2 minutes into a fault and resolve 1-2 minutes after it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from itertools import groupby
from pathlib import Path

from devkit.dev_credentials import DevCredentials, ensure_dev_credentials
from scripts.dashboards import FAULTS_ON
from scripts.faults import FlagError, edit, flags_file, turn_off, turn_on
from scripts.stack.observe import JAEGER_MAX_TRACES, Jaeger, Prometheus, Span, eventually, format_tree
from scripts.stack.plan import REPO, StackPlan

SERVICE = 'grpc_service="user.v1.UserService"'
STORE = 'db_client_operation_duration_seconds_bucket{job="user-service"}'
TRACED_SHARE = "0.02"  # of the generator's calls: ~4 traces/s, so Jaeger keeps ~20 min of them
LOAD_USERS = 20
LOAD_SUBSCRIBERS = 4  # of the users: held subscriptions (the slow-consumer story stalls them)
BASELINE_SECONDS = 20.0
SEEN_WITHIN = 30.0  # the flag file read (~1 s) and a scrape (5 s), with room
EXEMPLAR_WITHIN = 60.0  # after firing: a scrape, an exporter flush, a trace to assemble
POLL_SECONDS = 1.0
FIRST, LAST = "first", "last"  # a story's replica, resolved against the stack's replicas


@dataclass(frozen=True)
class Story:
    name: str
    flag: str
    variant: str
    alert: str | None  # None: no alert detects it (a finding; the story shows what moved)
    fire_within: float  # seconds from fault on (without an alert: how long it is watched)
    resolve_within: float  # seconds from fault off
    wave: int
    exemplars: str | None = None  # the series whose exemplars lead to struck calls
    effect: str | None = None  # user_service.fault.effect of the span that names the fault
    replica: str | None = None  # FIRST or LAST: the fault aimed at that replica only
    also: tuple[tuple[str, str], ...] = ()  # other flags on with it (flag, variant)
    needs_replicas: int = 1
    replica_age: float = 0.0  # seconds the struck replica must have run (its alert ignores younger ones)

    @property
    def flags(self) -> tuple[tuple[str, str], ...]:
        return ((self.flag, self.variant), *self.also)


def _buckets(method: str) -> str:
    return f'grpc_server_handling_seconds_bucket{{{SERVICE}, grpc_method="{method}"}}'


STORIES = {
    story.name: story
    for story in (
        # Wave 1: GetUser errors, ListUsers latency, the feed, one replica's memory.
        Story(
            "errors", "userServiceErrors", "getUserUnavailable50", "UserServiceErrorBudgetBurn",
            fire_within=120, resolve_within=360, wave=1, exemplars=_buckets("GetUser"), effect="error",
        ),
        Story(
            "latency", "userServiceLatency", "listUsers400ms", "UserServiceLatencyBudgetBurn",
            fire_within=120, resolve_within=360, wave=1, exemplars=_buckets("ListUsers"), effect="latency",
        ),
        Story(
            "feed-stall", "userServiceFeedStall", "relayPaused", "UserServiceFeedStalled",
            fire_within=180, resolve_within=150, wave=1, exemplars=_buckets("CreateUser"),
            effect="event held",
        ),
        Story(
            "memory-leak", "userServiceMemoryLeak", "leak24MiB", "UserServiceMemoryGrowth",
            fire_within=240, resolve_within=150, wave=1, replica=FIRST, replica_age=90,
        ),
        # Wave 2: one replica's store slowed, the other's core taken.
        Story(
            "slow-database", "userServiceSlowDatabase", "tenPercent150ms", "UserServiceStoreSlow",
            fire_within=180, resolve_within=240, wave=2, exemplars=STORE, effect="slow statement",
            replica=FIRST,
        ),
        Story(
            "cpu-hog", "userServiceCpuHog", "busy90", "UserServiceCpuSaturated",
            fire_within=180, resolve_within=180, wave=2, replica=LAST,
        ),
        # Wave 3: one replica's pool starved (its statements a little slow, as HotROD's), the
        # other out of rotation — which sends the first one all the load.
        Story(
            "pool-starvation", "userServicePoolStarvation", "oneConnection", "UserServiceStoreConnectionWait",
            fire_within=180, resolve_within=240, wave=3, exemplars=STORE, effect="connection wait",
            replica=FIRST, also=(("userServiceSlowDatabase", "statements5ms"),),
        ),
        Story(
            "not-ready", "userServiceNotReady", "notServing", "UserServiceReplicaOutOfRotation",
            fire_within=180, resolve_within=180, wave=3, replica=LAST, needs_replicas=2,
        ),
        # Wave 4, the load generator's: its subscribers read slowly (each is cut off once, then
        # catches up from the outbox and stays behind), then its users are multiplied.
        Story(
            "slow-consumers", "loadGeneratorSlowConsumers", "slowReaders", "UserServiceDeliveryLagging",
            fire_within=360, resolve_within=360, wave=4,
        ),
        # On this 2-core machine the generator itself saturates before the replicas do: no
        # alert sees the spike (a finding); the story prints what moved.
        Story(
            "traffic-spike", "loadGeneratorTrafficSpike", "x4", None,
            fire_within=90, resolve_within=0, wave=5,
        ),
    )
}  # fmt: skip


class StoryFailedError(Exception):
    """A step of a story missed its bound, or the story cannot start; the message says which."""


@dataclass
class Timeline:
    """What happened, in seconds from the fault going on; printed as it happens."""

    story: Story
    say: Callable[[str], None]
    began: float = field(default_factory=time.monotonic)
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, step: str, detail: str = "") -> None:
        self.marks[step] = time.monotonic() - self.began
        self.say(f"[{self.story.name}] T+{self.marks[step]:6.1f} s  {step}{'  ' + detail if detail else ''}")

    def since(self, step: str) -> float:
        return time.monotonic() - self.began - self.marks[step]


@dataclass(frozen=True)
class Stack:
    """What a story reads and writes: the flag file, the two APIs, the replicas (the name fault
    targeting aims at -> Prometheus's ``instance``), in name order."""

    flags_file: Path
    prometheus: Prometheus
    jaeger: Jaeger
    replicas: Mapping[str, str]

    @classmethod
    def found(cls, flags: Path, prometheus: Prometheus, jaeger: Jaeger) -> Stack:
        """The replicas as Prometheus knows them (``user_service_fault_flag`` names each one's
        ``replica``): the same natively and in compose, where replicas are named by host. Waits
        until every replica Prometheus has discovered has reported."""

        def every_replica() -> dict[str, str] | None:
            discovered = prometheus.targets("user-service")
            samples = prometheus.query("max by (replica, instance) (user_service_fault_flag)")
            replicas = {s["metric"]["replica"]: s["metric"]["instance"] for s in samples}
            return replicas if discovered and set(replicas.values()) == discovered else None

        replicas = eventually(every_replica, SEEN_WITHIN)
        if not replicas:
            raise StoryFailedError(
                "Prometheus has no user_service_fault_flag of every replica: is the stack up?"
            )
        return cls(flags, prometheus, jaeger, dict(sorted(replicas.items())))

    def replica(self, story: Story) -> str | None:
        if story.replica is None:
            return None
        names = list(self.replicas)
        return names[0] if story.replica == FIRST else names[-1]


def run_story(story: Story, stack: Stack, say: Callable[[str], None] = print) -> Timeline:
    """One story, start to end; raises StoryFailedError at the first step that misses its bound.
    Its faults are off again whatever happens."""
    if len(stack.replicas) < story.needs_replicas:
        raise StoryFailedError(
            f"needs {story.needs_replicas} replicas, the stack runs {len(stack.replicas)}:"
            f" STACK_REPLICAS={story.needs_replicas} make up"
        )
    replica = stack.replica(story)
    instance = stack.replicas[replica] if replica else None
    if story.alert and _alert_state(stack.prometheus, story.alert, instance) is not None:
        raise StoryFailedError(f"{story.alert} is already active: wait until it resolves")
    _wait_for_age(story, stack.prometheus, instance, say)
    before = _signs(stack.prometheus)
    timeline = Timeline(story, say)
    fault_on = time.time()
    try:
        for flag, variant in story.flags:
            edit(stack.flags_file, partial(turn_on, name=flag, variant=variant, replica=replica))
    except FlagError as error:
        raise StoryFailedError(f"{stack.flags_file}: {error}") from error
    on = ", ".join(f"{flag}={variant}" for flag, variant in story.flags)
    timeline.mark("fault on", on + (f" on {replica}" if replica else ""))
    try:
        if not eventually(lambda: _flag_seen(story, stack.prometheus), SEEN_WITHIN, POLL_SECONDS):
            raise StoryFailedError(f"Prometheus never saw {story.flag}={story.variant} in effect")
        timeline.mark("seen by Prometheus", f"(the dashboards' {FAULTS_ON.name!r} marks)")
        if story.alert is None:
            time.sleep(story.fire_within)
            timeline.mark("no alert", "— a finding: what moved meanwhile:")
            timeline.say(_compare(before, _signs(stack.prometheus)))
        else:
            _wait_for_alert(story, story.alert, stack.prometheus, instance, timeline)
            _follow_an_exemplar(story, stack, fault_on, timeline)
    finally:
        for flag, _ in story.flags:
            edit(stack.flags_file, partial(turn_off, name=flag))
        timeline.mark("fault off")
    if story.alert is None:
        return timeline
    alert = story.alert
    resolved = eventually(
        lambda: _alert_state(stack.prometheus, alert, instance) is None,
        story.resolve_within,
        POLL_SECONDS,
    )
    if not resolved:
        raise StoryFailedError(
            f"{story.alert} still active {story.resolve_within:.0f} s after the fault went off"
        )
    timeline.mark("resolved", story.alert)
    return timeline


def _wait_for_age(
    story: Story, prometheus: Prometheus, instance: str | None, say: Callable[[str], None]
) -> None:
    """Until the struck replica (every replica) has run ``story.replica_age`` seconds."""
    if not story.replica_age:
        return
    selector = f'{{job="user-service", instance="{instance}"}}' if instance else '{job="user-service"}'
    age = prometheus.scalar(f"min(time() - process_start_time_seconds{selector})") or 0.0
    if age < story.replica_age:
        say(
            f"[{story.name}] waiting {story.replica_age - age:.0f} s:"
            f" {story.alert} ignores a replica's first minutes"
        )
        time.sleep(story.replica_age - age)


def _flag_seen(story: Story, prometheus: Prometheus) -> bool:
    return any(
        sample["metric"].get("flag") == story.flag and sample["metric"].get("variant") == story.variant
        for sample in prometheus.query(FAULTS_ON.expr)
    )


def _wait_for_alert(
    story: Story, alert: str, prometheus: Prometheus, instance: str | None, timeline: Timeline
) -> None:
    while timeline.since("fault on") < story.fire_within:
        state = _alert_state(prometheus, alert, instance)
        if state == "pending" and "pending" not in timeline.marks:
            timeline.mark("pending", alert)
        if state == "firing":
            timeline.mark("firing", alert + (f" for {instance}" if instance else ""))
            return
        time.sleep(POLL_SECONDS)
    raise StoryFailedError(f"{alert} did not fire within {story.fire_within:.0f} s of the fault")


# What a story without an alert prints, before the fault and after watching it.
SIGNS = {
    "load generator users": "sum(loadgen_users)",
    "calls/s handled": f"sum(rate(grpc_server_handled_total{{{SERVICE}}}[1m]))",
    "unary p99 (ms)": "1000 * histogram_quantile(0.99, sum by (le) (rate(grpc_server_handling_seconds_bucket"
    f'{{{SERVICE}, grpc_type="unary"}}[1m])))',
    "busiest replica's CPU (cores)": 'max(rate(process_cpu_seconds_total{job="user-service"}[1m]))',
}


def _signs(prometheus: Prometheus) -> dict[str, float | None]:
    return {name: prometheus.scalar(expr) for name, expr in SIGNS.items()}


def _compare(before: dict[str, float | None], after: dict[str, float | None]) -> str:
    def shown(value: float | None) -> str:
        return "-" if value is None else f"{value:,.2f}"

    return "\n".join(
        f"    {name:<30} {shown(before[name]):>10} -> {shown(after[name]):>10}" for name in SIGNS
    )


def _alert_state(prometheus: Prometheus, alert: str, instance: str | None = None) -> str | None:
    """``firing`` if any instance of the alert fires (of ``instance``'s, when given), else
    ``pending`` if one is, else None."""
    states = {
        a["state"]
        for a in prometheus.alerts()
        if a["labels"].get("alertname") == alert and instance in (None, a["labels"].get("instance"))
    }
    return "firing" if "firing" in states else "pending" if "pending" in states else None


def _follow_an_exemplar(story: Story, stack: Stack, since: float, timeline: Timeline) -> None:
    if story.exemplars is None:
        timeline.mark("no exemplar", "a whole-replica fault: no call carries it (its panel tells)")
        return
    found = eventually(lambda: _fault_trace(story, stack, since), EXEMPLAR_WITHIN, POLL_SECONDS)
    if found is None:
        raise StoryFailedError(
            f"no exemplar of {story.exemplars} since the fault led to a trace with a span of"
            f" {story.flag}={story.variant} ({story.effect}) within {EXEMPLAR_WITHIN:.0f} s"
        )
    exemplar_value, spans = found
    timeline.mark(
        "exemplar → trace",
        f"{spans[0].trace_id} (a {float(exemplar_value) * 1000:.1f} ms observation; {len(spans)} spans)",
    )
    timeline.say(_tree_naming_the_fault(story, spans))


def _fault_trace(story: Story, stack: Stack, since: float) -> tuple[str, list[Span]] | None:
    """The newest exemplar since ``since`` whose trace, in Jaeger, has a span naming the fault."""
    assert story.exemplars is not None
    exemplars = stack.prometheus.exemplars(story.exemplars, seconds=time.time() - since + 5)
    recent = [e for e in exemplars if float(e["timestamp"]) >= since]
    for exemplar in sorted(recent, key=lambda e: float(e["timestamp"]), reverse=True)[:40]:
        spans = stack.jaeger.trace(exemplar["labels"]["trace_id"])
        if spans and any(_names_the_fault(story, span) for span in spans):
            return exemplar["value"], spans
    return None


def _names_the_fault(story: Story, span: Span) -> bool:
    return (
        span.tags.get("feature_flag.key") == story.flag
        and span.tags.get("feature_flag.result.variant") == story.variant
        and span.tags.get("user_service.fault.effect") == story.effect
    )


def _tree_naming_the_fault(story: Story, spans: list[Span]) -> str:
    def note(span: Span) -> str:
        return f"   <- {story.flag}={story.variant}" if _names_the_fault(story, span) else ""

    return textwrap.indent(format_tree(spans, note), "    ")


@contextmanager
def background_load(
    plan: StackPlan, credentials: DevCredentials, flags: Path, seconds: float, report_dir: Path
) -> Iterator[None]:
    """A Locust run through the stack for up to ``seconds`` (stopped when the block ends),
    following the load generator's flags in ``flags``. Its own gate does not matter here:
    failures are what some faults are made of."""
    env = {
        **os.environ,
        **credentials.client_env("admin"),
        "USER_SERVICE_TARGET": plan.target,
        "OTEL_EXPORTER_OTLP_ENDPOINT": plan.otlp_endpoint,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": TRACED_SHARE,
        "LOAD_SUBSCRIBERS": str(LOAD_SUBSCRIBERS),
        "LOAD_FLAGS_FILE": str(flags),
    }
    command = [sys.executable, "-m", "loadtest.run", "--users", str(LOAD_USERS)]
    command += ["--spawn-rate", str(LOAD_USERS), "--run-time", f"{int(seconds)}s"]
    command += ["--quiet", "--report-dir", str(report_dir)]
    # A session of its own: loadtest.run starts Locust as its child, and both must stop.
    locust = subprocess.Popen(
        command,
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield
    finally:
        os.killpg(locust.pid, signal.SIGTERM)
        try:
            locust.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(locust.pid, signal.SIGKILL)
            locust.wait()


Results = dict[str, Timeline | StoryFailedError]


def run_stories(stories: list[Story], stack: Stack, say: Callable[[str], None] = print) -> Results:
    """The stories wave by wave, those of a wave at once (a thread each); what each ended with."""
    results: Results = {}

    def one(story: Story) -> None:
        try:
            results[story.name] = run_story(story, stack, say)
        except StoryFailedError as failure:
            say(f"[{story.name}] !! {failure}")
            results[story.name] = failure

    for wave, members in groupby(sorted(stories, key=lambda story: story.wave), key=lambda story: story.wave):
        threads = [threading.Thread(target=one, args=(story,), name=story.name) for story in members]
        say(f"-- wave {wave}: {', '.join(thread.name for thread in threads)}")
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return results


def runnable(replicas: int) -> list[Story]:
    """The stories a stack of ``replicas`` replicas can run."""
    return [story for story in STORIES.values() if story.needs_replicas <= replicas]


def retention_seconds(prometheus: Prometheus) -> float | None:
    """How long a trace stays in Jaeger's memory store at the rate traces arrived over the last
    5 minutes: it keeps the newest ``max_traces``, and every trace here starts at a sampled call
    of the load generator (its CLIENT spans, counted by the Collector's span metrics)."""
    per_second = prometheus.scalar(
        'sum(rate(traces_span_metrics_calls_total{service_name="user-service-loadgen",'
        ' span_kind="SPAN_KIND_CLIENT"}[5m]))'
    )
    return JAEGER_MAX_TRACES / per_second if per_second else None


def summary(results: Results) -> str:
    """Time to detect (fault on → firing) and to resolve (fault off → resolved), per story."""
    lines = [f"{'story':<16} {'alert':<34} {'detected after':>15} {'resolved after off':>19}"]
    for name, result in results.items():
        story = STORIES[name]
        if isinstance(result, StoryFailedError):
            lines.append(f"{name:<16} {story.alert or '-':<34} failed: {result}")
            continue
        marks = result.marks
        if story.alert is None:
            lines.append(f"{name:<16} {'(none: a finding)':<34} {'not detected':>15}")
            continue
        lines.append(
            f"{name:<16} {story.alert:<34} {marks['firing']:>13.1f} s"
            f" {marks['resolved'] - marks['fault off']:>17.1f} s"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("name", choices=[*STORIES, "all"])
    parser.add_argument("--no-load", dest="load", action="store_false", help="the stack already has load")
    args = parser.parse_args(argv)
    plan = StackPlan.load()
    stack = Stack.found(flags_file(), Prometheus(plan.prometheus_url), Jaeger(plan.jaeger_url))
    stories = [STORIES[args.name]]
    if args.name == "all":  # what this stack can run; one story asked by name fails and says why
        stories = runnable(len(stack.replicas))
        for story in STORIES.values():
            if story not in stories:
                print(f"-- {story.name} skipped: needs {story.needs_replicas} replicas (STACK_REPLICAS=2)")
    waves = {story.wave for story in stories}
    longest = sum(
        max(s.fire_within + EXEMPLAR_WITHIN + s.resolve_within for s in stories if s.wave == wave)
        for wave in waves
    )
    print(f"== incident {args.name} on {plan.target}; replicas: {', '.join(stack.replicas)}")
    print(f"   Prometheus {plan.prometheus_url}, Jaeger {plan.jaeger_url}")
    if args.load:
        credentials = ensure_dev_credentials(plan.credentials_dir)
        seconds = BASELINE_SECONDS + longest + 30
        with background_load(plan, credentials, stack.flags_file, seconds, REPO / "reports/incident"):
            print(f"-- {BASELINE_SECONDS:.0f} s of load before the fault ({LOAD_USERS} users)", flush=True)
            time.sleep(BASELINE_SECONDS)
            results = run_stories(stories, stack)
    else:
        results = run_stories(stories, stack)
    print("\n" + summary(results))
    kept = retention_seconds(stack.prometheus)
    if kept is not None:
        print(
            f"\nJaeger keeps its newest {JAEGER_MAX_TRACES:,} traces: at this run's rate an exemplar's trace"
            f" stays findable for ~{kept / 60:.0f} min (more traced calls, less time: jaeger/config.yaml)."
        )
    return 1 if any(isinstance(result, StoryFailedError) for result in results.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
