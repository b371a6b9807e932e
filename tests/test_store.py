"""Store behaviours one at a time, with events shaped as the servers send them."""

from __future__ import annotations

from typing import Any

import pytest

from openchamber.protocol import (
    Durable,
    MessageRemoved,
    MessageUpdated,
    PartDelta,
    PartRemoved,
    PartUpdated,
    SessionDeleted,
    SessionIdle,
    SessionStatus,
    SessionUpdated,
    normalize_frame,
    normalize_history_item,
)
from openchamber.store import Store, TextBuffer

SID, MID, PID = "ses_1", "msg_2", "prt_3"


def user(message_id: str = "msg_1") -> MessageUpdated:
    return MessageUpdated(SID, {"id": message_id, "sessionID": SID, "role": "user"})


def assistant(**extra: Any) -> MessageUpdated:
    info = {"id": MID, "sessionID": SID, "role": "assistant", "time": {"created": 1}, **extra}
    return MessageUpdated(SID, info)


def text_part(text: str, *, end: bool = False, part_id: str = PID) -> PartUpdated:
    timing = {"start": 1, "end": 2} if end else {"start": 1}
    part = {"id": part_id, "sessionID": SID, "messageID": MID, "type": "text", "text": text}
    return PartUpdated(SID, MID, {**part, "time": timing})


def delta(text: str, part_id: str = PID) -> PartDelta:
    return PartDelta(SID, MID, part_id, "text", text)


def tool(status: str) -> PartUpdated:
    part = {
        "id": "prt_9",
        "sessionID": SID,
        "messageID": MID,
        "type": "tool",
        "tool": "bash",
        "state": {"status": status},
    }
    return PartUpdated(SID, MID, part)


def streaming_store(text: str = "Hello, world") -> Store:
    store = Store()
    for event in (user(), assistant(), text_part("")):
        store.apply(event)
    for piece in text.split(" "):
        store.apply(delta(piece + " "))
    return store


def test_text_buffer_joins_only_when_read() -> None:
    buffer = TextBuffer("a")
    for _ in range(1000):
        buffer.append("bc")
    assert len(buffer) == 2001
    assert buffer.value == "a" + "bc" * 1000
    buffer.set("")
    assert buffer.value == ""
    assert len(buffer) == 0


def test_deltas_append_and_report_small_patches() -> None:
    store = Store()
    store.apply(assistant())
    store.apply(text_part(""))
    patches = store.apply(delta("Hel"))
    assert patches == [
        {
            "op": "part.text.append",
            "sessionID": SID,
            "messageID": MID,
            "partID": PID,
            "field": "text",
            "text": "Hel",
        }
    ]
    store.apply(delta("lo"))
    assert store.part_text(PID) == "Hello"


def test_empty_mid_stream_snapshot_does_not_shrink_text() -> None:
    store = streaming_store()
    before = store.part_text(PID)
    snapshot = [{"info": assistant().info, "parts": [text_part("").part]}]
    store.load_messages(SID, snapshot)
    assert store.part_text(PID) == before
    assert store.anomalies["shrink blocked"] == 1


def test_final_snapshot_wins_even_when_shorter() -> None:
    store = streaming_store("one two three")
    patches = store.apply(text_part("one two", end=True))
    assert store.part_text(PID) == "one two"
    assert patches[0]["op"] == "part.upsert"


def test_stale_non_final_update_after_final_is_ignored() -> None:
    store = streaming_store()
    store.apply(text_part("Final text", end=True))
    assert store.apply(text_part("Final")) == []
    assert store.part_text(PID) == "Final text"


def test_legacy_cumulative_updates_become_appends() -> None:
    store = Store()
    store.apply(assistant())
    store.apply(text_part(""))
    first = PartUpdated(SID, MID, text_part("Hi").part, delta="Hi")
    second = PartUpdated(SID, MID, text_part("Hi there").part, delta=" there")
    assert store.apply(first)[0]["text"] == "Hi"
    assert store.apply(second) == [
        {
            "op": "part.text.append",
            "sessionID": SID,
            "messageID": MID,
            "partID": PID,
            "field": "text",
            "text": " there",
        }
    ]
    # a duplicate (1.0.x frames carry no id) changes nothing
    assert store.apply(second) == []


