"""The runtime: one live, verified view of an OpenCode server.

It joins the resilient `EventStream`, the pure `Store` and the REST client: events go into
the store, and the store's own resync requests are served. Patches and connection status
go to `on_patches` in one ordered flow.

Gap repair runs twice per connection. At connect it fills the time the stream was down.
Once the connection has proven live (its first event after `server.connected`) it runs
again, for what the server published between `server.connected` and attaching its
subscription: 1.18 loses that (see `EventStream.on_live`). A repair reads the session
list and refetches the messages of every session whose `time.updated` moved while we were
not listening (the server touches it on every prompt) or that may have been cut mid-reply
(busy, or holding a streaming part); where the server has `/sync/history` it first
applies the durable events missed. The store applies each durable event once, so what
a repair and the live stream both bring is not applied twice.

Bounded memory: nothing here queues. Events are applied and their patches awaited by
`on_patches` before the stream reads on, so a slow consumer slows the stream (see
`openchamber.stream`) instead of piling patches up.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio

from openchamber.client import JSON, NotFound, OpenCodeClient, OpenCodeError, ServerError
from openchamber.protocol import Durable, Event, normalize_history_item
from openchamber.store import IDLE, Patch, Store
from openchamber.stream import EventStream, State, Status, Watchdog
from openchamber.turns import BUSY, TurnWatch

log = logging.getLogger("openchamber.runtime")

PatchSink = Callable[[list[Patch]], Awaitable[None]]

# 1.18 turns a `/sync/history` body into one SQL expression with a term per session, and
# SQLite refuses it beyond 996 of them (measured: a 500). Sessions cannot be named in
# chunks: every session a body leaves out comes back with its whole history.
SYNC_HISTORY_MAX_SESSIONS = 996


class Runtime:
    def __init__(
        self,
        client: OpenCodeClient,
        on_patches: PatchSink,
        store: Store | None = None,
        *,
        watchdog: Watchdog | None = None,
        wake_threshold: float = 5.0,
        turn_stall: float = 10.0,
    ):
        self.client = client
        self.store = store or Store()
        self.status = Status(State.CONNECTING, "not started")
        self.has_sync = False  # the server sends `sync` twins, so /sync/history exists
        self._on_patches = on_patches
        self._connected_once = False
        self._lock = anyio.Lock(fast_acquire=True)  # one writer into the store at a time
        self._endpoint_chosen = False
        self._status_route: bool | None = None  # None until the server was asked
        self._turns = TurnWatch(turn_stall)
        self.stream = EventStream(
            client,
            self._apply_events,
            self._repair_gap,
            self._set_status,
            on_live=self._repair_window,
            before_connect=self._choose_endpoint,
            watchdog=watchdog or Watchdog(),
            wake_threshold=wake_threshold,
        )

    async def run(self) -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._end_stalled_turns)
            await self.stream.run()
            tasks.cancel_scope.cancel()

    async def _end_stalled_turns(self) -> None:
        """Where the server has no status route, end the turns it never will (see
        `openchamber.turns`): silent for a while here, and unchanged on the server."""
        while True:
            await anyio.sleep(self._turns.stall / 4)
            if self._status_route is not False or self.status.state is not State.CONNECTED:
                continue
            for session_id in self._turns.stalled(self.store, anyio.current_time()):
                asked_at = anyio.current_time()
                try:
                    await self._refetch({session_id})
                except OpenCodeError:
                    continue
                if self._turns.heard_since(session_id, asked_at):
                    continue  # the refetch brought something: the turn is alive
                log.info("%s: no progress for %gs, taken as idle", session_id, self._turns.stall)
                self._turns.presume_idle(session_id)
                async with self._lock:
                    patches = self.store.set_status(session_id, IDLE)
                await self._emit(patches)

    async def _choose_endpoint(self) -> None:
        """1.0.x (no /global/health) withholds `/global/event`'s headers until its first
        event, so an idle server would look unreachable forever; its per-directory
        `/event` answers at once with `server.connected`. Asked before each connection
        until the server answers: one that was down at start may be either."""
        if self._endpoint_chosen:
            return
        try:
            if (await self.client.health())["version"] is None:
                if self.client.directory is None:
                    self.client.directory = str((await self.client.paths())["directory"])
                self.stream.path = "/event"
        except (OpenCodeError, KeyError) as exc:
            log.info("endpoint check failed (%s); trying %s", exc, self.stream.path)
            return
        self._endpoint_chosen = True

    async def _emit(self, patches: list[Patch]) -> None:
        if not patches:
            return
        if self._status_route is False:
            for session_id in self._turns.note(patches, anyio.current_time()):
                # Taken as idle, yet it goes on: busy again.
                patches = patches + self.store.set_status(session_id, BUSY)
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
        await self._repair("connect", bootstrap=not self._connected_once)
        self._connected_once = True

    async def _repair_window(self) -> None:
        """Once the connection is proven live: what it may have lost just after connecting."""
        await self._repair("live", bootstrap=False)

    async def _repair(self, when: str, *, bootstrap: bool) -> None:
        touched: set[str] = set()
        try:
            touched = await self._load_sessions(bootstrap)
            await self._fill_durable_gap()
            refetch = touched | self._sessions_in_flight()
            log.info("gap repair (%s): refetching %d session(s)", when, len(refetch))
            await self._refetch(refetch)
        except OpenCodeError as exc:
            # The stream is up but REST failed: keep streaming; the next events ask again
            # (the sessions seen changed are loaded by now and would not look changed).
            log.warning("gap repair (%s) failed: %s", when, exc)
            for session_id in touched | self._sessions_in_flight():
                self.store.request_resync(session_id)

    async def _load_sessions(self, bootstrap: bool) -> set[str]:
        """Load the session list; the sessions it shows changed since we last heard of them
        (none at bootstrap: there is nothing to repair yet, messages load on demand)."""
        infos = [i for i in await self.client.list_sessions() if isinstance(i.get("id"), str)]
        async with self._lock:
            touched = set() if bootstrap else {i["id"] for i in infos if self._moved(i)}
            patches = self.store.load_sessions(infos)
        await self._emit(patches)
        return touched

    def _moved(self, info: JSON) -> bool:
        known = self.store.sessions.get(info["id"])
        return known is None or known.info is None or _updated(known.info) != _updated(info)

    async def _fill_durable_gap(self) -> None:
        """Apply the durable events missed; the REST refetches that follow make do
        without where the server cannot give them."""
        sequences = self.store.sequences()
        if not self.has_sync or len(sequences) > SYNC_HISTORY_MAX_SESSIONS:
            return
        try:
            items = await self.client.sync_history(sequences)
        except ServerError as exc:
            log.warning("durable gap fill failed, refetching over REST only: %s", exc)
            return
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
        if not requests:
            return
        try:
            await self._refetch(requests)
        except OpenCodeError as exc:
            # Keep streaming; the next events (or the next gap repair) ask again.
            log.warning("resync of %d session(s) failed: %s", len(requests), exc)
            for session_id in requests:
                self.store.request_resync(session_id)

    async def _refetch(self, session_ids: set[str]) -> None:
        """Load these sessions' messages, then every session's status: one status read
        before the messages (if any) and one after, whatever the number of sessions."""
        before = await self.client.session_status() if session_ids else None
        fetched: dict[str, list[JSON] | None] = {}
        for session_id in sorted(session_ids):
            try:
                fetched[session_id] = await self.client.messages(session_id)
            except NotFound:
                fetched[session_id] = None  # deleted while we looked away
        after = await self.client.session_status()
        self._status_route = after is not None
        async with self._lock:
            patches: list[Patch] = []
            for session_id, messages in fetched.items():
                if messages is None:
                    # Asking again would never end.
                    patches += self.store.remove_session(session_id)
                    continue
                # Idle on both sides of the snapshot: nothing will finish its parts any
                # more, so they are final even if they say less (a reply cut by a restart).
                settled = _idle(before, session_id) and _idle(after, session_id)
                patches += self.store.load_messages(session_id, messages, settled=settled)
            if after is not None:
                patches += self.store.load_status(after)
            else:
                # No status route (1.0.x): a refetched session whose last message is an
                # assistant reply completed with a final finish is idle; the server said so.
                for session_id in fetched:
                    if _turn_over(self.store.messages(session_id)):
                        patches += self.store.set_status(session_id, IDLE)
        await self._emit(patches)


def _idle(statuses: dict[str, JSON] | None, session_id: str) -> bool:
    """The server says the session is idle (False where it cannot say: 1.0.x)."""
    return statuses is not None and statuses.get(session_id, {}).get("type", "idle") == "idle"


def _updated(info: JSON) -> object:
    timing = info.get("time")
    return timing.get("updated") if isinstance(timing, dict) else None


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
