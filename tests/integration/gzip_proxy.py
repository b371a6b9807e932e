"""An HTTP proxy that gzips every answer, the event stream included: the misconfigured
reverse proxy `doctor` must catch (`Content-Encoding` on an event stream holds events back)."""

from __future__ import annotations

import socket
import threading
import zlib
from typing import Self

import anyio
import httpx
import uvicorn
from starlette.types import Receive, Scope, Send

from openchamber.lifecycle import Service

_HOP_BY_HOP = {"content-length", "content-encoding", "transfer-encoding", "connection"}


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self._ready.set()


class GzipProxy(Service):
    """Forwards to `target` (e.g. http://127.0.0.1:4096) on a free loopback port."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._ready = threading.Event()
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            lifespan="off",
            interface="asgi3",
            timeout_graceful_shutdown=5,
        )
        self._server = _Server(config, self._ready)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self) -> Self:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("gzip proxy did not start")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join()
        self._socket.close()

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        async with anyio.create_task_group() as tasks:
            # uvicorn drops what is sent to a client that left: stop when it leaves.
            tasks.start_soon(_cancel_on_disconnect, receive, tasks.cancel_scope)
            await self._forward(scope, body, send)
            tasks.cancel_scope.cancel()

    async def _forward(self, scope: Scope, body: bytes, send: Send) -> None:
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k != b"host"]
        url = f"{self.target}{scope['raw_path'].decode()}"
        if scope["query_string"]:
            url += f"?{scope['query_string'].decode()}"
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None)) as http,
            http.stream(scope["method"], url, headers=headers, content=body) as answer,
        ):
            out_headers = [
                (k.encode(), v.encode())
                for k, v in answer.headers.multi_items()
                if k.lower() not in _HOP_BY_HOP
            ]
            out_headers.append((b"content-encoding", b"gzip"))
            await send(
                {
                    "type": "http.response.start",
                    "status": answer.status_code,
                    "headers": out_headers,
                }
            )
            gzip = zlib.compressobj(wbits=31)  # 31: the gzip container
            async for chunk in answer.aiter_raw():
                data = gzip.compress(chunk) + gzip.flush(zlib.Z_SYNC_FLUSH)
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": gzip.flush(), "more_body": False})


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()