def test_removals_do_shrink() -> None:
    store = streaming_store()
    assert store.apply(PartRemoved(SID, MID, PID))[0]["op"] == "part.remove"
    assert store.part_text(PID) is None
    store = streaming_store()
    assert store.apply(MessageRemoved(SID, MID))[0]["op"] == "message.remove"
    assert [m["info"]["id"] for m in store.messages(SID)] == ["msg_1"]
    assert store.apply(SessionDeleted(SID, {"id": SID}))[0]["op"] == "session.remove"
    assert store.messages(SID) == []
    assert store.text_lengths() == {}


def test_tool_state_never_regresses() -> None:
    store = Store()
    store.apply(assistant())
    for status in ("pending", "running", "completed"):
        store.apply(tool(status))
    assert store.apply(tool("running")) == []
    assert store.messages(SID)[0]["parts"][0]["state"]["status"] == "completed"


def test_message_info_keeps_completion_against_stale_info() -> None:
    store = Store()
    store.apply(assistant(finish="stop", time={"created": 1, "completed": 5}))
    assert store.apply(assistant()) == []
    info = store.messages(SID)[0]["info"]
    assert info["finish"] == "stop"
    assert info["time"] == {"created": 1, "completed": 5}


def test_messages_and_parts_are_ordered_by_id() -> None:
    store = Store()
    store.apply(assistant())
    store.apply(user("msg_1"))
    store.apply(text_part("b", part_id="prt_5", end=True))
    store.apply(text_part("a", part_id="prt_4", end=True))
    messages = store.messages(SID)
    assert [m["info"]["id"] for m in messages] == ["msg_1", MID]
    assert [p["id"] for p in messages[1]["parts"]] == ["prt_4", "prt_5"]


def test_status_and_idle() -> None:
    store = Store()
    assert store.apply(SessionStatus(SID, {"type": "busy"}))[0]["status"] == {"type": "busy"}
    assert store.apply(SessionStatus(SID, {"type": "busy"})) == []
    assert store.apply(SessionIdle(SID))[0]["status"] == {"type": "idle"}


def test_delta_before_its_part_is_buffered_and_asks_for_resync() -> None:
    store = Store()
    store.apply(assistant())
    assert store.apply(delta("early ")) == []
    assert store.take_resync_requests() == {SID}
    patches = store.apply(text_part(""))
    assert patches[-1]["part"]["text"] == "early "
    store.apply(delta("late"))
    assert store.part_text(PID) == "early late"


def test_orphan_buffer_is_bounded() -> None:
    store = Store(orphan_delta_limit=10)
    store.apply(assistant())
    for index in range(25):
        store.apply(delta("x", part_id=f"prt_{index:03}"))
    assert store.anomalies["buffered deltas dropped for resync"] == 15


def test_part_before_its_message_makes_a_placeholder_and_asks_for_resync() -> None:
    store = Store()
    store.apply(text_part("x"))
    assert store.messages(SID)[0]["info"] == {"id": MID, "sessionID": SID}
    assert store.take_resync_requests() == {SID}
    store.apply(assistant())
    assert store.messages(SID)[0]["info"]["role"] == "assistant"


def frame(payload: dict[str, Any]) -> str:
    import json

    return json.dumps({"directory": "/p", "payload": payload})


def test_permissions_both_generations() -> None:
    store = Store()
    old_ask = {
        "type": "permission.updated",
        "properties": {"id": "per_1", "sessionID": SID, "type": "bash", "title": "Run ls"},
    }
    old_reply = {
        "type": "permission.replied",
        "properties": {"sessionID": SID, "permissionID": "per_1", "response": "once"},
    }
    new_ask = {
        "type": "permission.asked",
        "properties": {"id": "per_2", "sessionID": SID, "permission": "bash", "patterns": ["ls"]},
    }
    new_reply = {
        "type": "permission.replied",
        "properties": {"sessionID": SID, "requestID": "per_2", "reply": "reject"},
    }
    for ask, reply in ((old_ask, old_reply), (new_ask, new_reply)):
        patches = store.apply(normalize_frame(frame(ask)))
        assert patches[0]["op"] == "permission.upsert"
        assert len(store.snapshot()["permissions"]) == 1
        assert store.apply(normalize_frame(frame(reply)))[0]["op"] == "permission.remove"
        assert store.snapshot()["permissions"] == []


