"""Running a bridge over a real server in a test, and what tests ask of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx

from openchamber.bridge import Bridge
from openchamber.client import OpenCodeClient
from openchamber.server import OpenCodeServer

from .view import Follower


@asynccontextmanager
async def running_bridge(server: OpenCodeServer, **options: Any) -> AsyncIterator[Bridge]:
    async with (
        OpenCodeClient(server.url, auth=server.auth) as client,
        anyio.create_task_group() as tasks,
    ):
        bridge = Bridge(client, **options)
        await tasks.start(bridge.run)
        try:
            yield bridge
        finally:
            bridge.stop()


@asynccontextmanager
async def api(bridge: Bridge) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {bridge.token}"}
    async with httpx.AsyncClient(base_url=bridge.url, headers=headers, timeout=60) as http:
        yield http


async def truth(server: OpenCodeServer, session_id: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=server.url, auth=server.auth) as direct:
        messages: list[dict[str, Any]] = (await direct.get(f"/session/{session_id}/message")).json()
        return messages


async def settle(follower: Follower, server: OpenCodeServer, session_id: str) -> None:
    """Wait until the turn is over and the view equals the server's messages.

    The server's answer is read again whenever the view changes (at least twice a second):
    the session may look idle before a queued prompt starts, and the server still writes
    to a message after its turn ended.
    """
    expected: list[dict[str, Any]] = []
    with anyio.move_on_after(60):
        while True:
            expected = await truth(server, session_id)
            if (
                _turn_over(expected)
                and follower.view.idle(session_id)
                and follower.view.messages(session_id) == expected
            ):
                return
            with anyio.move_on_after(0.5):
                await follower.changed()
    raise AssertionError(difference(follower.view.messages(session_id), expected))


def _turn_over(messages: list[dict[str, Any]]) -> bool:
    last = messages[-1]["info"] if messages else {}
    return last.get("role") == "assistant" and bool(last.get("time", {}).get("completed"))


def difference(shown: list[dict[str, Any]], expected: list[dict[str, Any]]) -> str:
    """Where a view's messages part from the server's, briefly."""

    def outline(messages: list[dict[str, Any]]) -> list[str]:
        return [f"{m['info']['id']}/{m['info'].get('role')}" for m in messages]

    lines = [f"view:   {outline(shown)}", f"server: {outline(expected)}"]
    for mine, theirs in zip(shown, expected, strict=False):
        if mine != theirs:
            lines += [f"first difference, view:   {mine}"[:1500], f"server: {theirs}"[:1500]]
            break
    return "\n".join(lines)


async def new_session(http: httpx.AsyncClient) -> str:
    response = await http.post("/api/sessions", json={})
    assert response.status_code == 201, response.text
    session_id: str = response.json()["id"]
    return session_id
