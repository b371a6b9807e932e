"""The resilient connection to an OpenCode event stream.

`EventStream.run()` keeps one stream open for as long as it runs: it reconnects after
errors *and* after clean closes (OpenCode never replays, so a close is a gap too), with
full-jitter backoff; it declares a silent connection dead from the heartbeat cadence it
has learned; it notices when the process was suspended (laptop lid, SIGSTOP) and
reconnects at once; and it reports every change of state with a hint for people.
What the events mean is not its business: they go to `on_events`; every new connection
goes to `on_connected`, where the caller repairs the gap, and to `on_live` once the
connection has proven that the server's subscription is attached (see `on_live`).

Bounded memory: there is no queue between the socket and the caller. Each chunk read is
decoded and handed to `on_events`, and the next read waits until that returns, so a
slow consumer slows reading and TCP pushes back to the server instead of events piling
up here. What is held meanwhile is bounded: the decoder's one unfinished frame (at most
`StreamParser.max_event_size`) and the store's own capped buffers. Views that fall
behind are the bridge's business: its hub keeps a bounded ring and sends a snapshot.

`OPENCHAMBER_SSE_DEBUG=1` logs every event (type, ids, text lengths, an 80-character
redacted preview), every reconnect reason and every frame that could not be read (500
characters at most) at INFO to stderr, on the loggers `openchamber.stream` and
`openchamber.runtime`.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import httpx

from openchamber.backoff import Backoff
from openchamber.client import OpenCodeClient
from openchamber.protocol import (
    Diagnostic,
    Durable,
    Event,
    Heartbeat,
    PartDelta,
    PartUpdated,
    RawEvent,
    ServerConnected,
    StreamParser,
)
from openchamber.redact import redact

log = logging.getLogger("openchamber.stream")

DEBUG_ENV = "OPENCHAMBER_SSE_DEBUG"
DEBUG_LOGGERS = ("openchamber.stream", "openchamber.runtime")
PREVIEW_CHARS = 80
FRAME_CHARS = 500
_SUSPENDED = "the process was suspended; reconnecting at once"


def debug_requested() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


class _DebugHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler `enable_debug_logging` added, so it is added once."""


def enable_debug_logging() -> None:
    """INFO from the stream and runtime loggers to stderr (once, however often called)."""
    for name in DEBUG_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        if not any(isinstance(h, _DebugHandler) for h in logger.handlers):
            handler = _DebugHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
            logger.addHandler(handler)


def preview(text: str) -> str:
    """At most `PREVIEW_CHARS` of `text`, secrets masked, as a quoted one-line literal."""
    # Masked before the cut, over a wider window, so a secret straddling the cut is
    # masked whole instead of leaving a recognisable head behind.
    return repr(redact(text[: PREVIEW_CHARS * 2])[:PREVIEW_CHARS])


def describe(event: Event) -> str:
    """One line about an event for the debug log: kind, ids, text lengths, a preview."""
    match event:
        case Durable():
            return f"Durable {event.aggregate_id} seq={event.seq}: {describe(event.inner)}"
        case PartDelta():
            return (
                f"PartDelta part={event.part_id} message={event.message_id} "
                f"{event.field} +{len(event.delta)} {preview(event.delta)}"
            )
        case PartUpdated(part=part):
            text = part.get("text")
            shown = f" text={len(text)} {preview(text)}" if isinstance(text, str) else ""
            grown = f" delta=+{len(event.delta)}" if event.delta is not None else ""
            return (
                f"PartUpdated part={part.get('id')} type={part.get('type')} "
                f"message={event.message_id}{shown}{grown}"
            )
        case Diagnostic():
            return (
                f"Diagnostic {event.kind} at byte {event.offset}: {event.message}; "
                f"frame: {event.excerpt[:FRAME_CHARS]}"
            )
        case RawEvent():
            return f"RawEvent {event.type}"
    session = getattr(event, "session_id", None)
    return type(event).__name__ + (f" session={session}" if session else "")


