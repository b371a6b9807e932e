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
from openchamber.bridge.events import DEFAULT_FRAME_INTERVAL, follow
from openchamber.bridge.feed import Feed
from openchamber.client import OpenCodeClient
from openchamber.outbox import Outbox

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
_SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def _ui_headers(hosts: frozenset[str]) -> dict[str, str]:
    """The UI's own files only: no inline script, no other origin (model output is
    hostile). Its sockets are named too: older WebKit (pywebview) does not count ws:
    of the same host as 'self'."""
    # Chromium's CSP parser rejects an IPv6 literal ("[::1]:port") with a console error.
    sockets = " ".join(f"ws://{host}" for host in sorted(hosts) if not host.startswith("["))
    policy = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self' {sockets}; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )
    return {"content-security-policy": policy, **_SECURITY_HEADERS}


def build_app(
    client: OpenCodeClient,
    feed: Feed,
    outbox: Outbox,
    *,
    token: str,
    hosts: frozenset[str],
    frame_interval: float = DEFAULT_FRAME_INTERVAL,
) -> Starlette:
    async def events(websocket: WebSocket) -> None:
        await follow(websocket, feed, frame_interval)

    headers = _ui_headers(hosts)

    async def index(request: Request) -> Response:
        return FileResponse(UI_DIR / "index.html", headers=headers)

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
