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
import math
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from openchamber import ids
from openchamber.backoff import Backoff
from openchamber.cache import JSON, Cache, Queued
from openchamber.client import NotFound, OpenCodeClient, OpenCodeError, Unreachable
from openchamber.store import Patch, Store

log = logging.getLogger("openchamber.outbox")

Change = Callable[[Callable[[Store], list[Patch]]], list[Patch]]
_FRESH_MS = 1000  # a message older than this when it first goes out gets new ids
_CONFIRM_TIMEOUT = 30.0  # seconds an accepted message may take to appear on the server
_START_TIMEOUT = 30.0  # a turn the server has not started by then holds nothing back
_RECHECK = 1.0  # seconds between looks at a turn that may not have started


@dataclass
class _Awaited:
    """A message whose reply holds back the next message of its session."""

    message_id: str
    deadline: float  # if the session has not been busy by then, stop waiting
    seen_busy: bool = False


# Called at each step of a delivery with (step, message id): "queued", "sending", "sent",
# "delivered". Tests use it to crash the process at each step.
StepHook = Callable[[str, str], None]


class Outbox:
    def __init__(
        self,
        client: OpenCodeClient,
        store: Store,
        publish: Callable[[list[Patch]], None],
        cache: Cache | None = None,
        *,
        on_step: StepHook | None = None,
    ) -> None:
        self.client = client
        self._store = store
        self._publish = publish
        self._cache = cache
        self._on_step = on_step or (lambda step, message_id: None)
        self._queue: list[Queued] = []
        self._current: Queued | None = None  # being delivered: no edits, no cancel
        self._submitting: set[str] = set()
        self._aliases: dict[str, str] = {}  # ids of messages that got new ones (see _rekey)
        self._replies: dict[str, _Awaited] = {}  # session id -> the reply awaited there
        self._news = anyio.Event()  # the store changed
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

    def notice(self, patches: list[Patch]) -> None:
        """The store changed. Only a message waiting cares, and a text append never ends a
        reply: a streaming reply does not wake this loop once per delta."""
        if self._queue and any(p["op"] != "part.text.append" for p in patches):
            self._news.set()

    def wake(self) -> None:
        """Try now (e.g. the connection is back)."""
        self._wake.set()
        self._news.set()

    async def submit(
        self, session_id: str, message_id: str, parts: list[JSON], options: JSON, created_ms: int
    ) -> bool:
        """Queue a message; False if this message id was submitted before."""
        if message_id in self._aliases or message_id in self._submitting:
            return False
        if any(q.message_id == message_id for q in self._queue):
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
        """Deliver, oldest first per session, for as long as it runs."""
        backoff = Backoff(base=0.5, cap=15.0)
        while True:
            item = self._next()
            if item is None:
                # Nothing to send now; a reply that ends, or time, may change that.
                with anyio.move_on_after(_RECHECK if self._replies else math.inf):
                    await self._news.wait()
                self._news = anyio.Event()
                continue
            self._current = item
            try:
                delivered = await self._deliver(item)
            finally:
                self._current = None
            if delivered:
                backoff.reset()
                continue
            with anyio.move_on_after(backoff.next()):
                await self._wake.wait()
            self._wake = anyio.Event()

    def _next(self) -> Queued | None:
        """The oldest message of a session not waiting for a reply.

        One turn at a time per session: a message goes once the reply to the one before
        has ended. So each gets its own reply, and nothing the server writes for that
        reply can come between a message's id and its arrival (the server lists messages
        in the order it writes them, views by id). Other sessions do not wait.
        """
        waiting = {sid for sid in list(self._replies) if self._reply_pending(sid)}
        return next((q for q in self._queue if q.session_id not in waiting), None)

    def _reply_pending(self, session_id: str) -> bool:
        awaited = self._replies[session_id]
        session = self._store.sessions.get(session_id)
        busy = session is not None and session.status.get("type") != "idle"
        awaited.seen_busy |= busy
        # Over once the session is idle again (1.0.152 was seen to store, and never answer,
        # a prompt sent 30 ms after its reply said completed, before its turn had ended),
        # and the reply is complete, or the turn ended without one (aborted, killed), or
        # never started in time.
        over = not busy and (
            awaited.seen_busy
            or self._replied(session_id, awaited.message_id)
            or anyio.current_time() > awaited.deadline
        )
        if over:
            del self._replies[session_id]
        return not over

    def _replied(self, session_id: str, message_id: str) -> bool:
        for message in reversed(self._store.messages(session_id)):
            info = message["info"]
            if info.get("role") == "assistant" and info.get("parentID") == message_id:
                return bool(info.get("time", {}).get("completed") or info.get("error"))
        return False

    async def _deliver(self, item: Queued) -> bool:
        """Deliver one message; False to try again later (the server is out of reach)."""
        message_id, session_id = item.message_id, item.session_id
        try:
            asked_at = self._store.clock
            known = await self._on_server(item) if item.state == "sending" else None
            if known is not None:
                # Delivered before the interruption: its echo may be long gone, so show
                # the server's copy (that confirms it) instead of waiting for one.
                log.info("%s was delivered before the interruption", message_id)
                self._load(session_id, known, asked_at)
            else:
                if item.state == "queued" and (ids.age_ms(message_id) or 0) > _FRESH_MS:
                    message_id = await self._rekey(item)
                await self._mark(item, "sending")
                await self.client.send(
                    session_id,
                    item.parts,
                    message_id=message_id,
                    model=item.options.get("model"),
                    agent=item.options.get("agent"),
                    # One attempt: this loop retries with its own backoff, and between
                    # attempts the message is queued again, so the user can still edit it.
                    retries=0,
                )
                self._on_step("sent", message_id)
                await self._until_on_server(item)
                deadline = anyio.current_time() + _START_TIMEOUT
                self._replies[session_id] = _Awaited(message_id, deadline)
        except Unreachable as exc:
            log.info("%s waits for the server: %s", message_id, exc)
            if exc.maybe_sent:  # the server may have it: only asking it can tell
                self._set_local(message_id, "sending", str(exc))
            else:  # it cannot have it: still the user's to edit or cancel
                await self._mark(item, "queued")
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

    async def _until_on_server(self, item: Queued) -> None:
        """Return once the server holds the message: `prompt_async` answers before it is
        written, and the next message must not overtake it (the server keeps them in the
        order it writes them)."""
        delay = 0.05
        with anyio.move_on_after(_CONFIRM_TIMEOUT):
            while self._store.local_state(item.message_id) != "confirmed":  # echo not seen
                asked_at = self._store.clock
                known = await self._on_server(item)
                if known is not None:
                    self._load(item.session_id, known, asked_at)
                    return
                await anyio.sleep(delay)
                delay = min(2 * delay, 1.0)
            return
        log.warning(
            "%s: accepted, but not on the server after %ss", item.message_id, _CONFIRM_TIMEOUT
        )

    def _load(self, session_id: str, message: JSON, asked_at: int) -> None:
        self._publish(self._store.load_messages(session_id, [message], as_of=asked_at))

    def _change(self, update: Callable[[Store], list[Patch]]) -> None:
        self._publish(update(self._store))

    async def _rekey(self, item: Queued) -> str:
        """New ids for a message that waited: the server keeps messages in the order it
        writes them, views in the order of their ids, and an id made before the replies
        that came in meanwhile would sort before them."""
        old_id, new_id = item.message_id, ids.message_id()
        parts = [{**part, "id": ids.part_id()} for part in item.parts]
        if self._cache is not None:
            await self._write(self._cache.rekey, old_id, new_id, parts)
        item.message_id, item.parts = new_id, parts
        self._aliases[old_id] = new_id
        self._change(lambda store: store.remove_message(item.session_id, old_id))
        self._show(item)
        return new_id

    async def _on_server(self, item: Queued) -> JSON | None:
        """The server's copy of the message, None if it does not have it."""
        try:
            return await self.client.message(item.session_id, item.message_id)
        except NotFound:
            return None

    async def _mark(self, item: Queued, state: str) -> None:
        if item.state != state:
            if self._cache is not None:
                await self._write(self._cache.set_outbox_state, item.message_id, state)
            item.state = state
        self._set_local(item.message_id, state)
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
