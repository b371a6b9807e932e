"""Retry delays: exponential backoff with full jitter, capped (shared by client and stream)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """`next()` gives the delay before attempt n+1: uniform in [0, min(cap, base * 2**n)].

    Full jitter spreads many clients' reconnects after a server restart instead of
    bunching them. `reset()` after a connection stayed healthy.
    """

    base: float = 0.5
    cap: float = 30.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(self.attempt, 32)))
        self.attempt += 1
        return self.rng.uniform(0, ceiling)

    def reset(self) -> None:
        self.attempt = 0
