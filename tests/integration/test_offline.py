"""Offline and restart against real servers: the cache shows history while the server is
down, queued messages go out once, in order, when it returns; a crash at any step of a
delivery still delivers exactly once."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

import anyio
import httpx
import pytest

from openchamber import ids
from openchamber.cache import Cache
from openchamber.server import OpenCodeServer

from ..bridge.harness import api, new_session, running_bridge, settle, truth
from ..bridge.process import BridgeProcess
from ..bridge.view import Follower, View
from ..conftest import LaunchOpenCode
from ..support import assistant_done, stream_with_session

pytestmark = [pytest.mark.integration]


def assistant_replies(view: View, session_id: str) -> int:
    return sum(
        1
        for m in view.messages(session_id)
        if m["info"].get("role") == "assistant" and m["info"].get("time", {}).get("completed")
    )


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_restart_with_the_server_down_shows_the_cache_then_delivers_the_queue_once(
    opencode_version: str, launch_opencode: LaunchOpenCode, tmp_path: Path
) -> None:
    server = launch_opencode(opencode_version)
    cache_path = tmp_path / "cache.db"

    # A first run: a session with one exchange, cached as it settles.
    async with (
        running_bridge(server, cache=Cache(cache_path, server.url)) as bridge,
        api(bridge) as http,
    ):
        follower = Follower(bridge.url, bridge.token)
        async with anyio.create_task_group() as tasks:
            await tasks.start(follower.follow)
            sid = await new_session(http)
            await http.post(f"/api/sessions/{sid}/messages", json={"text": "reply=short one"})
            await follower.wait_until(lambda v: assistant_replies(v, sid) == 1)
            await settle(follower, server, sid)
            tasks.cancel_scope.cancel()
    history = await truth(server, sid)
    await anyio.to_thread.run_sync(server.stop)

    # openchamber starts again while the server is down: the cache shows the history.
    queued = [ids.message_id(), ids.message_id()]
    texts = [f"reply=short queued {number}" for number in range(len(queued))]
    async with (
        running_bridge(server, cache=Cache(cache_path, server.url)) as bridge,
        api(bridge) as http,
    ):
        snapshot = (await http.get("/api/snapshot")).json()
        assert snapshot["confirmed"] is False
        assert snapshot["status"]["state"] != "connected"
        assert snapshot["sessions"][sid] == history
        for number, message_id in enumerate(queued):
            sent = await http.post(
                f"/api/sessions/{sid}/messages",
                json={"text": texts[number], "messageID": message_id},
            )
            assert sent.json()["state"] == "queued"
        follower = Follower(bridge.url, bridge.token)
        async with anyio.create_task_group() as tasks:
            await tasks.start(follower.follow)
            states = [m.get("local", {}).get("state") for m in follower.view.messages(sid)]
            await follower.wait_until(
                lambda v: (
                    [m.get("local", {}).get("state") for m in v.messages(sid)][-2:]
                    == ["queued", "queued"]
                )
            )
            # The server comes back on the same address.
            await anyio.to_thread.run_sync(server.restart)
            await follower.wait_until(
                lambda v: v.confirmed and confirmed_texts(v, sid)[1:] == texts
            )
            await settle(follower, server, sid)
            tasks.cancel_scope.cancel()
    assert states  # the view saw the cached history at once
    users = [m for m in await truth(server, sid) if m["info"]["role"] == "user"]
    # Both delivered, once each, in order (under new ids: they waited, see Outbox._rekey).
    assert [m["parts"][0]["text"] for m in users[1:]] == texts
    assert len(users) == 3
    assert follower.view.shrinks == []


def driver(server: OpenCodeServer, cache: Path, crash_at: str | None = None) -> BridgeProcess:
    """`bridge_driver` over `server` with `cache`, crashing at a delivery step if asked."""
    crash = ["--crash-at", crash_at] if crash_at else []
    args = [server.url, str(cache), *crash]
    return BridgeProcess("tests.integration.bridge_driver", args, server.password)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("step", ["queued", "sending", "sent", "delivered"])
async def test_a_crash_at_any_step_of_a_delivery_still_delivers_exactly_once(
    opencode: OpenCodeServer, tmp_path: Path, step: str
) -> None:
    cache = tmp_path / "cache.db"
    witness, sid = await anyio.to_thread.run_sync(stream_with_session, opencode)
    crashed = await anyio.to_thread.run_sync(driver, opencode, cache, step)
    message_id = ids.message_id()  # made as a view makes it: when the user sends
    body = {"text": f"reply=short crash at {step}", "messageID": message_id}
    # It may die before answering: the words are in the cache by then.
    async with crashed.http() as http:
        with contextlib.suppress(httpx.TransportError):
            await http.post(f"/api/sessions/{sid}/messages", json=body)
    assert await anyio.to_thread.run_sync(crashed.process.wait, 60) == -signal.SIGKILL

    restarted = await anyio.to_thread.run_sync(driver, opencode, cache)
    follower = Follower(restarted.url, restarted.token)
    try:
        await anyio.to_thread.run_sync(witness.wait_for, assistant_done(sid))
        async with anyio.create_task_group() as tasks:
            await tasks.start(follower.follow)
            async with restarted.http() as http:  # a view opening the session loads it
                await http.get(f"/api/sessions/{sid}/messages", params={"limit": 50})
            # The restarted bridge ends with the message confirmed by the server.
            await follower.wait_until(lambda v: confirmed_texts(v, sid) == [body["text"]])
            await settle(follower, opencode, sid)
            tasks.cancel_scope.cancel()
    finally:
        await anyio.to_thread.run_sync(restarted.stop)
        witness.close()
    messages = await truth(opencode, sid)
    users = [m for m in messages if m["info"]["role"] == "user"]
    replies = [m for m in messages if m["info"]["role"] == "assistant"]
    assert [m["parts"][0]["text"] for m in users] == [body["text"]]
    assert len(replies) == 1
    # Under its own id unless it waited in the queue long enough for new ones.
    assert users[0]["info"]["id"] == message_id or step == "queued"


def confirmed_texts(view: View, session_id: str) -> list[str]:
    """The texts of the session's user messages the server has confirmed, in order."""
    return [
        m["parts"][0]["text"]
        for m in view.messages(session_id)
        if m["info"].get("role") == "user" and m.get("local") is None and m["parts"]
    ]