def test_questions_appear_and_clear() -> None:
    store = Store()
    ask = {
        "type": "question.asked",
        "properties": {"id": "que_1", "sessionID": SID, "questions": [{"question": "Which?"}]},
    }
    store.apply(normalize_frame(frame(ask)))
    assert store.snapshot()["questions"][0]["id"] == "que_1"
    rejected = {"type": "question.rejected", "properties": {"sessionID": SID, "requestID": "que_1"}}
    assert store.apply(normalize_frame(frame(rejected)))[0]["op"] == "question.remove"


def durable(seq: int, event_id: str, text: str) -> Durable:
    item = {
        "id": event_id,
        "aggregate_id": SID,
        "seq": seq,
        "type": "message.part.updated.1",
        "data": {"sessionID": SID, "part": text_part(text, end=True, part_id=f"prt_{seq}").part},
    }
    event = normalize_history_item(item)
    assert isinstance(event, Durable)
    return event


def test_durable_events_apply_once_whatever_the_order() -> None:
    store = Store()
    store.apply(assistant())
    store.apply(durable(1, "evt_1", "a"))
    assert store.apply(durable(3, "evt_3", "c"))  # a gap: 2 is missing
    assert store.take_resync_requests() == {SID}
    assert store.apply(durable(2, "evt_2", "b"))  # the history fill arrives late
    assert store.sequences() == {SID: 3}
    for seq, event_id in ((1, "evt_1"), (2, "evt_2"), (3, "evt_3")):
        assert store.apply(durable(seq, event_id, "changed")) == []
    assert [p["text"] for p in store.messages(SID)[0]["parts"]] == ["a", "b", "c"]


def test_sync_twin_of_an_applied_event_is_not_applied_again() -> None:
    store = Store()
    store.apply(assistant())
    plain = text_part("x", end=True)
    store.apply(PartUpdated(SID, MID, plain.part, event_id="evt_9"))
    twin = normalize_history_item(
        {
            "id": "evt_9",
            "aggregate_id": SID,
            "seq": 4,
            "type": "message.part.updated.1",
            "data": {"sessionID": SID, "part": plain.part},
        }
    )
    assert store.apply(twin) == []
    assert store.sequences() == {SID: 4}


@pytest.mark.parametrize("plain_first", [True, False])
def test_a_deleted_session_keeps_no_sequence_whichever_twin_comes_first(plain_first: bool) -> None:
    store = Store()
    store.apply(assistant())
    store.apply(durable(1, "evt_1", "a"))
    info = {"id": SID}
    plain = SessionDeleted(SID, info, event_id="evt_2")
    twin = normalize_history_item(
        {
            "id": "evt_2",
            "aggregate_id": SID,
            "seq": 2,
            "type": "session.deleted.1",
            "data": {"sessionID": SID, "info": info},
        }
    )
    assert isinstance(twin, Durable)
    assert isinstance(twin.inner, SessionDeleted)
    for event in (plain, twin) if plain_first else (twin, plain):
        store.apply(event)
    assert SID not in store.sessions
    assert store.sequences() == {}


def test_optimistic_message_reconciles_with_the_echo() -> None:
    store = Store()
    part = {"id": "prt_0", "type": "text", "text": "hi"}
    patches = store.add_optimistic(SID, "msg_1", [part], created_ms=10)
    assert [p["op"] for p in patches] == ["message.upsert", "part.upsert"]
    assert store.messages(SID)[0]["local"]["state"] == "sending"
    # the echo under the same ids: no duplicate, no flicker (no remove)
    echo = store.apply(user("msg_1"))
    assert echo[0]["op"] == "message.upsert"
    same = PartUpdated(SID, "msg_1", {**part, "sessionID": SID, "messageID": "msg_1"})
    assert store.apply(same) == []
    messages = store.messages(SID)
    assert len(messages) == 1
    assert "local" not in messages[0]
    assert [p["text"] for p in messages[0]["parts"]] == ["hi"]


def test_optimistic_parts_replaced_when_the_server_uses_its_own_part_ids() -> None:
    store = Store()
    store.add_optimistic(SID, "msg_1", [{"id": "prt_0", "type": "text", "text": "hi"}], 10)
    store.apply(user("msg_1"))
    server_part = {
        "id": "prt_7",
        "sessionID": SID,
        "messageID": "msg_1",
        "type": "text",
        "text": "hi",
    }
    ops = [p["op"] for p in store.apply(PartUpdated(SID, "msg_1", server_part))]
    assert ops == ["part.remove", "part.upsert"]
    assert [p["id"] for p in store.messages(SID)[0]["parts"]] == ["prt_7"]


