"""Stream and runtime behaviour that a real OpenCode cannot show, or not on cue: 204,
compressed or wrong answers, the debug log, back-pressure, the moment after connecting.

(Real servers exercise the rest in tests/integration/test_runtime.py.)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import httpx
import orjson
import pytest

from openchamber.client import OpenCodeClient
from openchamber.protocol import Event
from openchamber.runtime import Runtime
from openchamber.store import Patch
from openchamber.stream import (
    DEBUG_LOGGERS,
    FRAME_CHARS,
    PREVIEW_CHARS,
    EventStream,
    State,
    Status,
    Watchdog,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_watchdog_learns_the_heartbeat_period() -> None:
    watchdog = Watchdog()
    assert watchdog.deadline == 75.0  # 2.5 x the 30 s assumed before any heartbeat
    for now in (0.0, 10.0, 20.0, 45.0):  # a busy stretch does not lengthen the period
        watchdog.beat(now)
    assert watchdog.period == 10.0
    assert watchdog.deadline == 25.0
    watchdog.reset_connection()
    watchdog.beat(100.0)
    assert watchdog.period == 10.0  # what was learned outlives the connection


async def run_against(response: httpx.Response, seconds: float = 5) -> list[Status]:
    statuses: list[Status] = []
    transport = httpx.MockTransport(lambda request: response)
    client = OpenCodeClient("http://127.0.0.1:9", transport=transport)

    async def on_status(status: Status) -> None:
        statuses.append(status)
        if status.state == State.RECONNECTING:
            scope.cancel()

    async def ignore(*_: object) -> None:
        return None

    async def on_events(_: list[Event]) -> None:
        return None

    stream = EventStream(client, on_events, ignore, on_status)
    with anyio.move_on_after(seconds) as scope:
        await stream.run()
    await client.aclose()
    return statuses


async def test_204_means_stop() -> None:
    statuses = await run_against(httpx.Response(204))
    assert [s.state for s in statuses] == [State.CONNECTING, State.STOPPED]


async def test_compressed_stream_is_refused_naming_the_header() -> None:
    response = httpx.Response(
        200, headers={"content-type": "text/event-stream", "content-encoding": "gzip"}
    )
    statuses = await run_against(response)
    assert statuses[-1].state == State.RECONNECTING
    assert "Content-Encoding is gzip" in statuses[-1].hint


async def test_a_page_instead_of_a_stream_is_refused_naming_the_header() -> None:
    statuses = await run_against(httpx.Response(200, headers={"content-type": "text/html"}))
    assert "Content-Type is text/html" in statuses[-1].hint


@pytest.fixture
def debug_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """OPENCHAMBER_SSE_DEBUG=1, and the loggers as they were afterwards."""
    monkeypatch.setenv("OPENCHAMBER_SSE_DEBUG", "1")
    loggers = [logging.getLogger(name) for name in DEBUG_LOGGERS]
    before = [(logger.level, list(logger.handlers)) for logger in loggers]
    yield
    for logger, (level, handlers) in zip(loggers, before, strict=True):
        logger.setLevel(level)
        logger.handlers[:] = handlers


def frame(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps({"directory": "/p", "payload": payload}) + b"\n\n"


def part_event(text: str) -> dict[str, Any]:
    part = {"id": "prt_1", "messageID": "msg_1", "sessionID": "ses_1", "type": "text"}
    streaming = {**part, "text": text, "time": {"start": 1}}
    return {"type": "message.part.updated", "properties": {"part": streaming}}


def delta_event(delta: str) -> dict[str, Any]:
    properties = {"sessionID": "ses_1", "messageID": "msg_1", "partID": "prt_1"}
    return {
        "type": "message.part.delta",
        "properties": {**properties, "field": "text", "delta": delta},
    }


def event_stream(body: bytes) -> httpx.Response:
    return httpx.Response(
        200, headers={"content-type": "text/event-stream"}, stream=httpx.ByteStream(body)
    )


CONNECTED = frame({"type": "server.connected", "properties": {}})
SECRET = "sk-" + "S3cr3tS3cr3tS3cr3t"


@pytest.mark.usefixtures("debug_logging")
async def test_debug_log_shows_events_with_short_redacted_previews(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = b"".join(
        [
            CONNECTED,
            frame(part_event(f"Authorization: Bearer {SECRET} " + "x" * 300)),
            frame(delta_event(f"{SECRET} y")),
            b"data: {broken " + b"z" * 2000 + b"\n\n",
        ]
    )
    response = event_stream(body)
    with caplog.at_level(logging.INFO, logger="openchamber.stream"):
        statuses = await run_against(response)
    lines = [r.getMessage() for r in caplog.records if r.name == "openchamber.stream"]
    assert isinstance(logging.getLogger("openchamber.stream").handlers[-1], logging.StreamHandler)
    assert logging.getLogger("openchamber.runtime").level == logging.INFO

    part = next(line for line in lines if line.startswith("PartUpdated part=prt_1"))
    assert "type=text" in part
    assert f"text={len(SECRET) + 323}" in part
    delta = next(line for line in lines if line.startswith("PartDelta part=prt_1"))
    assert f"text +{len(SECRET) + 2}" in delta
    for line in (part, delta):
        shown = line[line.index("'") + 1 : line.rindex("'")]
        assert len(shown) <= PREVIEW_CHARS
        assert "S3cr3t" not in shown
        assert "***" in shown
    broken = next(line for line in lines if line.startswith("Diagnostic json"))
    assert "z" * 400 in broken
    assert "z" * (FRAME_CHARS + 1) not in broken
    assert f"stream reconnecting: {statuses[-1].hint}" in lines
    assert "the server closed the stream" in statuses[-1].hint


async def test_debug_log_is_off_by_default(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENCHAMBER_SSE_DEBUG", raising=False)
    body = CONNECTED + frame(part_event("hello"))
    with caplog.at_level(logging.INFO, logger="openchamber.stream"):
        await run_against(event_stream(body))
    assert not [r for r in caplog.records if "PartUpdated" in r.getMessage()]


class FakeServer:
    """Just enough of a 1.18 server for the runtime: REST answers, and an event stream
    that sends `frames`, then frames from `endless(n)` (if given) for as long as it is
    read, else nothing more (open and silent: no reconnect, no new repair)."""

    def __init__(
        self,
        frames: list[bytes],
        endless: Callable[[int], bytes] | None = None,
        appear_after_first_list: list[dict[str, Any]] | None = None,
    ) -> None:
        self.frames = frames
        self.endless = endless
        self.pulled = 0  # chunks of the event stream handed out so far
        self.sessions: list[dict[str, Any]] = []
        self.later_sessions = appear_after_first_list or []

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/global/event":
            headers = {"content-type": "text/event-stream"}
            return httpx.Response(200, headers=headers, stream=Chunks(self))
        if path == "/session":
            response = httpx.Response(200, json=self.sessions)
            self.sessions, self.later_sessions = self.sessions + self.later_sessions, []
            return response
        answers: dict[str, Any] = {
            "/global/health": {"healthy": True, "version": "1.18.33"},
            "/session/status": {},
        }
        return httpx.Response(200, json=answers.get(path, []))


class Chunks(httpx.AsyncByteStream):
    """The event stream's body, one frame per chunk, counted as they are taken."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.server.frames:
            self.server.pulled += 1
            yield chunk
        if self.server.endless is None:
            await anyio.sleep_forever()
        n = 0
        while True:
            await anyio.lowlevel.checkpoint()  # as a socket's read does
            self.server.pulled += 1
            n += 1
            yield self.server.endless(n)


