"""The store and the cache kept in step: written behind, read at start, reconciled.

`CacheWriter` follows the store's patches and, a batch at a time in a worker thread,
writes what settled (sessions, messages whose parts all ended) and deletes what was
removed: the event loop never waits for the disk and half-streamed text never lands in
the file. `reconcile` runs once the server answers: the server wins, cached sessions and
messages it no longer has go, and nothing is shown twice.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import anyio

from openchamber.cache import JSON, Cache, Cached
from openchamber.client import OpenCodeClient
from openchamber.outbox import Change
from openchamber.store import Patch, Store

_SESSION_OPS = frozenset({"session.upsert", "session.remove"})
_MESSAGE_OPS = frozenset(
    {"message.upsert", "message.local", "message.remove", "part.upsert", "part.remove"}
)


class CacheWriter:
    def __init__(self, cache: Cache, store: Store, interval: float = 0.25) -> None:
        self.cache = cache
        self.store = store
        self.interval = interval  # a batch per interval: one transaction for many patches
        self._sessions: set[str] = set()
        self._messages: dict[str, str] = {}  # message id -> session id
        self._dirty = anyio.Event()
        self._limiter = anyio.CapacityLimiter(1)

    def note(self, patches: list[Patch]) -> None:
        """What changed (text appends are skipped: the part's end says it again)."""
        for patch in patches:
            op = patch["op"]
            if op == "part.text.append":  # most patches while a reply streams
                continue
            if op in _SESSION_OPS:
                self._sessions.add(patch["sessionID"])
            elif op in _MESSAGE_OPS:
                message_id = patch.get("messageID") or patch["info"]["id"]
                self._messages[message_id] = patch["sessionID"]
            else:
                continue
            self._dirty.set()

    async def run(self) -> None:
        while True:
            await self._dirty.wait()
            await anyio.sleep(self.interval)
            await self.flush()

    async def flush(self) -> None:
        """Write what changed since the last flush."""
        self._dirty = anyio.Event()
        sessions, self._sessions = self._sessions, set()
        messages, self._messages = self._messages, {}
        session_rows = [(sid, self._session_info(sid)) for sid in sorted(sessions)]
        message_rows: list[tuple[str, str, JSON | None]] = []
        for message_id, session_id in sorted(messages.items()):
            found = self.store.message(message_id)
            if found is None:
                message_rows.append((session_id, message_id, None))
            elif self.store.settled(message_id):
                message_rows.append((found[0], message_id, found[1]))
            # else: still streaming or not confirmed; its end or echo marks it again
        if session_rows or message_rows:
            await anyio.to_thread.run_sync(
                self.cache.save, session_rows, message_rows, limiter=self._limiter
            )

    def _session_info(self, session_id: str) -> JSON | None:
        session = self.store.sessions.get(session_id)
        return None if session is None or session.info is None else session.info


def load_cached(store: Store, cached: Cached) -> list[Patch]:
    """Put what the cache held into the store (before anything from the server)."""
    patches = store.load_sessions(cached.sessions)
    for session_id, entries in cached.messages.items():
        patches += store.load_messages(session_id, entries)
    return patches


async def reconcile(
    client: OpenCodeClient, store: Store, change: Change, cache: Cache, cached: Cached
) -> None:
    """Make the cached sessions the server's: its list and its messages win (except over
    events newer than its answer)."""
    sessions = await client.list_sessions()
    alive = {s["id"] for s in sessions if isinstance(s.get("id"), str)}
    change(lambda store: store.load_sessions(sessions))
    for session_id in sorted({s["id"] for s in cached.sessions} | set(cached.messages)):
        if session_id in alive:
            asked_at = store.clock
            answer = await client.messages(session_id)
            from_cache = {e["info"]["id"] for e in cached.messages.get(session_id, [])}
            change(_server_wins(session_id, answer, from_cache, asked_at))
        else:
            change(partial(Store.remove_session, session_id=session_id))
    await anyio.to_thread.run_sync(cache.keep_sessions, alive)


def _server_wins(
    session_id: str, answer: list[JSON], from_cache: set[str], asked_at: int
) -> Callable[[Store], list[Patch]]:
    """The server's messages of a session merged in; cached ones it lacks removed."""

    def update(store: Store) -> list[Patch]:
        patches = store.load_messages(session_id, answer, as_of=asked_at)
        for message_id in sorted(from_cache - {m["info"]["id"] for m in answer}):
            patches += store.remove_message(session_id, message_id)
        return patches

    return update
