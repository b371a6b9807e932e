"""EventStream behaviour that a real OpenCode cannot show: 204, compressed or wrong answers.

(Real servers exercise the rest in tests/integration/test_runtime.py.)
"""

from __future__ import annotations

import anyio
import httpx
import pytest

from openchamber.client import OpenCodeClient
from openchamber.protocol import Event
from openchamber.stream import EventStream, State, Status, Watchdog

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
