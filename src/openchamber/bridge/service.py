"""`Bridge`: the runtime (stream + store) and the loopback server for views, run together."""

from __future__ import annotations

import logging
import secrets
import socket
from typing import Any

import anyio
import uvicorn
from anyio.abc import TaskGroup, TaskStatus

from openchamber.backoff import Backoff
from openchamber.bridge.access import allowed_hosts
from openchamber.bridge.app import build_app
from openchamber.bridge.events import DEFAULT_FRAME_INTERVAL
from openchamber.bridge.feed import Feed
from openchamber.cache import Cache, Cached
from openchamber.client import OpenCodeClient, OpenCodeError
from openchamber.hub import DEFAULT_CAPACITY
from openchamber.outbox import Outbox, StepHook
from openchamber.persist import CacheWriter, load_cached, reconcile
from openchamber.runtime import Runtime
from openchamber.store import Patch, Store

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
        frame_interval: float = DEFAULT_FRAME_INTERVAL,
        runtime_options: dict[str, Any] | None = None,
        cache: Cache | None = None,
        on_outbox_step: StepHook | None = None,
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
        self.cache = cache
        self.outbox = Outbox(client, self.feed.store, self.feed.add, cache, on_step=on_outbox_step)
        self._writer = None if cache is None else CacheWriter(cache, self.feed.store)
        if self._writer is not None:
            self.feed.listeners.append(self._writer.note)
        self.feed.listeners.append(self._watch_connection)
        self.feed.listeners.append(self.outbox.notice)
        self._connected = anyio.Event()
        app = build_app(
            client,
            self.feed,
            self.outbox,
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
                # Views are on this machine: compressing each small message only costs CPU
                # on both ends.
                ws_per_message_deflate=False,
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
                if self.cache is not None:
                    await self._show_cached(self.cache, group)
                group.start_soon(self.runtime.run)
                group.start_soon(self.outbox.run)
                task_status.started(self)
                # The socket already listens: views that connect now wait in its backlog.
                await self._server.serve(sockets=[self._socket])
                group.cancel_scope.cancel()
        finally:
            self._socket.close()
            if self._writer is not None:
                with anyio.CancelScope(shield=True):
                    await self._writer.flush()

    async def _show_cached(self, cache: Cache, group: TaskGroup) -> None:
        """Show what the cache holds at once, then have the server confirm or correct it."""
        cached = await anyio.to_thread.run_sync(cache.load)
        if cached.sessions or cached.messages:
            self.feed.confirmed = False
            self.feed.change(lambda store: load_cached(store, cached))
        self.outbox.restore(cached.outbox)
        assert self._writer is not None
        group.start_soon(self._writer.run)
        group.start_soon(self._reconcile, cache, cached)

    async def _reconcile(self, cache: Cache, cached: Cached) -> None:
        backoff = Backoff(base=1.0, cap=30.0)
        while True:
            await self._connected.wait()  # once: the client's own retries cover later drops
            try:
                await reconcile(self.client, self.feed.store, self.feed.change, cache, cached)
            except OpenCodeError as exc:
                log.info("cache reconciliation failed, will retry: %s", exc)
                await anyio.sleep(backoff.next())
                continue
            if not self.feed.confirmed:
                self.feed.confirm()
            return

    def _watch_connection(self, patches: list[Patch]) -> None:
        for patch in patches:
            if patch["op"] == "connection" and patch["status"]["state"] == "connected":
                self._connected.set()
                self.outbox.wake()

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
