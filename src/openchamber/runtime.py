"""The runtime: one live, verified view of an OpenCode server.

It joins the resilient `EventStream`, the pure `Store` and the REST client: events go into
the store, every new connection is followed by gap repair (durable events from
`/sync/history` where the server has it, REST refetches of sessions that were streaming),
and the store's own resync requests are served. Patches and connection status go to
`on_patches` in one ordered flow.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio

from openchamber.client import JSON, OpenCodeClient, OpenCodeError
from openchamber.protocol import Durable, Event, normalize_history_item
from openchamber.store import Patch, Store
from openchamber.stream import EventStream, State, Status

log = logging.getLogger("openchamber.runtime")

PatchSink = Callable[[list[Patch]], Awaitable[None]]


class Runtime:
    def __init__(self, client: OpenCodeClient, on_patches: PatchSink, store: Store | None = None):
        self.client = client
        self.store = store or Store()
        self.status = Status(State.CONNECTING, "not started")
        self.has_sync = False  # the server sends `sync` twins, so /sync/history exists
        self._on_patches = on_patches
        self._connected_once = False
        self._lock = anyio.Lock()  # one writer into the store at a time
        self.stream = EventStream(client, self._apply_events, self._repair_gap, self._set_status)

    async def run(self) -> None:
        await self._choose_endpoint()
        await self.stream.run()

    async def _choose_endpoint(self) -> None:
        """1.0.x (no /global/health) withholds `/global/event`'s headers until its first
        event, so an idle server would look unreachable forever; its per-directory
        `/event` answers at once with `server.connected`."""
        try:
            health = await self.client.health()
            if health["version"] is not None:
                return
            if self.client.directory is None:
                self.client.directory = str((await self.client.paths())["directory"])
        except (OpenCodeError, KeyError) as exc:
            log.info("endpoint check failed (%s); using /global/event", exc)
            return
        self.stream.path = "/event"

    async def _emit(self, patches: list[Patch]) -> None:
        if patches:
            await self._on_patches(patches)

    async def _set_status(self, status: Status) -> None:
        self.status = status
        await self._emit([{"op": "connection", "status": status.to_json()}])

    async def _apply_events(self, events: list[Event]) -> None:
        async with self._lock:
            patches: list[Patch] = []
            for event in events:
                if isinstance(event, Durable):
                    self.has_sync = True
                patches += self.store.apply(event)
        await self._emit(patches)
        await self._serve_resync_requests()

    async def _repair_gap(self) -> None:
        """After every (re)connect: fetch what the stream may have missed."""
        try:
            if not self._connected_once:
                await self._bootstrap()
            else:
                await self._fill_durable_gap()
            await self._refetch(self._sessions_in_flight())
        except OpenCodeError as exc:
            # The stream is up but REST failed: keep streaming, try again on the next gap.
            log.warning("gap repair failed: %s", exc)
            for session_id in self._sessions_in_flight():
                self.store.request_resync(session_id)
        self._connected_once = True

    async def _bootstrap(self) -> None:
        sessions = await self.client.list_sessions()
        async with self._lock:
            patches = self.store.load_sessions(sessions)
        await self._emit(patches)
        await self._refresh_status(set())

    async def _fill_durable_gap(self) -> None:
        if not self.has_sync:
            return
        items = await self.client.sync_history(self.store.sequences())
        async with self._lock:
            patches: list[Patch] = []
            for item in items:
                patches += self.store.apply(normalize_history_item(item))
        await self._emit(patches)

    def _sessions_in_flight(self) -> set[str]:
        """Sessions a gap can have cut mid-reply: busy, or holding a streaming part."""
        busy = {sid for sid, s in self.store.sessions.items() if s.status.get("type") != "idle"}
        return busy | self.store.streaming_sessions()

    async def _serve_resync_requests(self) -> None:
        requests = self.store.take_resync_requests()
        if requests:
            await self._refetch(requests)

    async def _refetch(self, session_ids: set[str]) -> None:
        if not session_ids:
            return
        for session_id in sorted(session_ids):
            messages = await self.client.messages(session_id)
            async with self._lock:
                patches = self.store.load_messages(session_id, messages)
            await self._emit(patches)
        await self._refresh_status(session_ids)

    async def _refresh_status(self, refetched: set[str]) -> None:
        statuses = await self.client.session_status()
        async with self._lock:
            if statuses is not None:
                patches = self.store.load_status(statuses)
            else:
                # No status route (1.0.x): a refetched session whose last message is an
                # assistant reply completed with a final finish is idle; the server said so.
                patches = []
                for session_id in refetched:
                    if _turn_over(self.store.messages(session_id)):
                        patches += self.store.set_status(session_id, {"type": "idle"})
        await self._emit(patches)


def _turn_over(messages: list[JSON]) -> bool:
    if not messages:
        return False
    info = messages[-1]["info"]
    completed = isinstance(info.get("time"), dict) and info["time"].get("completed")
    return (
        info.get("role") == "assistant"
        and bool(completed)
        and info.get("finish")
        not in (
            None,
            "tool-calls",
        )
    )
