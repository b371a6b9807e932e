"""Store invariants under generated histories of real shape.

Histories are the real captured streams, disturbed the ways a real client sees them:
duplicated events, reconnect gaps filled by a REST snapshot taken at an arbitrary moment
(with the server's mid-stream trap: a streaming part comes back with empty text), and
stray snapshots mid-stream. The final state must equal REST truth and streamed text must
never shrink except by a removal or a part's final snapshot.
"""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openchamber.protocol import Event, StreamParser
from openchamber.replay import read_capture
from openchamber.store import Store

from .support import CAPTURES, ShrinkWatcher

VERSIONS = ["1.0.152", "1.18.33"]


RAW = {v: read_capture(CAPTURES / f"opencode-{v}.sse.gz") for v in VERSIONS}


def _events(raw: bytes, cuts: list[int] | None = None) -> list[Event]:
    """The capture's events, decoded from chunks cut at `cuts` (byte offsets)."""
    parser = StreamParser()
    bounds = [0, *sorted(set(cuts or [])), len(raw)]
    events: list[Event] = []
    for start, end in pairwise(bounds):
        events += parser.feed(raw[start:end])
    return events


EVENTS = {v: _events(RAW[v]) for v in VERSIONS}
TRUTH: dict[str, dict[str, list[dict[str, Any]]]] = {
    v: json.loads((CAPTURES / f"opencode-{v}.truth.json").read_text()) for v in VERSIONS
}


def rest_snapshot(events: list[Event], upto: int) -> dict[str, list[dict[str, Any]]]:
    """What `GET /session/{id}/message` would answer after `upto` events: streaming parts
    come back with empty text, exactly as the real server does."""
    reference = Store()
    for event in events[:upto]:
        reference.apply(event)
    snapshot = {}
    for session_id in reference.sessions:
        messages = reference.messages(session_id)
        for message in messages:
            for part in message["parts"]:
                timing = part.get("time")
                if isinstance(timing, dict) and "start" in timing and "end" not in timing:
                    part["text"] = ""
        snapshot[session_id] = messages
    return snapshot


def assert_equals_truth(store: Store, truth: dict[str, list[dict[str, Any]]]) -> None:
    for session_id, messages in truth.items():
        assert store.messages(session_id) == messages


disturbance = st.one_of(
    st.tuples(st.just("duplicate"), st.integers(0, 40)),
    st.tuples(st.just("gap"), st.integers(1, 120)),
    st.tuples(st.just("snapshot"), st.just(0)),
)


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_disturbed_history_converges_without_shrinking(version: str, data: st.DataObject) -> None:
    raw = RAW[version]
    cuts = data.draw(st.lists(st.integers(1, len(raw) - 1), max_size=40), label="chunk cuts")
    events = _events(raw, cuts)
    assert events == EVENTS[version]  # random chunk boundaries change nothing
    marks = data.draw(
        st.dictionaries(st.integers(0, len(events) - 1), disturbance, max_size=12), label="marks"
    )
    watcher = ShrinkWatcher()
    index = 0
    while index < len(events):
        watcher.apply(events[index])
        index += 1
        kind, size = marks.get(index - 1, ("", 0))
        if kind == "duplicate":
            watcher.apply(events[max(0, index - 1 - size)])
        elif kind == "gap":
            # A dropped connection: events are lost, then the runner refetches over REST.
            index = min(len(events), index + size)
            watcher.load(rest_snapshot(events, index))
        elif kind == "snapshot":
            watcher.load(rest_snapshot(events, index))
    assert_equals_truth(watcher.store, TRUTH[version])


@pytest.mark.parametrize("version", VERSIONS)
def test_every_event_twice_changes_nothing_the_second_time(version: str) -> None:
    store = Store()
    for event in EVENTS[version]:
        store.apply(event)
        assert store.apply(event) == []
    assert_equals_truth(store, TRUTH[version])


@pytest.mark.parametrize("version", VERSIONS)
def test_snapshot_at_every_moment_never_shortens_text(version: str) -> None:
    events = EVENTS[version]
    watcher = ShrinkWatcher()
    for index, event in enumerate(events, 1):
        watcher.apply(event)
        if index % 7 == 0:
            watcher.load(rest_snapshot(events, index))
    assert_equals_truth(watcher.store, TRUTH[version])
