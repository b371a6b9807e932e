"""The bridge's ASGI app: access control around the commands, the event socket and the UI."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from openchamber.bridge.access import AccessControl
from openchamber.bridge.commands import Commands
from openchamber.bridge.events import follow
from openchamber.bridge.feed import Feed
from openchamber.client import OpenCodeClient
from openchamber.outbox import Outbox

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
# The UI's own files only: no inline script, no other origin (model output is hostile).
_UI_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def build_app(
    client: OpenCodeClient,
    feed: Feed,
    outbox: Outbox,
    *,
    token: str,
    hosts: frozenset[str],
    frame_interval: float = 0.016,
) -> Starlette:
    async def events(websocket: WebSocket) -> None:
        await follow(websocket, feed, frame_interval)

    async def index(request: Request) -> Response:
        return FileResponse(UI_DIR / "index.html", headers=_UI_HEADERS)

    routes: list[BaseRoute] = [
        *Commands(client, feed, outbox).routes(),
        WebSocketRoute("/api/events", events),
        Route("/", index, methods=["GET"]),
        Mount("/ui", StaticFiles(directory=UI_DIR, check_dir=False), name="ui"),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(AccessControl, token=token, hosts=hosts)],
    )
