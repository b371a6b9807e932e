"""The SQLite cache: round trips, reconciliation helpers, the outbox, unusable files."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openchamber.cache import MIGRATIONS, Cache, CacheError, Queued, default_path

JSON = dict[str, Any]


def entry(message_id: str, text: str = "hi") -> JSON:
    return {
        "info": {"id": message_id, "role": "user"},
        "parts": [{"id": f"prt_{message_id}", "type": "text", "text": text}],
    }


def queued(message_id: str, created_ms: int = 1, state: str = "queued") -> Queued:
    parts = [{"id": "prt_1", "type": "text", "text": "later"}]
    return Queued(message_id, "ses_1", parts, {}, created_ms, state)


@pytest.fixture
def cache(tmp_path: Path) -> Cache:
    return Cache(tmp_path / "c.db", "http://127.0.0.1:4096|/project")


def test_sessions_and_messages_survive_a_reopen(cache: Cache) -> None:
    cache.save(
        sessions=[("ses_1", {"id": "ses_1", "title": "one"})],
        messages=[("ses_1", "msg_2", entry("msg_2")), ("ses_1", "msg_1", entry("msg_1"))],
    )
    cache.close()
    again = Cache(cache.path, cache.identity)
    loaded = again.load()
    assert again.notice is None
    assert loaded.sessions == [{"id": "ses_1", "title": "one"}]
    assert loaded.messages == {"ses_1": [entry("msg_1"), entry("msg_2")]}  # ordered by id


def test_deleting_a_session_deletes_its_messages(cache: Cache) -> None:
    cache.save([("ses_1", {"id": "ses_1"})], [("ses_1", "msg_1", entry("msg_1"))])
    cache.save([("ses_1", None)])
    assert cache.load().messages == {}


def test_the_servers_answer_replaces_a_session_and_the_session_list(cache: Cache) -> None:
    cache.save(
        [("ses_1", {"id": "ses_1"}), ("ses_2", {"id": "ses_2"})],
        [("ses_1", "msg_1", entry("msg_1")), ("ses_2", "msg_9", entry("msg_9"))],
    )
    cache.replace_session("ses_1", [entry("msg_3")])
    cache.keep_sessions({"ses_1"})
    loaded = cache.load()
    assert [s["id"] for s in loaded.sessions] == ["ses_1"]
    assert loaded.messages == {"ses_1": [entry("msg_3")]}


def test_outbox_keeps_order_and_refuses_a_second_copy(cache: Cache) -> None:
    assert cache.enqueue(queued("msg_b", created_ms=2))
    assert cache.enqueue(queued("msg_a", created_ms=1))
    assert not cache.enqueue(queued("msg_a", created_ms=5))
    assert [q.message_id for q in cache.load().outbox] == ["msg_a", "msg_b"]


def test_a_queued_message_can_be_edited_or_cancelled_until_it_is_being_sent(
    cache: Cache,
) -> None:
    cache.enqueue(queued("msg_a"))
    new_parts = [{"id": "prt_1", "type": "text", "text": "edited"}]
    assert cache.edit_queued("msg_a", new_parts)
    assert cache.load().outbox[0].parts == new_parts
    cache.set_outbox_state("msg_a", "sending")
    assert not cache.edit_queued("msg_a", [])
    assert not cache.dequeue("msg_a", only_queued=True)
    assert cache.load().outbox[0].state == "sending"
    assert cache.dequeue("msg_a")
    assert cache.load().outbox == []


def test_clear_keeps_unsent_messages(cache: Cache) -> None:
    cache.save([("ses_1", {"id": "ses_1"})], [("ses_1", "msg_1", entry("msg_1"))])
    cache.enqueue(queued("msg_q"))
    cache.clear()
    loaded = cache.load()
    assert (loaded.sessions, loaded.messages) == ([], {})
    assert [q.message_id for q in loaded.outbox] == ["msg_q"]
    assert cache.info()["outbox"] == 1


def moved_aside(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.unusable-*"))


def test_a_corrupt_file_is_moved_aside_with_a_notice(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    path.write_bytes(b"this is no database, just bytes " * 100)
    cache = Cache(path, "x")
    assert cache.notice is not None
    assert "moved aside" in cache.notice
    assert [p.read_bytes()[:7] for p in moved_aside(path)] == [b"this is"]
    cache.save([("ses_1", {"id": "ses_1"})])
    assert cache.load().sessions == [{"id": "ses_1"}]


def test_a_foreign_sqlite_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE photos (id INTEGER)")
    other.close()
    cache = Cache(path, "x")
    assert cache.notice is not None
    assert "not an openchamber cache" in cache.notice
    assert len(moved_aside(path)) == 1


def test_the_cache_of_another_server_or_a_newer_schema_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    Cache(path, "server-a").close()
    other = Cache(path, "server-b")
    assert other.notice is not None
    assert "another server" in other.notice
    other.close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    newer = Cache(path, "server-b")
    assert newer.notice is not None
    assert "newer" in newer.notice


def test_an_unwritable_place_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(CacheError, match="cannot create the cache directory"):
        Cache(blocker / "sub" / "c.db", "x")


def test_default_path_is_per_identity_and_readable() -> None:
    a = default_path("http://127.0.0.1:4096|/home/me/project")
    b = default_path("http://127.0.0.1:4097|/home/me/project")
    assert a != b
    assert a.name.startswith("http_127.0.0.1_4096_home_me_project-")
    assert a.suffix == ".db"


ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("save"), st.sampled_from(["s1", "s2"]), st.sampled_from("abc"), st.booleans()
        ),
        st.tuples(st.just("drop"), st.sampled_from(["s1", "s2"]), st.just(""), st.just(False)),
    ),
    max_size=30,
)


@settings(max_examples=50, deadline=None)
@given(ops)
def test_the_cache_holds_what_a_dictionary_would(tmp_path_factory: Any, steps: list[Any]) -> None:
    cache = Cache(tmp_path_factory.mktemp("prop") / "c.db", "x")
    model: dict[str, dict[str, JSON]] = {}
    for op, sid, letter, delete in steps:
        mid = f"msg_{sid}{letter}"  # message ids are unique across sessions, as OpenCode's
        if op == "drop":
            cache.save([(sid, None)])
            model.pop(sid, None)
            continue
        cache.save([(sid, {"id": sid})], [(sid, mid, None if delete else entry(mid, sid))])
        messages = model.setdefault(sid, {})
        if delete:
            messages.pop(mid, None)
        else:
            messages[mid] = entry(mid, sid)
    loaded = cache.load()
    assert sorted(s["id"] for s in loaded.sessions) == sorted(model)
    expected = {sid: [m[k] for k in sorted(m)] for sid, m in model.items() if m}
    assert loaded.messages == expected
    cache.close()
