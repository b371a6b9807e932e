"""The outbox: every message a user sends is delivered exactly once, in order, whatever
happens to the server or to this process in between.

A send is first written down (with its client-made message and part ids) and shown as
"queued"; a single deliverer then sends the oldest. Before a send it is marked "sending"
in the cache, so after a crash at any point it is known that the server may have it: the
deliverer then asks the server for that message id and sends only if it is missing. The
same ids make even an unlucky resend rewrite, not repeat, what the server holds.

Without a cache (no persistence) the same logic runs in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio

from openchamber.backoff import Backoff
from openchamber.cache import JSON, Cache, Queued
from openchamber.client import NotFound, OpenCodeClient, OpenCodeError, RequestTimeout, Unreachable
from openchamber.store import Patch, Store

log = logging.getLogger("openchamber.outbox")

Change = Callable[[Callable[[Store], list[Patch]]], list[Patch]]
# Called at each step of a delivery with (step, message id): "queued", "sending", "sent",
# "delivered". Tests use it to crash the process at each step.
StepHook = Callable[[str, str], None]


class Outbox:
    def __init__(
        self,
        client: OpenCodeClient,
        change: Change,
        cache: Cache | None = None,
        *,
        on_step: StepHook | None = None,
    ) -> None:
        self.client = client
        self._change = change  # changes the store and publishes the patches
        self._cache = cache
        self._on_step = on_step or (lambda step, message_id: None)
        self._queue: list[Queued] = []
        self._current: Queued | None = None  # being delivered: no edits, no cancel
        self._submitting: set[str] = set()
        self._wake = anyio.Event()
        self._writes = anyio.CapacityLimiter(1)  # cache writes in order, off the loop

    @property
    def pending(self) -> list[Queued]:
        return list(self._queue)

    def restore(self, items: list[Queued]) -> None:
        """Take over what a previous run left in the cache and show it, queued."""
        for item in items:
            self._queue.append(item)
            self._show(item)

    def wake(self) -> None:
        """Try now (e.g. the connection is back)."""
        self._wake.set()

    async def submit(
        self, session_id: str, message_id: str, parts: list[JSON], options: JSON, created_ms: int
    ) -> bool:
        """Queue a message; False if this message id was submitted before."""
        if message_id in self._submitting or any(q.message_id == message_id for q in self._queue):
            return False
        item = Queued(message_id, session_id, parts, options, created_ms, "queued")
        self._submitting.add(message_id)  # a second request for it while the disk writes
        try:
            if self._cache is not None and not await self._write(self._cache.enqueue, item):
                return False
        finally:
            self._submitting.discard(message_id)
        self._queue.append(item)
        self._show(item)
        self._on_step("queued", message_id)
        self.wake()
        return True

    async def edit(self, message_id: str, parts: list[JSON]) -> bool:
        """Change a message still waiting; False if it is gone or being delivered."""
        item = self._waiting(message_id)
        if item is None:
            return False
        if self._cache is not None and not await self._write(
            self._cache.edit_queued, message_id, parts
        ):
            return False
        item.parts = parts
        self._change(lambda store: store.replace_optimistic_parts(message_id, parts))
        return True

    async def cancel(self, message_id: str) -> bool:
        """Withdraw a message still waiting; False if it is gone or being delivered."""
        item = self._waiting(message_id)
        if item is None:
            return False
        if self._cache is not None:
            await self._write(self._cache.dequeue, message_id, only_queued=True)
        self._queue.remove(item)
        self._change(lambda store: store.remove_message(item.session_id, message_id))
        return True

    async def run(self) -> None:
        """Deliver, oldest first, for as long as it runs."""
        backoff = Backoff(base=0.5, cap=15.0)
        while True:
            while not self._queue:
                await self._wait()
            item = self._queue[0]
            self._current = item
            try:
                delivered = await self._deliver(item)
            finally:
                self._current = None
            if delivered:
                backoff.reset()
                continue
            with anyio.move_on_after(backoff.next()):
                await self._wait()

    async def _wait(self) -> None:
        await self._wake.wait()
        self._wake = anyio.Event()

    async def _deliver(self, item: Queued) -> bool:
        """Deliver one message; False to try again later (the server is out of reach)."""
        message_id, session_id = item.message_id, item.session_id
        try:
            if item.state == "sending" and await self._server_has(item):
                log.info("%s was delivered before the interruption", message_id)
            else:
                await self._mark(item, "sending")
                await self.client.send(
                    session_id,
                    item.parts,
                    message_id=message_id,
                    model=item.options.get("model"),
                    agent=item.options.get("agent"),
                )
                self._on_step("sent", message_id)
        except (Unreachable, RequestTimeout) as exc:
            log.info("%s waits for the server: %s", message_id, exc)
            self._set_local(message_id, "queued", str(exc))
            return False
        except OpenCodeError as exc:
            # The server refused it (no such session, bad request): sending it again would
            # not help. Keep the words on screen, marked, and go on with the next.
            log.warning("%s refused: %s", message_id, exc)
            self._set_local(message_id, "failed", str(exc))
        if self._cache is not None:
            await self._write(self._cache.dequeue, message_id)
        self._queue.remove(item)
        self._on_step("delivered", message_id)
        return True

    async def _server_has(self, item: Queued) -> bool:
        try:
            await self.client.message(item.session_id, item.message_id)
        except NotFound:
            return False
        return True

    async def _mark(self, item: Queued, state: str) -> None:
        if item.state != state:
            if self._cache is not None:
                await self._write(self._cache.set_outbox_state, item.message_id, state)
            item.state = state
        self._set_local(item.message_id, "sending")
        self._on_step(state, item.message_id)

    def _waiting(self, message_id: str) -> Queued | None:
        for item in self._queue:
            if item.message_id == message_id and item is not self._current:
                return item if item.state == "queued" else None
        return None

    def _show(self, item: Queued) -> None:
        self._change(
            lambda store: (
                store.add_optimistic(item.session_id, item.message_id, item.parts, item.created_ms)
                + store.set_local_state(item.message_id, "queued")
            )
        )

    def _set_local(self, message_id: str, state: str, error: str | None = None) -> None:
        self._change(lambda store: store.set_local_state(message_id, state, error))

    async def _write(
        self, call: Callable[..., bool | None], *args: object, **kwargs: object
    ) -> bool:
        """A cache call in a worker thread: the event loop never waits on the disk."""
        result = await anyio.to_thread.run_sync(lambda: call(*args, **kwargs), limiter=self._writes)
        return result is not False
