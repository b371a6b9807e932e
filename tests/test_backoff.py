"""Full-jitter exponential backoff: bounded, growing ceilings, reset."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from openchamber.backoff import Backoff


@given(st.integers(0, 2**32), st.integers(1, 200))
def test_delays_stay_under_the_growing_capped_ceiling(seed: int, attempts: int) -> None:
    backoff = Backoff(base=0.5, cap=30.0, rng=random.Random(seed))
    for attempt in range(attempts):
        assert 0 <= backoff.next() <= min(30.0, 0.5 * 2**attempt)


def test_reset_starts_over() -> None:
    backoff = Backoff(base=1.0, cap=100.0, rng=random.Random(1))
    for _ in range(10):
        backoff.next()
    backoff.reset()
    assert backoff.next() <= 1.0


def test_jitter_spreads_clients() -> None:
    delays = {round(Backoff(rng=random.Random(seed), attempt=5).next(), 6) for seed in range(50)}
    assert len(delays) == 50