async def test_a_slow_patch_consumer_slows_reading_instead_of_buffering() -> None:
    server = FakeServer([CONNECTED, frame(part_event(""))], lambda n: frame(delta_event(f"{n} ")))
    stuck, release, grown = anyio.Event(), anyio.Event(), anyio.Event()

    async def on_patches(patches: list[Patch]) -> None:
        if any(p["op"] == "part.text.append" for p in patches) and not release.is_set():
            stuck.set()
            await release.wait()  # a view that cannot keep up
        if runtime.store.part_text_length("prt_1") >= 1000:
            grown.set()

    async with (
        OpenCodeClient("http://127.0.0.1:9", transport=server.transport()) as client,
        anyio.create_task_group() as tasks,
    ):
        runtime = Runtime(client, on_patches)
        tasks.start_soon(runtime.run)
        with anyio.fail_after(5):
            await stuck.wait()
            # Everything else idles: nothing reads on from the endless stream meanwhile
            # (if something did, it would never idle and this would time out).
            await anyio.wait_all_tasks_blocked()
        assert server.pulled == 3  # connected, the part, the delta being delivered
        release.set()
        with anyio.fail_after(5):
            await grown.wait()  # and once the consumer keeps up, reading goes on
        tasks.cancel_scope.cancel()


async def test_what_the_server_publishes_just_after_connecting_is_repaired() -> None:
    """1.18 attaches its subscription after sending `server.connected`; what it publishes
    in between is lost. Here a session appears in that moment: after the repair at
    connect read the session list, announced by no event. The first event (a heartbeat)
    proves the subscription live, and the repair made then finds the session."""
    new = {"id": "ses_new", "title": "made in the moment", "time": {"created": 1, "updated": 1}}
    heartbeat = frame({"type": "server.heartbeat", "properties": {}})
    server = FakeServer([CONNECTED, heartbeat], appear_after_first_list=[new])
    known = anyio.Event()

    async def on_patches(patches: list[Patch]) -> None:
        if any(p["op"] == "session.upsert" and p["sessionID"] == "ses_new" for p in patches):
            known.set()

    async with (
        OpenCodeClient("http://127.0.0.1:9", transport=server.transport()) as client,
        anyio.create_task_group() as tasks,
    ):
        runtime = Runtime(client, on_patches)
        tasks.start_soon(runtime.run)
        with anyio.fail_after(5):
            await known.wait()
        tasks.cancel_scope.cancel()
    assert runtime.store.sessions["ses_new"].info == new
