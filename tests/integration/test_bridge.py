"""The bridge over real servers: views follow a streaming reply live, resume by cursor
without losing a patch, fall back to a snapshot when away too long, and a send is
idempotent by its message id."""

from __future__ import annotations

import uuid

import anyio
import httpx
import pytest
from websockets.exceptions import InvalidStatus

from openchamber import ids
from openchamber.server import OpenCodeServer
from openchamber.testing.model import ModelServer

from ..bridge.harness import api, new_session, running_bridge, settle, truth
from ..bridge.view import Follower, View
from ..support import assistant_done, stream_with_session

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_reply_sent_through_the_bridge_streams_live_and_ends_equal_to_rest(
    opencode: OpenCodeServer,
) -> None:
    async with running_bridge(opencode) as bridge, api(bridge) as http:
        follower = Follower(bridge.url, bridge.token)
        async with anyio.create_task_group() as tasks:
            await tasks.start(follower.follow)
            await follower.wait_until(lambda v: v.status.get("state") == "connected")
            sid = await new_session(http)
            sent = await http.post(
                f"/api/sessions/{sid}/messages",
                json={"text": "reply=long len=4000 chunk=7 delay=1"},
            )
            assert sent.status_code == 202, sent.text
            # Live: the view holds part of the reply while it is still being written.
            await follower.wait_until(lambda v: 0 < v.longest_text() < 4000)
            await settle(follower, opencode, sid)
            snapshot = (await http.get("/api/snapshot")).json()
            tasks.cancel_scope.cancel()
        expected = await truth(opencode, sid)
        assert snapshot["sessions"][sid] == expected
        assert snapshot["cursor"] >= follower.view.cursor
        view = follower.view
        assert view.shrinks == []
        assert view.cursor_regressions == 0
        assert view.snapshots == 1
        replies = [p for m in expected if m["info"]["role"] == "assistant" for p in m["parts"]]
        assert sum(len(p.get("text", "")) for p in replies if p["type"] == "text") >= 3900


async def test_views_messages_are_not_compressed(opencode: OpenCodeServer) -> None:
    """Views are on the same machine: the bridge turns down permessage-deflate, which the
    client (like browsers) offers, rather than compress every small message."""
    async with running_bridge(opencode) as bridge:
        follower = Follower(bridge.url, bridge.token)
        async with anyio.create_task_group() as tasks:
            socket = await tasks.start(follower.follow)
            await follower.wait_until(lambda v: v.snapshots == 1)
            tasks.cancel_scope.cancel()
    assert socket.request is not None
    assert socket.response is not None
    assert "permessage-deflate" in socket.request.headers["Sec-WebSocket-Extensions"]
    assert "Sec-WebSocket-Extensions" not in socket.response.headers


async def test_views_churning_while_a_reply_streams_lose_nothing(
    opencode: OpenCodeServer, model: ModelServer
) -> None:
    """Subscribe, read a little, leave, come back with the cursor, over and over: the view
    replays exactly what it missed (never a snapshot) and ends equal to the server."""
    gate = f"churn-{uuid.uuid4().hex[:8]}"
    async with running_bridge(opencode) as bridge, api(bridge) as http:
        view = View()
        sid = await new_session(http)
        prompt = f"reply=long len=3000 chunk=3 delay=1 pause={gate} at=500"
        await http.post(f"/api/sessions/{sid}/messages", json={"text": prompt})
        for round_ in range(40):
            if round_ == 20:  # half the rounds before the gate, half while it streams on
                assert await anyio.to_thread.run_sync(model.reached, gate, 60)
                model.open_gate(gate)
            follower = Follower(bridge.url, bridge.token, view)
            seen = view.patches
            async with anyio.create_task_group() as tasks:
                await tasks.start(follower.follow)
                if round_ % 2:  # every other round, stay until something new arrives
                    await follower.wait_until(lambda v, seen=seen: v.patches > seen)  # type: ignore[misc]
                tasks.cancel_scope.cancel()
        follower = Follower(bridge.url, bridge.token, view)
        async with anyio.create_task_group() as tasks:
            await tasks.start(follower.follow)
            await settle(follower, opencode, sid)
            tasks.cancel_scope.cancel()
    assert view.snapshots == 1  # the first subscription only: every resume was a replay
    assert view.shrinks == []
    assert view.cursor_regressions == 0


async def test_a_view_away_longer_than_the_ring_gets_a_snapshot_and_ends_exact(
    opencode: OpenCodeServer,
) -> None:
    async with running_bridge(opencode, ring_capacity=32) as bridge, api(bridge) as http:
        follower = Follower(bridge.url, bridge.token)
        async with anyio.create_task_group() as tasks:
            await tasks.start(follower.follow)
            await follower.wait_until(lambda v: v.status.get("state") == "connected")
            tasks.cancel_scope.cancel()
        away_at = follower.view.cursor
        witness, sid = await anyio.to_thread.run_sync(stream_with_session, opencode)
        await http.post(
            f"/api/sessions/{sid}/messages", json={"text": "reply=long len=2000 chunk=5 delay=1"}
        )
        # Away until the reply is over: paced, it makes far more than 32 patches.
        await anyio.to_thread.run_sync(witness.wait_for, assistant_done(sid))
        witness.close()
        assert bridge.feed.hub.since(away_at or 0) is None  # the view fell off the ring
        async with anyio.create_task_group() as tasks:
            await tasks.start(follower.follow)
            await settle(follower, opencode, sid)
            tasks.cancel_scope.cancel()
    assert follower.view.snapshots >= 2  # more if a burst outran the tiny ring again


async def test_the_same_message_id_sent_twice_makes_one_message(opencode: OpenCodeServer) -> None:
    async with running_bridge(opencode) as bridge, api(bridge) as http:
        sid = await new_session(http)
        body = {"text": "reply=short once", "messageID": ids.message_id(), "partID": ids.part_id()}
        url = f"/api/sessions/{sid}/messages"
        answers: list[httpx.Response] = []

        async def post() -> None:
            answers.append(await http.post(url, json=body))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(post)
            tasks.start_soon(post)
        await post()
        assert [a.status_code for a in answers] == [202, 202, 202]
        assert sorted(a.json()["duplicate"] for a in answers) == [False, True, True]
        follower = Follower(bridge.url, bridge.token)
        async with anyio.create_task_group() as tasks:
            await tasks.start(follower.follow)
            await settle(follower, opencode, sid)
            tasks.cancel_scope.cancel()
    users = [m for m in await truth(opencode, sid) if m["info"]["role"] == "user"]
    assert [m["info"]["id"] for m in users] == [body["messageID"]]


async def test_bad_requests_get_clear_errors_and_strangers_get_403(
    opencode: OpenCodeServer,
) -> None:
    async with running_bridge(opencode) as bridge, api(bridge) as http:
        sid = await new_session(http)
        url = f"/api/sessions/{sid}/messages"
        assert (await http.post(url, content=b"{not json")).status_code == 400
        assert (await http.post(url, json={"text": ""})).status_code == 400
        assert (await http.post(url, json=["text"])).status_code == 400
        async with httpx.AsyncClient(base_url=bridge.url) as stranger:
            assert (await stranger.get("/api/snapshot")).status_code == 403
        with pytest.raises(InvalidStatus) as refused:
            await Follower(bridge.url, "wrong-token").follow()
        assert refused.value.response.status_code == 403