def test_failed_send_is_marked_and_confirmed_messages_ignore_local_state() -> None:
    store = Store()
    store.add_optimistic(SID, "msg_1", [{"id": "prt_0", "type": "text", "text": "hi"}], 10)
    patch = store.set_local_state("msg_1", "failed", "server unreachable")
    assert patch[0]["local"] == {"state": "failed", "error": "server unreachable"}
    store.apply(user("msg_1"))
    assert store.set_local_state("msg_1", "failed") == []


def test_snapshot_removes_only_inside_its_range() -> None:
    store = Store()
    for message_id in ("msg_1", "msg_2", "msg_3", "msg_4"):
        store.apply(user(message_id))
    snapshot = [{"info": user(m).info, "parts": []} for m in ("msg_1", "msg_3")]
    store.load_messages(SID, snapshot)
    # msg_2 was deleted on the server; msg_4 may be newer than the snapshot
    assert [m["info"]["id"] for m in store.messages(SID)] == ["msg_1", "msg_3", "msg_4"]


def test_unknown_and_malformed_frames_never_raise() -> None:
    store = Store()
    assert (
        store.apply(normalize_frame(frame({"type": "plugin.added", "properties": {"x": 1}}))) == []
    )
    assert store.raw_types["plugin.added"] == 1
    assert store.apply(normalize_frame('{"payload": {"type": "message.updated"')) == []
    assert store.anomalies["malformed frame (json)"] == 1


def reverted(revert: dict[str, str] | None) -> SessionUpdated:
    info: dict[str, Any] = {"id": SID, "time": {"updated": 1}}
    if revert is not None:
        info["revert"] = revert
    return SessionUpdated(SID, info)


def test_revert_hides_from_its_message_on_until_unrevert() -> None:
    store = streaming_store()
    store.apply(user("msg_3"))
    assert [m["info"]["id"] for m in store.visible_messages(SID)] == ["msg_1", MID, "msg_3"]
    patches = store.apply(reverted({"messageID": MID}))
    assert patches[0]["info"]["revert"] == {"messageID": MID}
    assert [m["info"]["id"] for m in store.visible_messages(SID)] == ["msg_1"]
    # the REST shape still holds everything, as the server does until its cleanup
    assert len(store.messages(SID)) == 3
    store.apply(reverted(None))
    assert len(store.visible_messages(SID)) == 3


def test_revert_to_a_part_keeps_the_parts_before_it() -> None:
    store = Store()
    store.apply(assistant())
    store.apply(text_part("a", part_id="prt_1", end=True))
    store.apply(text_part("b", part_id="prt_2", end=True))
    store.apply(reverted({"messageID": MID, "partID": "prt_2"}))
    [message] = store.visible_messages(SID)
    assert [p["id"] for p in message["parts"]] == ["prt_1"]


def test_a_message_back_after_its_removal_asks_for_a_resync() -> None:
    store = streaming_store()
    store.take_resync_requests()
    store.apply(MessageRemoved(SID, MID))
    assert store.take_resync_requests() == set()
    store.apply(assistant())  # the server re-created it; its parts were never re-sent
    assert store.take_resync_requests() == {SID}
    assert store.anomalies["message back after its removal"] == 1


def test_local_state_follows_a_send_to_its_confirmation() -> None:
    store = Store()
    assert store.local_state("msg_1") is None
    store.add_optimistic(SID, "msg_1", [{"id": "prt_0", "type": "text", "text": "hi"}], 10)
    assert store.local_state("msg_1") == "sending"
    store.set_local_state("msg_1", "failed", "server unreachable")
    assert store.local_state("msg_1") == "failed"
    store.apply(user("msg_1"))
    assert store.local_state("msg_1") == "confirmed"


def test_one_message_and_whether_it_settled() -> None:
    store = Store()
    assert store.message("msg_1") is None
    assert not store.settled("msg_1")
    store.add_optimistic(SID, "msg_1", [{"id": "prt_0", "type": "text", "text": "hi"}], 10)
    assert not store.settled("msg_1")  # not confirmed yet
    store.apply(user("msg_1"))
    assert store.settled("msg_1")
    found = store.message("msg_1")
    assert found is not None
    assert found[0] == SID
    assert found[1] == store.messages(SID)[0]
    streaming = {"id": "prt_1", "type": "text", "text": "a", "time": {"start": 1}}
    store.apply(PartUpdated(SID, "msg_1", {**streaming, "sessionID": SID, "messageID": "msg_1"}))
    assert not store.settled("msg_1")


