"""`make incident`, end to end on a real native stack of its own (two replicas reading a copy of
the flag file): the first wave of stories at once — errors, latency, a feed stall and a memory
leak strike different methods, signals and replicas. For each, the fault goes on, Prometheus sees
it (the dashboards' fault marks), the alert that must notice it fires within its bound, an
exemplar from the fault's window leads to a trace in Jaeger whose span names the flag
(OpenTelemetry's ``feature_flag.*`` attributes) where calls carry the fault, and once the fault is
off the alert resolves. The other waves run the same code (``make incident all``; their figures
are in the README): they take ~10 minutes more than this suite can spend."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts import gameday, incident
from scripts.faults import read
from scripts.stack.plan import FLAGS_FILE
from tests.stack.conftest import RunningStack, native_stack
from tests.stack.test_configs import alert_rules

WAVE = 1


@pytest.fixture(scope="module")
def incident_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningStack, incident.Stack]]:
    root = tmp_path_factory.mktemp("incident-stack")
    flags_file = root / "flags.flagd.json"
    shutil.copy(FLAGS_FILE, flags_file)
    with native_stack(root, flags_file, replicas=2) as running:
        yield running, incident.Stack.found(flags_file, running.prometheus, running.jaeger)


@pytest.mark.timeout(900)
def test_each_story_goes_from_fault_to_alert_to_trace_and_back(
    incident_stack: tuple[RunningStack, incident.Stack], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running, stack = incident_stack
    assert list(stack.replicas) == ["user-service", "user-service-2"]
    stories = [story for story in incident.STORIES.values() if story.wave == WAVE]
    assert {"errors", "latency", "feed-stall"} <= {story.name for story in stories}
    lines: list[str] = []
    with incident.background_load(running.plan, running.credentials, stack.flags_file, 900, tmp_path):
        time.sleep(incident.BASELINE_SECONDS)
        results = incident.run_stories(stories, stack, lines.append)
    with capsys.disabled():
        print("\n" + "\n".join(lines) + "\n" + incident.summary(results))
    failed = {
        name: str(result) for name, result in results.items() if not isinstance(result, incident.Timeline)
    }
    assert not failed, failed
    for story in stories:
        timeline = results[story.name]
        assert isinstance(timeline, incident.Timeline)
        steps = list(timeline.marks)
        assert steps[:2] == ["fault on", "seen by Prometheus"], (story.name, steps)
        assert "firing" in steps, (story.name, steps)
        follow = "exemplar → trace" if story.exemplars else "no exemplar"
        assert steps[-3:] == [follow, "fault off", "resolved"], (story.name, steps)
    # An exemplar's trace outlives the slowest story in the store (it keeps the newest traces).
    kept = incident.retention_seconds(stack.prometheus)
    assert kept is not None
    assert kept > 600, f"Jaeger would evict an exemplar's trace after {kept:.0f} s"
    # Every fault is off again: the file reads as the repository's.
    assert read(stack.flags_file) == json.loads(FLAGS_FILE.read_text())


def test_a_story_refuses_to_start_while_its_alert_is_active(
    incident_stack: tuple[RunningStack, incident.Stack], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Otherwise a leftover alert would be taken for the fault's."""
    _, stack = incident_stack
    story = incident.STORIES["errors"]
    monkeypatch.setattr(
        stack.prometheus, "alerts", lambda: [{"labels": {"alertname": story.alert}, "state": "firing"}]
    )
    with pytest.raises(incident.StoryFailedError, match="already active"):
        incident.run_story(story, stack, lambda _: None)
    assert read(stack.flags_file)["flags"][story.flag]["defaultVariant"] == "off"


def test_every_fault_flag_has_a_story() -> None:
    """`make incident all` covers every flag of the repository's file."""
    flags = set(read(FLAGS_FILE)["flags"])
    assert flags == {flag for story in incident.STORIES.values() for flag, _ in story.flags}


def test_every_story_waits_for_an_alert_the_rules_define() -> None:
    alerts = {str(rule["alert"]) for rule in alert_rules()}
    for story in incident.STORIES.values():
        assert story.alert is None or story.alert in alerts, story


def test_a_gameday_draws_distinct_faults_in_the_order_its_seed_fixes() -> None:
    """`make gameday SEED=N` replays: the same seed, the same faults in the same order; a stack
    of one replica is never dealt a fault that needs two."""
    assert gameday.plan(7, 4, replicas=2) == gameday.plan(7, 4, replicas=2)
    assert len({story.name for story in gameday.plan(7, 4, replicas=2)}) == 4
    assert {story.name for story in gameday.plan(1, 99, replicas=2)} == set(incident.STORIES)
    assert all(story.needs_replicas == 1 for story in gameday.plan(3, 99, replicas=1))
    assert "not-ready" not in {story.name for story in incident.runnable(1)}  # `make incident` skips it
