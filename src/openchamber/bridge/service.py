"""`Bridge`: the runtime (stream + store) and the loopback server for views, run together."""

from __future__ import annotations

import logging
import secrets
import socket
from typing import Any

import anyio
import uvicorn
from anyio.abc import TaskStatus

from openchamber.bridge.access import allowed_hosts
from openchamber.bridge.app import build_app
from openchamber.bridge.feed import Feed
from openchamber.client import OpenCodeClient
from openchamber.hub import DEFAULT_CAPACITY
from openchamber.runtime import Runtime
from openchamber.store import Store

log = logging.getLogger("openchamber.bridge")


class BridgeError(Exception):
    """The bridge cannot start (e.g. its port is taken); the message says why."""


class Bridge:
    """Serve one OpenCode server's live state to views at `url`.

    The socket is bound in the constructor, so the port (and a port conflict) is known
    at once, before anything runs.
    """

    def __init__(
        self,
        client: OpenCodeClient,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        ring_capacity: int = DEFAULT_CAPACITY,
        ws_ping_interval: float = 20.0,
        frame_interval: float = 0.016,
        runtime_options: dict[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.token = token or secrets.token_urlsafe(24)
        self.host = host
        self._socket = _bind(host, port)
        self.port: int = self._socket.getsockname()[1]
        # The status is read when a snapshot is taken, by then the runtime exists.
        self.feed = Feed(Store(), lambda: self.runtime.status.to_json(), ring_capacity)
        options = runtime_options or {}
        self.runtime = Runtime(client, self.feed.publish, self.feed.store, **options)
        app = build_app(
            client,
            self.feed,
            token=self.token,
            hosts=allowed_hosts(host, self.port),
            frame_interval=frame_interval,
        )
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_level="warning",
                lifespan="off",
                ws_ping_interval=ws_ping_interval,
                ws_ping_timeout=ws_ping_interval,
                timeout_graceful_shutdown=2,
            )
        )

    @property
    def url(self) -> str:
        name = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{name}:{self.port}"

    @property
    def ui_url(self) -> str:
        """The one-time URL that lets a browser in (it trades the token for a cookie)."""
        return f"{self.url}/?token={self.token}"

    async def run(self, *, task_status: TaskStatus[Bridge] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled (or until uvicorn is told to exit, e.g. by Ctrl-C)."""
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self.runtime.run)
                task_status.started(self)
                # The socket already listens: views that connect now wait in its backlog.
                await self._server.serve(sockets=[self._socket])
                group.cancel_scope.cancel()
        finally:
            self._socket.close()

    def stop(self) -> None:
        """Ask a running bridge to finish (from its own event loop)."""
        self._server.should_exit = True


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise BridgeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.setblocking(False)
    return sock
