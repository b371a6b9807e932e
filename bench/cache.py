"""Cache benchmark: what writing behind the store costs the stream path.

The stream path is: a normalized event into the store, its patches into the bridge's
feed (ring + wake-up). With a cache, the feed also hands each patch batch to
`CacheWriter.note`, which only marks what changed; the writing itself happens later, a
batch at a time, in a worker thread. Measured in one run, on the same prebuilt events
(a 200 KB reply in 20k deltas, with its message and part updates):

- the stream path without a cache, and with the cache writer listening;
- a flush that writes 1,000 settled messages of ~1 KB to the SQLite file (WAL), which
  runs off the event loop: its time is what the worker thread spends, not the stream.

    python -m bench cache
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from bench._common import Case, best_of, table, verdict
from openchamber.bridge.feed import Feed
from openchamber.cache import Cache
from openchamber.persist import CacheWriter
from openchamber.protocol import Event, MessageUpdated, PartDelta, PartUpdated
from openchamber.store import Store

SESSION = "ses_bench"
DELTAS = 20_000
FLUSHED_MESSAGES = 1000
REPEATS = 5
# "No measurable latency": what the cache adds per event, next to the ~100 µs or more
# between a server's frame and a view's patch.
TARGET_ADDED_US = 1.0

PLAIN = "stream path, no cache"
CACHED = "stream path, cache writer listening"


def reply_events(number: int) -> list[Event]:
    """One assistant reply: its message, a text part, `DELTAS` deltas, the part's end."""
    message = f"msg_{number:06d}"
    part = f"prt_{number:06d}"
    info = {"id": message, "sessionID": SESSION, "role": "assistant", "time": {"created": 1}}
    start = {"id": part, "sessionID": SESSION, "messageID": message, "type": "text"}
    events: list[Event] = [
        MessageUpdated(SESSION, info),
        PartUpdated(SESSION, message, {**start, "text": "", "time": {"start": 1}}),
    ]
    events += [PartDelta(SESSION, message, part, "text", "0123456789") for _ in range(DELTAS)]
    final = {**start, "text": "0123456789" * DELTAS, "time": {"start": 1, "end": 2}}
    events.append(PartUpdated(SESSION, message, final))
    events.append(MessageUpdated(SESSION, {**info, "time": {"created": 1, "completed": 2}}))
    return events


def stream_path(events: list[Event], with_cache: Path | None) -> Case[int]:
    def prepare() -> Callable[[], int]:
        store = Store()
        feed = Feed(store, dict)
        if with_cache is not None:
            writer = CacheWriter(Cache(with_cache / f"{id(store)}.db", "bench"), store)
            feed.listeners.append(writer.note)

        def run() -> int:
            for event in events:
                feed.add(store.apply(event))
            return feed.cursor

        return run

    return prepare


def flush_case(directory: Path) -> Case[None]:
    """The worker thread's part of a flush: one transaction of settled messages."""

    def prepare() -> Callable[[], None]:
        rows: list[tuple[str, str, dict[str, Any] | None]] = []
        for number in range(FLUSHED_MESSAGES):
            message = f"msg_{number:06d}"
            entry = {
                "info": {"id": message, "sessionID": SESSION, "role": "user"},
                "parts": [{"id": f"prt_{number:06d}", "type": "text", "text": "x" * 1000}],
            }
            rows.append((SESSION, message, entry))
        cache = Cache(directory / f"flush-{len(list(directory.iterdir()))}.db", "bench")
        return lambda: cache.save([(SESSION, {"id": SESSION})], rows)

    return prepare


def run() -> dict[str, Any]:
    events = reply_events(1)

    async def measure(directory: Path) -> dict[tuple[str, str], tuple[float, int]]:
        cases = {PLAIN: stream_path(events, None), CACHED: stream_path(events, directory)}
        return best_of(cases, REPEATS)

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        timed = anyio.run(measure, directory)
        flushed = best_of({"flush": flush_case(directory)}, 3)
    plain, cached = timed[PLAIN][0], timed[CACHED][0]
    return {
        "events": len(events),
        "plain_s": plain,
        "cached_s": cached,
        "overhead": cached / plain - 1,
        "flush_s": flushed["flush"][0],
        "flushed_messages": FLUSHED_MESSAGES,
    }


def report(numbers: dict[str, Any]) -> str:
    events = numbers["events"]
    added_us = (numbers["cached_s"] - numbers["plain_s"]) / events * 1e6
    rows = [
        [PLAIN, f"{numbers['plain_s'] * 1000:.1f}", f"{numbers['plain_s'] / events * 1e6:.2f}"],
        [CACHED, f"{numbers['cached_s'] * 1000:.1f}", f"{numbers['cached_s'] / events * 1e6:.2f}"],
    ]
    lines = [
        f"Cache writes behind the store: {events:,} events of one 200 KB reply, best of {REPEATS}",
        *table(["path", "ms", "µs/event"], rows),
        f"  => cache on the stream path: {numbers['overhead']:+.1%}, "
        f"{added_us:+.2f} µs per event; "
        + verdict(added_us, TARGET_ADDED_US, at_most=True, unit=" µs"),
        f"  off the loop (worker thread): one flush of {numbers['flushed_messages']:,} settled "
        f"1 KB messages takes {numbers['flush_s'] * 1000:.0f} ms",
    ]
    return "\n".join(lines)
