"""The default checkpoint cadence (issue 28): checkpoints take at most 2 % of the SCF's time, the first
due one is written once the SCF has run FIRST_CHECKPOINT_AFTER seconds, an explicit ``checkpoint_every``
is kept exactly."""
import pytest

from pwsim import runner


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(runner.time, "perf_counter", c)
    return c


def _written(cadence, clock, step_seconds, write_seconds, iterations=60):
    out = []
    for it in range(1, iterations + 1):
        clock.now += step_seconds
        if cadence.due(it):
            out.append(it)
            clock.now += write_seconds
            cadence.wrote(write_seconds)
    return out


def test_budget_keeps_checkpoints_within_two_percent(clock):
    cadence = runner.CheckpointCadence(3, budget=True)
    written = _written(cadence, clock, step_seconds=1.0, write_seconds=0.4)
    assert written[0] == 30  # the first due one after FIRST_CHECKPOINT_AFTER = 30 s of SCF
    assert all(w % 3 == 0 for w in written) and len(written) < 20
    # each one after the first was within the share when it was decided
    assert cadence.spent - cadence.last <= runner.CHECKPOINT_TIME_SHARE * (clock.now - 100.0)
    assert len(written) >= 2  # and they keep coming: a long run stays resumable


def test_short_run_writes_no_checkpoint(clock):
    """A run of many quick iterations that ends within FIRST_CHECKPOINT_AFTER: nothing to resume."""
    cadence = runner.CheckpointCadence(3, budget=True)
    assert _written(cadence, clock, step_seconds=0.9, write_seconds=0.15, iterations=30) == []
    assert runner.FIRST_CHECKPOINT_AFTER <= 30.0  # a killed run loses at most half a minute


def test_slow_iterations_checkpoint_every_n(clock):
    cadence = runner.CheckpointCadence(3, budget=True)
    assert _written(cadence, clock, step_seconds=60.0, write_seconds=0.4, iterations=12) == [3, 6, 9, 12]


def test_explicit_cadence_and_off(clock):
    assert _written(runner.CheckpointCadence(1, budget=False), clock, 1.0, 0.9, iterations=5) == [1, 2, 3, 4, 5]
    assert _written(runner.CheckpointCadence(0, budget=True), clock, 1.0, 0.0, iterations=9) == []


def test_hybrid_boundaries_follow_the_budget(clock):
    """A hybrid's converged inner SCFs: always written with an explicit cadence, never when off, and
    with the default one only once the run has gone FIRST_CHECKPOINT_AFTER seconds (then within the
    share), not at every boundary of a short run."""
    assert runner.CheckpointCadence(1, budget=False).boundary_due()
    assert not runner.CheckpointCadence(0, budget=True).boundary_due()
    cadence = runner.CheckpointCadence(3, budget=True)
    clock.now += 2.0
    assert not cadence.boundary_due()  # an 8 s molecule: its six boundaries wrote 3 % of its time
    clock.now += runner.FIRST_CHECKPOINT_AFTER
    assert cadence.boundary_due()
    cadence.wrote(1.0)
    clock.now += 1.0
    assert not cadence.boundary_due()  # 1 s written of 33 s: over the 2 % share
