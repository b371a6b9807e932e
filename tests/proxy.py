"""A fault-injecting TCP proxy for tests: cut every connection, refuse new ones."""

from __future__ import annotations

from types import TracebackType
from typing import Self

import anyio
from anyio.abc import SocketStream, TaskGroup


class LocalProxy:
    """A TCP server for as long as an `async with` lasts; subclasses handle connections.

    It listens on `listen_host` (127.0.0.1) at `listen_port` (0: a free one), inside the
    test's event loop, and forwards to `target_port` however the subclass sees fit.
    """

    listen_host = "127.0.0.1"

    def __init__(self, target_port: int, listen_port: int = 0) -> None:
        self.target_port = target_port
        self.listen_port = listen_port
        self.port = 0
        self._tasks: TaskGroup | None = None

    @property
    def url(self) -> str:
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        return f"http://{host}:{self.port}"

    async def __aenter__(self) -> Self:
        listener = await anyio.create_tcp_listener(
            local_host=self.listen_host, local_port=self.listen_port
        )
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        self._tasks.start_soon(listener.serve, self._handle)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tasks is not None
        self._tasks.cancel_scope.cancel()
        await self._tasks.__aexit__(exc_type, exc, tb)

    async def _handle(self, client: SocketStream) -> None:
        raise NotImplementedError


class FaultProxy(LocalProxy):
    """Forwards to a target port; can refuse, cut, stall."""

    def __init__(self, target_port: int, listen_port: int = 0) -> None:
        super().__init__(target_port, listen_port)
        self.refuse = False
        self.cut_next_response = False  # forward the next request, then cut before its answer
        self._stalled: set[SocketStream] = set()
        self.connections = 0
        self._open: set[SocketStream] = set()

    def stall(self) -> None:
        """Stop delivering the server's bytes on every open connection (they stay open)."""
        self._stalled |= self._open

    async def cut(self) -> None:
        """Close every open connection, both sides, as a network failure would."""
        for stream in list(self._open):
            await stream.aclose()

    async def _handle(self, client: SocketStream) -> None:
        if self.refuse:
            await client.aclose()
            return
        self.connections += 1
        async with client, await anyio.connect_tcp("127.0.0.1", self.target_port) as upstream:
            self._open |= {client, upstream}
            try:
                async with anyio.create_task_group() as pumps:
                    pumps.start_soon(self._pump, client, upstream, pumps)
                    pumps.start_soon(self._pump_answers, upstream, client, pumps)
            finally:
                self._open -= {client, upstream}

    async def _pump_answers(
        self, upstream: SocketStream, client: SocketStream, pumps: TaskGroup
    ) -> None:
        try:
            async for data in upstream:
                if self.cut_next_response:
                    self.cut_next_response = False
                    break
                if client not in self._stalled:
                    await client.send(data)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            pass
        pumps.cancel_scope.cancel()

    @staticmethod
    async def _pump(source: SocketStream, sink: SocketStream, pumps: TaskGroup) -> None:
        try:
            async for data in source:
                await sink.send(data)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            pass
        pumps.cancel_scope.cancel()
