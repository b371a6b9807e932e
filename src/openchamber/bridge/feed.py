"""The store's changes as views follow them: the hub's numbered patches plus a wake-up.

Everything that changes the store goes through `Feed.change()` (or the runtime's sink,
`publish`), which numbers the patches and wakes the views waiting for news. A snapshot
and its cursor are taken without an await between them, so they always agree.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio

from openchamber.hub import DEFAULT_CAPACITY, Hub
from openchamber.store import Patch, Store

JSON = dict[str, Any]


class Feed:
    def __init__(
        self,
        store: Store,
        status: Callable[[], JSON],
        capacity: int = DEFAULT_CAPACITY,
    ) -> None:
        self.store = store
        self._status = status
        # Above any cursor an earlier launch handed out (it would need a million patches a
        # second to catch up): an old view's cursor gets a snapshot, not foreign patches.
        self.hub = Hub(capacity, first_cursor=time.time_ns() // 1_000_000 * 1000)
        self.listeners: list[Callable[[list[Patch]], None]] = []  # e.g. the cache writer
        # False while the state shown came from the cache and the server has not confirmed it.
        self.confirmed = True
        self._news: anyio.Event | None = None  # made by the first view to wait for news

    @property
    def cursor(self) -> int:
        return self.hub.cursor

    async def publish(self, patches: list[Patch]) -> None:
        """The runtime's patch sink."""
        self.add(patches)

    def add(self, patches: list[Patch]) -> None:
        if not patches:
            return
        self.hub.publish(patches)
        for listener in self.listeners:
            listener(patches)
        if self._news is not None:
            self._news.set()
            self._news = None

    def change(self, update: Callable[[Store], list[Patch]]) -> list[Patch]:
        """Change the store and publish what changed, with no await in between."""
        patches = update(self.store)
        self.add(patches)
        return patches

    async def wait_beyond(self, cursor: int) -> None:
        """Return once there is a patch after `cursor`."""
        while self.hub.cursor <= cursor:
            if self._news is None:
                self._news = anyio.Event()
            await self._news.wait()

    def snapshot(self) -> JSON:
        """`GET /api/snapshot`: the whole state and the cursor it is at."""
        return {
            "cursor": self.hub.cursor,
            "status": self._status(),
            "confirmed": self.confirmed,
            **self.store.snapshot(),
        }

    def confirm(self) -> None:
        """The server has confirmed (or replaced) what the cache showed."""
        self.confirmed = True
        self.add([{"op": "confirmed"}])
