"""The REST client against real servers: endpoints, and typed errors that say what happened."""

from __future__ import annotations

import httpx
import pytest

from openchamber import ids
from openchamber.client import (
    AuthRefused,
    NotFound,
    OpenCodeClient,
    OpenCodeError,
    Unreachable,
)
from openchamber.server import OpenCodeServer, free_port
from openchamber.testing.model import ModelServer

from ..support import session_idle, stream_with_session

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def client_for(server: OpenCodeServer, **options: object) -> OpenCodeClient:
    return OpenCodeClient(server.url, auth=server.auth, **options)  # type: ignore[arg-type]


async def test_health_reports_the_version_where_the_server_has_one(
    opencode: OpenCodeServer,
) -> None:
    async with client_for(opencode) as client:
        health = await client.health()
    assert health["healthy"] is True
    expected = None if opencode.version.startswith("1.0.") else opencode.version
    assert health["version"] == expected


async def test_session_lifecycle(opencode: OpenCodeServer) -> None:
    async with client_for(opencode) as client:
        session = await client.create_session("client test")
        assert (await client.get_session(session["id"]))["id"] == session["id"]
        assert session["id"] in [s["id"] for s in await client.list_sessions()]
        await client.delete_session(session["id"])
        assert session["id"] not in [s["id"] for s in await client.list_sessions()]


async def test_send_uses_the_client_made_id(opencode: OpenCodeServer, model: ModelServer) -> None:
    stream, session_id = stream_with_session(opencode)
    session = {"id": session_id}
    async with client_for(opencode) as client:
        message_id = await client.send(session["id"], [{"type": "text", "text": "hello"}])
        stream.wait_for(session_idle(session["id"]))
        messages = await client.messages(session["id"])
        user = await client.message(session["id"], message_id)
    stream.close()
    assert messages[0]["info"]["id"] == message_id
    assert user["info"]["role"] == "user"
    assert [p["text"] for p in user["parts"] if p["type"] == "text"] == ["hello"]
    assert sum(1 for m in messages if m["info"]["role"] == "user") == 1


async def test_unknown_session_is_not_found(opencode: OpenCodeServer) -> None:
    async with client_for(opencode) as client:
        with pytest.raises(NotFound, match="GET /session/ses_doesnotexist: not found"):
            await client.get_session("ses_doesnotexist")


async def test_wrong_password_is_auth_refused(opencode: OpenCodeServer) -> None:
    async with OpenCodeClient(opencode.url, auth=("opencode", "wrong")) as client:
        if opencode.version.startswith("1.0."):
            assert (await client.list_sessions()) is not None  # 1.0.x has no authentication
            return
        with pytest.raises(AuthRefused, match="refused the credentials"):
            await client.list_sessions()


async def test_dead_port_is_unreachable_with_a_hint() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with OpenCodeClient(url, retries=1) as client:
        with pytest.raises(Unreachable, match=r"cannot reach .*is `opencode serve` running"):
            await client.list_sessions()


@pytest.mark.parametrize("url", ["not a url", "ftp://host/x", "http://"])
def test_malformed_url_is_a_clear_error(url: str) -> None:
    with pytest.raises(OpenCodeError, match="not a valid server URL"):
        OpenCodeClient(url)


async def test_a_resent_prompt_with_the_same_ids_is_one_message_with_one_part(
    opencode: OpenCodeServer, model: ModelServer
) -> None:
    stream, sid = stream_with_session(opencode)
    part = {"id": ids.part_id(), "type": "text", "text": "said twice"}
    message_id = ids.message_id()
    async with client_for(opencode) as client:
        # What a retry after an unclear failure does: the very same body again.
        assert await client.send(sid, [part], message_id=message_id) == message_id
        assert await client.send(sid, [part], message_id=message_id) == message_id
        stream.wait_for(session_idle(sid))
        user = await client.message(sid, message_id)
    stream.close()
    assert [p["text"] for p in user["parts"] if p["type"] == "text"] == ["said twice"]


class Recording(httpx.AsyncHTTPTransport):
    """A real transport that notes each request's path and query."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[httpx.URL] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request.url)
        return await super().handle_async_request(request)


async def test_messages_page_back_from_a_message(
    opencode: OpenCodeServer, model: ModelServer
) -> None:
    transport = Recording()
    async with client_for(opencode, timeout=120, transport=transport) as client:
        sid = (await client.create_session())["id"]
        for turn in range(3):  # the blocking route: each returns once its turn is over
            await client.request(
                "POST",
                f"/session/{sid}/message",
                json={"parts": [{"type": "text", "text": f"turn {turn}"}]},
            )
        every = [m["info"]["id"] for m in await client.messages(sid)]
        assert len(every) == 6

        async def ids_of(**page: object) -> list[str]:
            messages = await client.messages(sid, **page)  # type: ignore[arg-type]
            return [m["info"]["id"] for m in messages]

        assert await ids_of(limit=2) == every[-2:]
        assert await ids_of(limit=2, before=every[3]) == every[1:3]
        assert await ids_of(limit=2, before=every[1]) == every[:1]
        assert await ids_of(limit=2, before=every[0]) == []
        assert await ids_of(before=every[4]) == every[:4]  # `before` alone: all older
        assert await ids_of(limit=10, before=every[5]) == every[:5]
        # A message that is not there (removed, or never was) still marks a place.
        assert await ids_of(limit=3, before=every[2] + "0") == every[:3]
        assert (await client.message(sid, every[3]))["info"]["id"] == every[3]

        transport.requests.clear()
        assert await ids_of(limit=2, before=every[3]) == every[1:3]
        listed = [u.params for u in transport.requests if u.path.endswith("/message")]
        if opencode.version.startswith("1.0."):
            assert listed[-1].get("limit") is None  # no cursor paging there: emulated
        else:
            assert len(listed) == 1  # the server's own page, found by its cursor
            assert listed[0]["limit"] == "2"
