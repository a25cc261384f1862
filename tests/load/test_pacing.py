"""Pacing of the CRUD users (``loadtest.pacing``): a rate per user, a phase per user."""

from __future__ import annotations

import itertools

import pytest

from loadtest.pacing import Paced, paced


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class User:
    """Stands for a Locust user: pacing keys on the object."""


def test_users_made_at_the_same_instant_call_at_phases_spread_over_the_period() -> None:
    """Locust's constant_throughput anchors every user to its creation, so a spawn batch calls
    in one burst per period; here each user gets a phase of its own, evenly spread."""
    clock = Clock()
    pacing = Paced(10, clock)
    users = [User() for _ in range(200)]
    phases = [pacing.wait(user) for user in users]
    assert all(0 <= phase <= 0.1 for phase in phases)
    busiest_10ms = max(sum(1 for p in phases if k / 100 <= p < (k + 1) / 100) for k in range(10))
    assert busiest_10ms <= 0.11 * len(users)  # 10 % each; phase-locked users: 100 % in one
    gaps = [b - a for a, b in itertools.pairwise(sorted(phases[:50]))]
    assert min(gaps) > 0.1 / 50 / 3  # no two of 50 users within a third of an even spacing


def test_a_user_keeps_its_phase_whatever_its_calls_take() -> None:
    clock = Clock()
    pacing = Paced(10, clock, phase=lambda period: 0.03)
    user = User()
    first_due = clock.now + pacing.wait(user)
    for n, call_seconds in enumerate([0.001, 0.05, 0.0, 0.09], start=1):
        clock.now = first_due + (n - 1) * 0.1 + call_seconds  # the call took this long
        assert clock.now + pacing.wait(user) == pytest.approx(first_due + n * 0.1)


def test_a_user_behind_skips_the_slots_it_missed_instead_of_bursting() -> None:
    clock = Clock()
    pacing = Paced(10, clock, phase=lambda period: 0.0)
    user = User()
    pacing.wait(user)  # due at 100.0
    clock.now = 100.35  # a call took 350 ms: slots 100.1, 100.2, 100.3 are gone
    assert pacing.wait(user) == pytest.approx(0.05)  # next slot of its phase: 100.4


def test_paced_is_a_function_locust_binds_to_the_user() -> None:
    class PacedUser:
        wait_time = paced(5)

    assert 0 <= PacedUser().wait_time() <= 0.2


def test_a_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Paced(0)
