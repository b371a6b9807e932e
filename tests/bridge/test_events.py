"""How a view's WebSocket is paced: a change after a quiet spell goes at once, a burst
goes as one message a frame."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import orjson
import pytest

from openchamber.bridge.events import follow
from openchamber.bridge.feed import Feed
from openchamber.store import Patch, Store

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeSocket:
    """What `follow` uses of a Starlette WebSocket; sent messages land in a stream."""

    def __init__(self) -> None:
        self.query_params: dict[str, str] = {}
        self._sent, self.messages = anyio.create_memory_object_stream[tuple[float, Any]](100)
        self._closed = anyio.Event()

    async def accept(self) -> None:
        pass

    async def receive(self) -> dict[str, str]:
        await self._closed.wait()
        return {"type": "websocket.disconnect"}

    async def send_text(self, text: str) -> None:
        await self._sent.send((anyio.current_time(), orjson.loads(text)))

    def close(self) -> None:
        self._closed.set()


def append(text: str) -> Patch:
    return {"op": "part.text.append", "partID": "prt_1", "field": "text", "text": text}


@contextlib.asynccontextmanager
async def following(frame: float) -> AsyncIterator[tuple[Feed, FakeSocket]]:
    """A feed and a view following it with this frame; the view leaves at the end."""
    feed, socket = Feed(Store(), dict), FakeSocket()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(follow, socket, feed, frame)
        yield feed, socket
        socket.close()


async def test_the_first_change_after_a_quiet_spell_is_sent_at_once() -> None:
    frame = 1.0
    async with following(frame) as (feed, socket):
        with anyio.fail_after(10):
            snapshot_at, first = await socket.messages.receive()
            assert first["type"] == "snapshot"
            await anyio.sleep_until(snapshot_at + frame)  # a frame with nothing sent
            added_at = anyio.current_time()
            feed.add([append("hello")])
            sent_at, message = await socket.messages.receive()
    assert message["patches"] == [append("hello")]
    assert sent_at - added_at < frame  # not held back for a frame


async def test_a_burst_goes_as_one_message_a_frame() -> None:
    frame = 0.3
    async with following(frame) as (feed, socket):
        with anyio.fail_after(5):
            await socket.messages.receive()  # the snapshot
            feed.add([append("a")])
            sent_at, _ = await socket.messages.receive()
            for text in "bcd":
                feed.add([append(text)])
                await anyio.wait_all_tasks_blocked()  # the sender is waiting out its frame
            assert socket.messages.statistics().current_buffer_used == 0
            later, message = await socket.messages.receive()
    assert message["patches"] == [append("bcd")]
    assert later - sent_at >= frame
