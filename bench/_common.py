"""What the benchmark modules share: interleaved best-of timing, targets, plain tables."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

MiB = 1024 * 1024

# A case prepares one run (untimed) and returns the thunk that is timed.
Case = Callable[[], Callable[[], T]]


def best_of(cases: Mapping[K, Case[T]], repeats: int) -> dict[K, tuple[float, T]]:
    """The fastest of ``repeats`` runs of each case, in seconds, and what that run returned.

    Runs are interleaved (each case once, then each again, ...) so a slow spell of a shared
    machine falls on every case alike, not on one. The garbage collector stays on, as in
    real use, after a full collection before each run.
    """
    best: dict[K, tuple[float, T]] = {}
    for _ in range(repeats):
        for name, case in cases.items():
            thunk = case()
            gc.collect()
            start = time.perf_counter()
            result = thunk()
            seconds = time.perf_counter() - start
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, result)
    return best


def meets(measured: float, goal: float, *, at_most: bool = False) -> bool:
    return measured <= goal if at_most else measured >= goal


def verdict(measured: float, goal: float, *, at_most: bool = False, unit: str = "x") -> str:
    """``target ≥ 3x: met`` or ``target ≥ 3x: NOT MET``."""
    sign = "≤" if at_most else "≥"
    met = meets(measured, goal, at_most=at_most)
    return f"target {sign} {goal:,g}{unit}: {'met' if met else 'NOT MET'}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    """Lines of a plain table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = [
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        return (indent + "  ".join(cells)).rstrip()

    return [line(header), *(line(row) for row in rows)]
