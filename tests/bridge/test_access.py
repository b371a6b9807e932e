"""Only the token holder, through the bound address, gets in (HTTP and WebSocket)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from openchamber.bridge.access import COOKIE, allowed_hosts
from openchamber.bridge.app import build_app
from openchamber.bridge.feed import Feed
from openchamber.client import OpenCodeClient
from openchamber.outbox import Outbox
from openchamber.store import Store

TOKEN = "s3cret-token"
BASE = "http://127.0.0.1:8000"
WS_URL = "ws://127.0.0.1:8000/api/events"


@pytest.fixture
def bridge() -> Iterator[TestClient]:
    # No request in these tests reaches OpenCode: the client points at a closed port.
    client = OpenCodeClient("http://127.0.0.1:9", retries=0)
    feed = Feed(Store(), lambda: {"state": "connecting"})
    outbox = Outbox(client, feed.store, feed.add)  # not running: what is sent stays queued
    app = build_app(client, feed, outbox, token=TOKEN, hosts=allowed_hosts("127.0.0.1", 8000))
    with TestClient(app, base_url=BASE, follow_redirects=False) as test_client:
        yield test_client


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_bearer_token_opens_the_api(bridge: TestClient) -> None:
    response = bridge.get("/api/snapshot", headers=bearer())
    assert response.status_code == 200
    assert set(response.json()) >= {"cursor", "status", "sessions", "sessionList"}


@pytest.mark.parametrize("headers", [{}, bearer("wrong"), {"Authorization": "Basic eA=="}])
def test_missing_or_wrong_token_is_refused(bridge: TestClient, headers: dict[str, str]) -> None:
    response = bridge.get("/api/snapshot", headers=headers)
    assert response.status_code == 403
    assert "token" in response.json()["error"]


def test_one_time_url_sets_a_cookie_that_opens_the_api(bridge: TestClient) -> None:
    response = bridge.get(f"/?token={TOKEN}")
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={TOKEN}")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert bridge.get("/api/snapshot").status_code == 200  # the client kept the cookie


def test_one_time_url_with_a_wrong_token_sets_nothing(bridge: TestClient) -> None:
    response = bridge.get("/?token=wrong")
    assert response.status_code == 403
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize(
    "host", ["evil.example:8000", "127.0.0.1:8001", "localhost", "rebind.attacker.test"]
)
def test_foreign_host_is_refused_even_with_the_token(bridge: TestClient, host: str) -> None:
    response = bridge.get("/api/snapshot", headers={**bearer(), "Host": host})
    assert response.status_code == 403
    assert "Host" in response.json()["error"]


@pytest.mark.parametrize("host", ["localhost:8000", "[::1]:8000", "127.0.0.1:8000"])
def test_loopback_names_of_the_bound_port_are_accepted(bridge: TestClient, host: str) -> None:
    assert bridge.get("/api/snapshot", headers={**bearer(), "Host": host}).status_code == 200


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:8001", "null"])
def test_foreign_origin_is_refused(bridge: TestClient, origin: str) -> None:
    response = bridge.get("/api/snapshot", headers={**bearer(), "Origin": origin})
    assert response.status_code == 403
    assert "Origin" in response.json()["error"]


def test_same_origin_is_accepted(bridge: TestClient) -> None:
    response = bridge.get("/api/snapshot", headers={**bearer(), "Origin": BASE})
    assert response.status_code == 200


def test_websocket_needs_the_token_and_the_origin(bridge: TestClient) -> None:
    for headers in ({"Origin": BASE}, {**bearer(), "Origin": "http://evil.example"}):
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            bridge.websocket_connect(WS_URL, headers=headers),
        ):
            pass
        assert refused.value.code == 1008
    with bridge.websocket_connect(WS_URL, headers={**bearer(), "Origin": BASE}) as ws:
        first = ws.receive_json()
    assert first["type"] == "snapshot"
    assert first["snapshot"]["status"] == {"state": "connecting"}


def test_malformed_cookie_header_is_no_token(bridge: TestClient) -> None:
    response = bridge.get("/api/snapshot", headers={"Cookie": 'a="\\'})
    assert response.status_code == 403


def test_a_send_is_shown_queued_at_once_and_accepted_once(bridge: TestClient) -> None:
    body = {"text": "hello", "messageID": "msg_1", "partID": "prt_1"}
    first = bridge.post("/api/sessions/ses_1/messages", json=body, headers=bearer())
    again = bridge.post("/api/sessions/ses_1/messages", json=body, headers=bearer())
    assert first.status_code == again.status_code == 202
    assert first.json() == {"messageID": "msg_1", "duplicate": False, "state": "queued"}
    assert again.json()["duplicate"] is True
    [message] = bridge.get("/api/snapshot", headers=bearer()).json()["sessions"]["ses_1"]
    assert message["local"]["state"] == "queued"
    assert [p["text"] for p in message["parts"]] == ["hello"]


def test_a_queued_message_can_be_edited_and_cancelled(bridge: TestClient) -> None:
    body = {"text": "hello", "messageID": "msg_1", "partID": "prt_1"}
    bridge.post("/api/sessions/ses_1/messages", json=body, headers=bearer())
    edited = bridge.put("/api/outbox/msg_1", json={"text": "hello again"}, headers=bearer())
    assert edited.status_code == 204
    [message] = bridge.get("/api/snapshot", headers=bearer()).json()["sessions"]["ses_1"]
    assert [(p["id"], p["text"]) for p in message["parts"]] == [("prt_1", "hello again")]
    assert bridge.delete("/api/outbox/msg_1", headers=bearer()).status_code == 204
    assert bridge.get("/api/snapshot", headers=bearer()).json()["sessions"]["ses_1"] == []
    gone = bridge.delete("/api/outbox/msg_1", headers=bearer())
    assert gone.status_code == 409
    assert "not waiting" in gone.json()["error"]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", "not JSON"),
        (b"[1]", "JSON object"),
        (b'{"text": ""}', "`text`"),
        (b'{"text": "x", "messageID": 7}', "`messageID`"),
        (b'{"text": "x", "model": "gpt"}', "`model`"),
    ],
)
def test_bad_sends_get_a_clear_400(bridge: TestClient, body: bytes, error: str) -> None:
    response = bridge.post("/api/sessions/ses_1/messages", content=body, headers=bearer())
    assert response.status_code == 400
    assert error in response.json()["error"]


def test_the_ui_page_forbids_inline_script_and_foreign_origins(bridge: TestClient) -> None:
    page = bridge.get("/", headers=bearer())
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy
    assert "connect-src 'self' ws://127.0.0.1:8000 ws://localhost:8000;" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