def test_an_unsent_message_can_be_edited_but_not_a_confirmed_one() -> None:
    store = Store()
    store.add_optimistic(SID, "msg_1", [{"id": "prt_0", "type": "text", "text": "hi"}], 10)
    edited = [{"id": "prt_1", "type": "text", "text": "hello"}]
    ops = [p["op"] for p in store.replace_optimistic_parts("msg_1", edited)]
    assert ops == ["part.remove", "part.upsert"]
    assert [p["text"] for p in store.messages(SID)[0]["parts"]] == ["hello"]
    store.apply(user("msg_1"))
    assert store.replace_optimistic_parts("msg_1", []) == []
    assert store.replace_optimistic_parts("msg_unknown", []) == []


def test_a_snapshot_older_than_events_does_not_undo_what_they_said() -> None:
    store = streaming_store("Hello")
    asked_at = store.clock  # the REST request goes out here...
    store.apply(assistant(tokens={"output": 13}))  # ...events move on meanwhile
    store.apply(text_part("Hello, world", end=True))
    store.apply(user("msg_9"))
    old_answer = [
        {
            "info": {"id": MID, "sessionID": SID, "role": "assistant", "tokens": {"output": 0}},
            "parts": [
                {"id": PID, "type": "text", "text": "Hello, wor", "time": {"start": 1}},
                {"id": "prt_4", "type": "text", "text": "new"},
            ],
        },
    ]
    patches = store.load_messages(SID, old_answer, as_of=asked_at)
    assert [p["op"] for p in patches] == ["part.upsert"]  # only what no event touched
    reply = store.messages(SID)[1]
    [streamed, untouched] = reply["parts"]
    assert reply["info"]["tokens"] == {"output": 13}
    assert (streamed["text"], streamed["time"]) == ("Hello, world", {"start": 1, "end": 2})
    assert untouched["text"] == "new"
    assert [m["info"]["id"] for m in store.messages(SID)] == ["msg_1", MID, "msg_9"]


def test_without_as_of_a_snapshot_is_the_servers_word() -> None:
    store = streaming_store("Hello")
    store.apply(assistant(tokens={"output": 13}))
    answer = [
        {
            "info": {"id": MID, "sessionID": SID, "role": "assistant", "tokens": {"output": 20}},
            "parts": [],
        }
    ]
    store.load_messages(SID, answer)
    assert store.messages(SID)[1]["info"]["tokens"] == {"output": 20}


def test_a_key_the_server_drops_from_an_info_goes() -> None:
    store = Store()
    store.apply(user())
    store.apply(MessageUpdated(SID, {**user().info, "summary": {"diffs": []}}))
    store.apply(user())  # 1.0.x's last word on the message has no summary
    assert "summary" not in store.messages(SID)[0]["info"]


def test_a_settled_sessions_snapshot_is_the_last_word_even_when_it_says_less() -> None:
    cut = [
        {
            "info": {"id": MID, "sessionID": SID, "role": "assistant", "time": {"created": 1}},
            "parts": [{"id": PID, "type": "text", "text": "", "time": {"start": 1}}],
        },
    ]
    kept = streaming_store("Hello, world")
    kept.load_messages(SID, cut)  # mid-stream: the trap, blocked
    assert kept.part_text(PID) == "Hello, world "
    lost = streaming_store("Hello, world")
    lost.load_messages(SID, cut, settled=True)  # the server restarted: the text is gone
    assert lost.part_text(PID) == ""
    assert lost.messages(SID)[1] == {**cut[0], "parts": [{**cut[0]["parts"][0]}]}


def test_a_session_idle_with_a_part_still_streaming_asks_for_resync() -> None:
    store = streaming_store("Hello")
    store.apply(SessionStatus(SID, {"type": "busy"}))
    store.take_resync_requests()
    store.apply(SessionIdle(SID))
    assert store.take_resync_requests() == {SID}
    store.apply(text_part("Hello ", end=True))
    store.apply(SessionStatus(SID, {"type": "busy"}))
    store.apply(SessionIdle(SID))
    assert store.take_resync_requests() == set()
