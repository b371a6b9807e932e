"""TurnWatch: which busy sessions have been silent long enough to ask about, and which
sessions taken as idle turned out to be alive."""

from __future__ import annotations

from openchamber.store import Patch, Store
from openchamber.turns import BUSY, TurnWatch

SID = "ses_1"


def busy_store(*parts: dict[str, object]) -> Store:
    store = Store()
    store.set_status(SID, BUSY)
    if parts:
        info = {"id": "msg_1", "sessionID": SID, "role": "assistant", "time": {"created": 1}}
        store.load_messages(SID, [{"info": info, "parts": list(parts)}])
    return store


def append(text: str = "x") -> Patch:
    return {
        "op": "part.text.append",
        "sessionID": SID,
        "messageID": "msg_1",
        "partID": "prt_1",
        "field": "text",
        "text": text,
    }


def test_a_busy_session_is_stalled_after_the_stall_since_its_last_progress() -> None:
    watch, store = TurnWatch(stall=10), busy_store()
    watch.note([append()], now=100)
    assert watch.stalled(store, now=109) == set()
    assert watch.stalled(store, now=110) == {SID}
    watch.note([append()], now=111)
    assert watch.stalled(store, now=115) == set()


def test_a_busy_session_never_heard_of_is_timed_from_first_sight() -> None:
    watch, store = TurnWatch(stall=10), busy_store()
    assert watch.stalled(store, now=500) == set()
    assert watch.stalled(store, now=510) == {SID}


def test_an_idle_session_or_a_running_tool_is_never_stalled() -> None:
    watch = TurnWatch(stall=10)
    tool = {
        "id": "prt_t",
        "messageID": "msg_1",
        "sessionID": SID,
        "type": "tool",
        "tool": "bash",
        "state": {"status": "running", "input": {}},
    }
    assert watch.stalled(busy_store(tool), now=0) == set()
    assert watch.stalled(busy_store(tool), now=1000) == set()
    assert watch.stalled(Store(), now=1000) == set()


def test_a_session_taken_as_idle_that_shows_progress_is_revived_once() -> None:
    watch = TurnWatch(stall=10)
    watch.presume_idle(SID)
    idle: Patch = {"op": "session.status", "sessionID": SID, "status": {"type": "idle"}}
    assert watch.note([idle], now=1) == set()  # our own idle patch is not progress
    assert watch.note([append()], now=2) == {SID}
    assert watch.note([append()], now=3) == set()


def test_busy_status_is_progress_and_a_removed_session_is_forgotten() -> None:
    watch = TurnWatch(stall=10)
    busy: Patch = {"op": "session.status", "sessionID": SID, "status": BUSY}
    watch.note([busy], now=50)
    assert watch.heard_since(SID, 49)
    assert not watch.heard_since(SID, 50)
    watch.note([{"op": "session.remove", "sessionID": SID}], now=60)
    assert not watch.heard_since(SID, 0)
