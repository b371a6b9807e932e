"""Store benchmark: streamed text applied into one part, against naive reducers.

1.2+ servers stream a reply as `message.part.delta` events; the store appends each to its
part. Measured in one run, on the same prebuilt `PartDelta` events:

- openchamber's ``Store.apply`` (which also returns a patch per delta), plain and with an
  event id on every delta as 1.18.x sends them (the store then also deduplicates ids);
- a naive mutable reducer, ``parts[id]["text"] += delta``: the obvious implementation;
- a naive immutable reducer, ``parts[id] = {**part, "text": part["text"] + delta}``, as
  many UI stores do.

Sizes: a 200 KB reply in 20k deltas, 400 KB in 40k (naive reducers copy the whole text
per delta, so doubling the reply shows whether time per delta grows with it), and 10 MB in
1M deltas (openchamber only: the naive ones would copy ~5 TB). Memory comes from a
separate run under tracemalloc: the peak while applying, and what is left once applied
and once the text has been read.

Then the end of a 1.0.x-style reply: the old servers send the whole part again with each
piece (`message.part.updated` with the text so far and `delta`); a 34 KB reply in 1000
pieces, timed per update over the whole reply and over its last 100 updates.

    python -m bench store         # or: python -m bench.store
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from bench._common import Case, best_of, meets, table, verdict
from openchamber.protocol import JSON, MessageUpdated, PartDelta, PartUpdated
from openchamber.store import Store

SESSION, MESSAGE, PART = "ses_bench", "msg_bench", "prt_bench"
PROSE = (
    "The store keeps every streamed reply exact while the views that show it sleep, "
    "reload or fall behind; a delta is appended, never re-copied. "
)
DELTA_CHARS = 10
# (label, number of deltas, best-of repeats)
DELTA_RUNS: list[tuple[str, int, int]] = [
    ("200 KB reply in 20,000 deltas", 20_000, 5),
    ("400 KB reply in 40,000 deltas", 40_000, 3),
    ("10 MB reply in 1,000,000 deltas", 1_000_000, 2),
]
NAIVE_MAX_DELTAS = 40_000  # beyond this the naive reducers' O(n²) copying takes minutes
TARGET_DELTAS_PER_S = 500_000

CUMULATIVE_CHARS = 34_000
CUMULATIVE_PIECES = 1000
CUMULATIVE_TAIL = 100  # "the end of the reply": its last updates, on a ~34 KB part
CUMULATIVE_REPEATS = 20

STORE = "openchamber Store"
STORE_IDS = "openchamber Store, event ids (1.18 wire)"
NAIVE = 'naive: part["text"] += delta'
IMMUTABLE = 'naive immutable: {**part, "text": text + delta}'
BASELINE = NAIVE

# A reducer under test: make() gives (apply one event, read the part's text).
Reducer = Callable[[], tuple[Callable[[Any], object], Callable[[], str]]]


def reply_text(chars: int) -> str:
    return (PROSE * (chars // len(PROSE) + 1))[:chars]


def new_part(text: str = "") -> JSON:
    return {
        "id": PART,
        "sessionID": SESSION,
        "messageID": MESSAGE,
        "type": "text",
        "text": text,
        "time": {"start": 1},
    }


# ---------------------------------------------------------------------- reducers


def store_reducer() -> tuple[Callable[[Any], object], Callable[[], str]]:
    """A Store holding the assistant message and its empty, streaming text part."""
    store = Store()
    store.apply(MessageUpdated(SESSION, {"id": MESSAGE, "sessionID": SESSION, "role": "assistant"}))
    store.apply(PartUpdated(SESSION, MESSAGE, new_part()))
    return store.apply, lambda: store.part_text(PART) or ""


def naive_mutable(parts: dict[str, JSON], event: PartDelta) -> None:
    parts[event.part_id][event.field] += event.delta


def naive_immutable(parts: dict[str, JSON], event: PartDelta) -> None:
    part = parts[event.part_id]
    parts[event.part_id] = {**part, event.field: part[event.field] + event.delta}


def naive_replace(parts: dict[str, JSON], event: PartUpdated) -> None:
    """The naive answer to a cumulative update: take the part as sent."""
    parts[event.part["id"]] = event.part


def dict_reducer(
    reduce: Callable[[dict[str, JSON], Any], None],
) -> Reducer:
    def make() -> tuple[Callable[[Any], object], Callable[[], str]]:
        parts = {PART: new_part()}
        return partial(reduce, parts), lambda: str(parts[PART]["text"])

    return make


# (name, reducer, events carry ids)
DELTA_REDUCERS: list[tuple[str, Reducer, bool]] = [
    (STORE, store_reducer, False),
    (STORE_IDS, store_reducer, True),
    (NAIVE, dict_reducer(naive_mutable), False),
    (IMMUTABLE, dict_reducer(naive_immutable), False),
]


# ---------------------------------------------------------------------- events


def delta_events(text: str, with_ids: bool) -> Iterator[PartDelta]:
    for n, i in enumerate(range(0, len(text), DELTA_CHARS)):
        yield PartDelta(
            SESSION,
            MESSAGE,
            PART,
            "text",
            text[i : i + DELTA_CHARS],
            event_id=f"evt_{n:012d}" if with_ids else None,
        )


def cumulative_events(text: str, with_delta: bool) -> list[PartUpdated]:
    """The 1.0.x wire shape: the whole part so far with each piece."""
    size = len(text) // CUMULATIVE_PIECES
    events = []
    for end in range(size, len(text) + 1, size):
        piece = text[end - size : end]
        part = new_part(text[:end])
        events.append(PartUpdated(SESSION, MESSAGE, part, piece if with_delta else None))
    return events


# ---------------------------------------------------------------------- measurements


def applying(make: Reducer, events: list[Any], first: int = 0) -> Case[Callable[[], str]]:
    """A case: a fresh reducer given ``events[:first]`` untimed, then the rest, timed."""

    def prepare() -> Callable[[], Callable[[], str]]:
        apply, read = make()
        for event in events[:first]:
            apply(event)
        rest = events[first:]

        def timed() -> Callable[[], str]:
            for event in rest:
                apply(event)
            return read

        return timed

    return prepare


def memory(make: Reducer, text: str, with_ids: bool) -> dict[str, int]:
    """Bytes traced by tracemalloc while the deltas, made one at a time, are applied."""
    gc.collect()
    tracemalloc.start()
    try:
        apply, read = make()
        for event in delta_events(text, with_ids):
            apply(event)
        retained, peak = tracemalloc.get_traced_memory()
        final = read()
        after_read = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    if final != text:
        raise AssertionError("the reducer lost text")
    return {"peak": peak, "retained": retained, "after_read": after_read}


def bench_deltas(count: int, repeats: int) -> dict[str, Any]:
    text = reply_text(count * DELTA_CHARS)
    reducers = [
        r for r in DELTA_REDUCERS if r[0].startswith("openchamber") or count <= NAIVE_MAX_DELTAS
    ]
    events = {ids: list(delta_events(text, ids)) for ids in {ids for _, _, ids in reducers}}
    cases = {name: applying(make, events[ids]) for name, make, ids in reducers}
    timings = best_of(cases, repeats)
    seconds_of = {}
    for name, (seconds, read) in timings.items():
        if read() != text:
            raise AssertionError(f"{name} lost text")
        seconds_of[name] = seconds
    del cases, events, timings  # free the events and reducers before the traced runs
    rows: dict[str, dict[str, Any]] = {}
    for name, make, ids in reducers:
        seconds = seconds_of[name]
        rows[name] = {
            "seconds": seconds,
            "deltas_per_s": count / seconds,
            "ns_per_delta": seconds / count * 1e9,
        }
        if not ids:  # with ids the store also keeps a bounded set of recent ids; time only
            rows[name].update(memory(make, text, ids))
        if name.startswith("openchamber"):
            rows[name]["met"] = meets(count / seconds, TARGET_DELTAS_PER_S)
    baseline = rows.get(BASELINE)
    if baseline is not None:
        for row in rows.values():
            row["ratio"] = baseline["seconds"] / row["seconds"]
    return {"deltas": count, "delta_chars": DELTA_CHARS, "text_bytes": len(text), "rows": rows}


def bench_cumulative() -> dict[str, Any]:
    text = reply_text(CUMULATIVE_CHARS)
    events = {
        "openchamber Store, with delta (as 1.0.x sends)": cumulative_events(text, True),
        "openchamber Store, without delta (snapshots only)": cumulative_events(text, False),
        "naive: replace the part as sent": cumulative_events(text, True),
    }
    makes: dict[str, Reducer] = {
        name: store_reducer if name.startswith("openchamber") else dict_reducer(naive_replace)
        for name in events
    }
    tail_from = CUMULATIVE_PIECES - CUMULATIVE_TAIL
    cases: dict[str, Case[Callable[[], str]]] = {}
    for name, evs in events.items():
        cases[name] = applying(makes[name], evs)
        cases[f"{name} (tail)"] = applying(makes[name], evs, tail_from)
    timings = best_of(cases, CUMULATIVE_REPEATS)
    rows: dict[str, dict[str, Any]] = {}
    for name, evs in events.items():
        whole, read = timings[name]
        tail, read_tail = timings[f"{name} (tail)"]
        if read() != text or read_tail() != text:
            raise AssertionError(f"{name} lost text")
        rows[name] = {
            "us_per_update": whole / len(evs) * 1e6,
            "updates_per_s": len(evs) / whole,
            "tail_us_per_update": tail / (len(evs) - tail_from) * 1e6,
        }
    return {
        "text_bytes": len(text),
        "updates": CUMULATIVE_PIECES,
        "tail": CUMULATIVE_TAIL,
        "rows": rows,
    }


def run() -> dict[str, Any]:
    """Run every measurement and return the numbers."""
    return {
        "deltas": [
            {"label": label, **bench_deltas(count, repeats)} for label, count, repeats in DELTA_RUNS
        ],
        "cumulative": bench_cumulative(),
        "target_deltas_per_s": TARGET_DELTAS_PER_S,
    }


# ---------------------------------------------------------------------- report


def report(numbers: dict[str, Any]) -> str:
    lines = [
        "Store: streamed text applied into one part "
        f"({DELTA_CHARS}-character ASCII deltas; memory from a separate run under tracemalloc, "
        "bytes per character of text)"
    ]
    for run_ in numbers["deltas"]:
        text_bytes = run_["text_bytes"]
        rows = []
        for name, row in run_["rows"].items():
            rows.append(
                [
                    name,
                    f"{row['deltas_per_s']:,.0f}",
                    f"{row['ns_per_delta']:,.0f}",
                    f"{row['ratio']:.2f}x" if "ratio" in row else "-",
                    *(
                        [
                            f"{row['peak'] / 1e6:.1f}",
                            f"{row['peak'] / text_bytes:.1f}",
                            f"{row['retained'] / text_bytes:.1f}",
                            f"{row['after_read'] / text_bytes:.1f}",
                        ]
                        if "peak" in row
                        else ["-"] * 4
                    ),
                ]
            )
        lines += [
            "",
            f"{run_['label']} ({text_bytes:,} bytes of text)",
            *table(
                [
                    "reducer",
                    "deltas/s",
                    "ns/delta",
                    f"vs {BASELINE}",
                    "peak MB",
                    "peak B/ch",
                    "kept B/ch",
                    "after read B/ch",
                ],
                rows,
            ),
        ]
        if run_["deltas"] > NAIVE_MAX_DELTAS:
            lines.append(
                "  naive reducers not run at this size: each delta copies the whole text so far"
            )
        for name, row in run_["rows"].items():
            if "met" in row:
                lines.append(
                    f"  => {name}: {row['deltas_per_s']:,.0f} deltas/s; "
                    + verdict(row["deltas_per_s"], numbers["target_deltas_per_s"], unit=" deltas/s")
                )
    cumulative = numbers["cumulative"]
    rows = [
        [
            name,
            f"{row['updates_per_s']:,.0f}",
            f"{row['us_per_update']:.2f}",
            f"{row['tail_us_per_update']:.2f}",
        ]
        for name, row in cumulative["rows"].items()
    ]
    lines += [
        "",
        f"1.0.x-style reply: {cumulative['updates']} cumulative part updates growing to "
        f"{cumulative['text_bytes']:,} bytes (tail: the last {cumulative['tail']} updates)",
        *table(["reducer", "updates/s", "µs/update", "tail µs/update"], rows),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(run()))