class State(enum.StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    STALE = "stale"
    RECONNECTING = "reconnecting"
    AUTH_FAILED = "auth-failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Status:
    state: State
    hint: str
    attempt: int = 0
    delay: float | None = None  # seconds until the next attempt, when reconnecting

    def to_json(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "hint": self.hint,
            "attempt": self.attempt,
            "delay": self.delay,
        }


class StreamRejected(Exception):
    """The server answered, but not with an event stream we can read; says which header."""


@dataclass
class Watchdog:
    """Learns the heartbeat period and says when silence means a dead connection.

    Until a period is learned it assumes `assumed_period` (30 s: the slowest cadence of
    servers that send heartbeats; servers before 1.0.164 send none, and then a silent
    idle connection is simply re-opened now and then, which costs a resync).
    """

    assumed_period: float = 30.0
    factor: float = 2.5
    period: float | None = None
    _last_beat: float | None = None

    def beat(self, now: float) -> None:
        if self._last_beat is not None:
            gap = now - self._last_beat
            # The shortest gap seen is the cadence; longer ones include busy stretches.
            self.period = gap if self.period is None else min(self.period, max(gap, 1.0))
        self._last_beat = now

    def reset_connection(self) -> None:
        self._last_beat = None

    @property
    def deadline(self) -> float:
        return self.factor * (self.period or self.assumed_period)


@dataclass
class EventStream:
    client: OpenCodeClient
    on_events: Callable[[list[Event]], Awaitable[None]]
    on_connected: Callable[[], Awaitable[None]]
    on_status: Callable[[Status], Awaitable[None]]
    # Called once per connection, after the first event other than `server.connected`
    # was handed to `on_events`. 1.18 attaches its bus subscription only after sending
    # `server.connected` (measured: up to ~30 ms later on an idle machine) and loses
    # what is published in between; any later event proves the subscription is live, so
    # a repair made from here on covers that window.
    on_live: Callable[[], Awaitable[None]] | None = None
    # Called before each connection attempt (e.g. to choose `path` once the server answers).
    before_connect: Callable[[], Awaitable[None]] | None = None
    path: str = "/global/event"
    watchdog: Watchdog = field(default_factory=Watchdog)
    backoff: Backoff = field(default_factory=lambda: Backoff(base=0.5, cap=30.0))
    healthy_after: float = 10.0  # a connection this old resets the backoff
    # How long an answer to the stream request may take: a healthy server answers at
    # once, but a request sent on a pooled connection to a server that went away, or to
    # one still starting (1.18 was seen never answering), would wait forever.
    header_timeout: float = 5.0
    wake_threshold: float = 5.0  # a tick this late means the process was suspended
    tick: float = 1.0
    last_event_id: str = ""
    server_retry: float | None = None
    debug: bool = field(default_factory=debug_requested)
    _next_tick: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.debug:
            enable_debug_logging()

    async def run(self) -> None:
        """Run until stopped (`204`, auth refused, or cancelled)."""
        await self._status(State.CONNECTING, "opening the event stream")
        attempt = 0
        while True:
            outcome, woke = await self._connect_once()
            if outcome in (State.STOPPED, State.AUTH_FAILED):
                return
            attempt += 1
            delay = 0.0 if woke else self.backoff.next()
            if self.server_retry is not None and not woke:
                delay = max(delay, self.server_retry)
            await self._status(
                State.RECONNECTING, f"{outcome}; reconnecting in {delay:.1f}s", attempt, delay
            )
            await anyio.sleep(delay)

    async def _status(
        self, state: State, hint: str, attempt: int = 0, delay: float | None = None
    ) -> None:
        log.info("stream %s: %s", state, hint)
        await self.on_status(Status(state, hint, attempt, delay))

    async def _connect_once(self) -> tuple[str, bool]:
        """One connection, until it ends: why (a hint, or a final State), and whether it
        ended because the process woke from a suspension."""
        if self.before_connect is not None:
            await self.before_connect()
        headers = {
            "Accept": "text/event-stream",
            "Accept-Encoding": "identity",
            "Cache-Control": "no-cache",
        }
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        params = {"directory": self.client.directory} if self.client.directory else {}
        self.watchdog.reset_connection()
        self._next_tick = time.monotonic() + self.tick
        reason = _SUSPENDED  # what it was if the wake watcher cancels the read
        async with anyio.create_task_group() as tasks:
            woke = anyio.Event()
            tasks.start_soon(self._watch_for_wake, woke, tasks.cancel_scope)
            reason = await self._read_until_closed(headers, params)
            tasks.cancel_scope.cancel()
        return reason, woke.is_set() or reason == _SUSPENDED

    async def _read_until_closed(self, headers: dict[str, str], params: dict[str, str]) -> str:
        """Why the connection ended, as a hint (or a final State); never raises for I/O."""
        try:
            return await self._read(headers, params)
        except StreamRejected as exc:
            return str(exc)
        except (httpx.TimeoutException, TimeoutError):
            return "no response from the server"
        except httpx.TransportError as exc:
            return f"connection failed ({exc or type(exc).__name__})"

    async def _read(self, headers: dict[str, str], params: dict[str, str]) -> str:
        request = self.client.http.build_request(
            "GET",
            self.path,
            headers=headers,
            params=params,
            timeout=httpx.Timeout(10.0, read=None),  # the body may be silent for long
        )
        # ...but the headers must come (see `header_timeout`).
        with anyio.fail_after(self.header_timeout):
            response = await self.client.http.send(request, stream=True)
        try:
            return await self._read_body(response)
        finally:
            await response.aclose()

    async def _read_body(self, response: httpx.Response) -> str:
        verdict = await self._check(response)
        if verdict is not None:
            return verdict
        opened = time.monotonic()
        await self._status(State.CONNECTED, f"streaming from {self.client.base_url}")
        await self.on_connected()
        parser = StreamParser()
        chunks = response.aiter_raw()
        live = False
        # One scope whose deadline moves, not a scope per read: a busy stream reads
        # thousands of times a second. It is armed only while waiting for the server.
        with anyio.CancelScope() as silence:
            while True:
                silence.deadline = anyio.current_time() + self.watchdog.deadline
                chunk = await anext(chunks, None)
                silence.deadline = math.inf
                if chunk is None:
                    return "the server closed the stream"
                if time.monotonic() - opened > self.healthy_after:
                    self.backoff.reset()
                events = parser.feed(chunk)
                self._learn(parser, events)
                if not events:
                    continue
                if self.debug:
                    for event in events:
                        log.info("%s", describe(event))
                await self.on_events(events)
                if not live and any(type(e) is not ServerConnected for e in events):
                    live = True
                    if self.on_live is not None:
                        await self.on_live()
        if self._suspended():
            return _SUSPENDED  # the silence was ours, not the server's
        await self._status(
            State.STALE,
            f"no data for {self.watchdog.deadline:.0f}s (heartbeat every "
            f"{self.watchdog.period or self.watchdog.assumed_period:.0f}s)",
        )
        return "the connection went silent"

    def _learn(self, parser: StreamParser, events: list[Event]) -> None:
        now = time.monotonic()
        for event in events:
            if isinstance(event, Heartbeat):
                self.watchdog.beat(now)
        decoder = parser.decoder
        self.last_event_id = decoder.last_event_id or self.last_event_id
        if decoder.retry is not None:
            self.server_retry = decoder.retry / 1000

    async def _check(self, response: httpx.Response) -> str | None:
        """None if this is a readable event stream; else why not (or a final State)."""
        status = response.status_code
        if status == 204:
            await self._status(State.STOPPED, "the server asked us to stop (204)")
            return State.STOPPED
        if status in (401, 403):
            await self._status(
                State.AUTH_FAILED,
                f"the server refused the credentials ({status}); check OPENCODE_SERVER_PASSWORD",
            )
            return State.AUTH_FAILED
        if status != 200:
            raise StreamRejected(f"GET {self.path} answered {status}")
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith("text/event-stream"):
            raise StreamRejected(
                f"Content-Type is {content_type or 'missing'}, not an event stream"
            )
        encoding = response.headers.get("content-encoding", "identity")
        if encoding not in ("", "identity"):
            raise StreamRejected(
                f"Content-Encoding is {encoding}: something between us and the server "
                "compresses the stream (it holds events back); turn that off"
            )
        return None

    async def _watch_for_wake(self, woke: anyio.Event, scope: anyio.CancelScope) -> None:
        """Cancel the connection when the process comes back from a suspension.

        A suspended process sees a loop tick arrive far too late, and its wall clock jump
        against the monotonic one (which may stop while suspended).
        """
        skew = time.time() - time.monotonic()
        while True:
            await anyio.sleep(self.tick)
            now = time.monotonic()
            late = now - self._next_tick
            jump = abs((time.time() - now) - skew)
            if late > self.wake_threshold or jump > self.wake_threshold:
                log.info("woke after %.1fs (clock jump %.1fs)", late, jump)
                woke.set()
                scope.cancel()
                return
            self._next_tick = now + self.tick
            skew = time.time() - now

    def _suspended(self) -> bool:
        """Whether the wake watcher's tick is overdue: the process itself stood still.

        After a suspension the watchdog's deadline and the watcher's tick are due at
        once; whichever runs first must call it a wake, not a dead server.
        """
        return time.monotonic() - self._next_tick > self.wake_threshold
