"""A frame-aware fault-injecting HTTP/1.1 proxy for the chaos matrix.

`ChaosProxy` forwards 127.0.0.1:<port> to a target port in the test's event loop. It
speaks HTTP/1.1 on both sides (h11), so keep-alive REST traffic passes untouched, while
the body of an event-stream response (`GET /global/event` or `GET /event`) is cut into
whole SSE frames (OpenCode ends each with a blank line) and passed through the armed
faults before it is chunked again for the client:

- `reset("event" | "utf8")`: send part of the next text frame — half of it, or up to the
  first byte of a multi-byte UTF-8 sequence — then reset the connection (RST);
- `stall()`: stop delivering on every open stream; the connections stay open;
- `drip(n)`: the next `n` bytes go out one byte per HTTP chunk, paced;
- `gzip(n)`: the next `n` stream responses claim `Content-Encoding: gzip` and are gzipped;
- `corrupt_utf8(n)`: the next `n` text frames get an invalid UTF-8 byte in their text;
- `malformed(n)`: a garbage frame is inserted and the next `n` text frames are truncated
  mid-JSON;
- `duplicate(n)`: the next `n` frames are sent twice;
- `refuse` (attribute) and `cut_all()`: an outage — new connections are reset at once.

Each fault is armed by the test and spent by the stream; `spent` records when (monotonic
seconds), so a test measures from the moment the fault really happened.
"""

from __future__ import annotations

import socket
import struct
import time
import zlib
from dataclasses import dataclass, field

import anyio
import h11
from anyio.abc import SocketAttribute, SocketStream

from ..proxy import LocalProxy

STREAM_PATHS = (b"/global/event", b"/event")
TEXT_MARKERS = (b'"type":"message.part.delta"', b'"delta":')
_IO_ERRORS = (
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
    OSError,
    h11.ProtocolError,
)


class _Abort(Exception):
    """Reset both sides of this connection now."""


@dataclass
class Armed:
    """What the next frames on any stream will suffer (counts go down as they are spent)."""

    reset: str | None = None
    drip: int = 0
    gzip: int = 0
    corrupt_utf8: int = 0
    malformed: int = 0
    duplicate: int = 0
    spent: dict[str, float] = field(default_factory=dict)  # fault -> when it first hit


def is_text_frame(frame: bytes) -> bool:
    return b'"delta":' in frame and (
        b"message.part.delta" in frame or b"message.part.updated" in frame
    )


def utf8_lead(frame: bytes) -> int:
    """Index of the first lead byte of a multi-byte UTF-8 sequence in a data line, or -1."""
    start = frame.find(b"data:")
    for index in range(max(start, 0), len(frame)):
        if frame[index] >= 0xC2:
            return index
    return -1


def corrupt(frame: bytes) -> bytes:
    """The frame with the first ASCII letter of its delta text replaced by 0xFF."""
    at = frame.find(b'"delta":"')
    if at < 0:
        return frame
    for index in range(at + 9, len(frame)):
        byte = frame[index]
        if byte == 0x22:  # the string ended without a letter
            break
        if 0x41 <= byte <= 0x7A and chr(byte).isalpha():
            return frame[:index] + b"\xff" + frame[index + 1 :]
    return frame


def truncate(frame: bytes) -> bytes:
    """The frame cut mid-JSON, still ended as a frame."""
    line = frame.rstrip(b"\n")
    return line[: max(len(line) // 2, 8)] + b"\n\n"


GARBAGE = b'data: {"type":"message.part.delta","properties":{"delta":"x"\n\n'


class ChaosProxy(LocalProxy):
    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self.refuse = False
        self.armed = Armed()
        self.streams_opened = 0
        self.stream_frames = 0
        self._stalled: set[int] = set()
        self._open_streams: set[int] = set()
        self._stream_clients: dict[int, SocketStream] = {}
        self._clients: set[SocketStream] = set()

    # ------------------------------------------------------------------ faults

    def reset(self, where: str) -> None:
        assert where in ("event", "utf8")
        self.armed.reset = where

    def stall(self) -> None:
        self._stalled |= self._open_streams
        self.armed.spent.setdefault("stall", time.monotonic())

    def drip(self, nbytes: int) -> None:
        self.armed.drip = nbytes

    def gzip(self, responses: int = 1) -> None:
        self.armed.gzip = responses

    def corrupt_utf8(self, frames: int = 3) -> None:
        self.armed.corrupt_utf8 = frames

    def malformed(self, frames: int = 1) -> None:
        self.armed.malformed = frames

    def duplicate(self, frames: int) -> None:
        self.armed.duplicate = frames

    async def cut_streams(self) -> None:
        """Reset every open event-stream connection."""
        for client in list(self._stream_clients.values()):
            await _reset(client)

    async def cut_all(self) -> None:
        """Reset every open connection (an outage starts)."""
        for client in list(self._clients):
            await _reset(client)

    def spent(self, fault: str) -> float | None:
        return self.armed.spent.get(fault)

    # ------------------------------------------------------------------ serving

    async def _handle(self, client: SocketStream) -> None:
        if self.refuse:
            await _reset(client)
            return
        try:
            upstream = await anyio.connect_tcp("127.0.0.1", self.target_port)
        except OSError:
            await _reset(client)  # the server is down: the client sees a reset
            return
        self._clients.add(client)
        _nodelay(client)
        try:
            async with client, upstream:
                await self._serve(client, upstream)
        except Exception:  # _Abort, I/O errors, a peer gone: either way, reset it
            await _reset(client)
        finally:
            self._clients.discard(client)

    async def _serve(self, client: SocketStream, upstream: SocketStream) -> None:
        down = h11.Connection(h11.SERVER)  # the client's side
        up = h11.Connection(h11.CLIENT)  # the server's side
        while True:
            request = await _next(down, client)
            if not isinstance(request, h11.Request):
                return  # the client closed its keep-alive connection
            await upstream.send(up.send(request) or b"")
            while True:  # the request body
                event = await _next(down, client)
                if isinstance(event, h11.ConnectionClosed):
                    return
                await upstream.send(up.send(event) or b"")
                if isinstance(event, h11.EndOfMessage):
                    break
            response = await _next(up, upstream)
            while isinstance(response, h11.InformationalResponse):
                response = await _next(up, upstream)
            if not isinstance(response, h11.Response):
                raise _Abort  # the server went away before answering
            path = request.target.split(b"?")[0]
            if path in STREAM_PATHS and response.status_code == 200:
                await self._stream(client, upstream, down, up, response)
                return  # a stream's connection is never reused
            await client.send(down.send(response) or b"")
            while True:
                event = await _next(up, upstream)
                if isinstance(event, h11.ConnectionClosed):
                    raise _Abort
                await client.send(down.send(event) or b"")
                if isinstance(event, h11.EndOfMessage):
                    break
            if down.our_state is h11.MUST_CLOSE or up.our_state is h11.MUST_CLOSE:
                return
            down.start_next_cycle()
            up.start_next_cycle()

    async def _stream(
        self,
        client: SocketStream,
        upstream: SocketStream,
        down: h11.Connection,
        up: h11.Connection,
        response: h11.Response,
    ) -> None:
        key = id(client)
        self.streams_opened += 1
        gzip = None
        headers = [(k, v) for k, v in response.headers if k.lower() != b"content-length"]
        if self.armed.gzip > 0:
            self.armed.gzip -= 1
            self.armed.spent.setdefault("gzip", time.monotonic())
            gzip = zlib.compressobj(wbits=31)
            headers.append((b"content-encoding", b"gzip"))
        head = h11.Response(status_code=200, headers=headers, reason=response.reason)
        await client.send(down.send(head) or b"")
        self._open_streams.add(key)
        self._stream_clients[key] = client
        failed: list[Exception] = []
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_until_closed, client, tasks.cancel_scope)
                try:
                    await self._pump_stream(client, upstream, down, up, gzip)
                except Exception as exc:  # raised after the group, not wrapped in it
                    failed.append(exc)
                tasks.cancel_scope.cancel()
        finally:
            self._open_streams.discard(key)
            self._stream_clients.pop(key, None)
            self._stalled.discard(key)
        if failed:
            raise _Abort from failed[0]

    async def _pump_stream(
        self,
        client: SocketStream,
        upstream: SocketStream,
        down: h11.Connection,
        up: h11.Connection,
        gzip: zlib._Compress | None,
    ) -> None:
        key = id(client)
        pending = b""
        while True:
            event = await _next(up, upstream)
            if isinstance(event, h11.EndOfMessage):
                await client.send(down.send(h11.EndOfMessage()) or b"")
                return
            if isinstance(event, h11.ConnectionClosed):
                raise _Abort
            if not isinstance(event, h11.Data):
                continue
            pending += bytes(event.data)
            *frames, pending = pending.split(b"\n\n")
            if not frames or key in self._stalled:
                continue
            out = [frame + b"\n\n" for frame in frames]
            self.stream_frames += len(out)
            if gzip is not None:
                data = gzip.compress(b"".join(out)) + gzip.flush(zlib.Z_SYNC_FLUSH)
                await client.send(down.send(h11.Data(data=data)) or b"")
                continue
            await self._deliver(client, down, out)

    async def _deliver(
        self, client: SocketStream, down: h11.Connection, frames: list[bytes]
    ) -> None:
        armed = self.armed
        out: list[bytes] = []
        for frame in frames:
            text = is_text_frame(frame)
            if armed.reset is not None and text:
                cut = len(frame) // 2 if armed.reset == "event" else utf8_lead(frame) + 1
                if cut > 0:
                    where, armed.reset = armed.reset, None
                    armed.spent.setdefault(f"reset-{where}", time.monotonic())
                    out.append(frame[:cut])
                    await self._send(client, down, b"".join(out))
                    await anyio.sleep(0.02)  # let the peer read the partial frame first
                    raise _Abort
            if armed.malformed > 0 and text:
                armed.malformed -= 1
                armed.spent.setdefault("malformed", time.monotonic())
                out += [GARBAGE, truncate(frame)]
                continue
            if armed.corrupt_utf8 > 0 and text:
                changed = corrupt(frame)
                if changed != frame:
                    armed.corrupt_utf8 -= 1
                    armed.spent.setdefault("invalid-utf8", time.monotonic())
                    frame = changed
            if armed.duplicate > 0:
                armed.duplicate -= 1
                armed.spent.setdefault("duplicate", time.monotonic())
                out.append(frame)
            out.append(frame)
        await self._send(client, down, b"".join(out))

    async def _send(self, client: SocketStream, down: h11.Connection, data: bytes) -> None:
        armed = self.armed
        if armed.drip > 0 and data:
            armed.spent.setdefault("drip", time.monotonic())
            dripped, data = data[: armed.drip], data[armed.drip :]
            armed.drip -= len(dripped)
            for index in range(len(dripped)):
                await client.send(down.send(h11.Data(data=dripped[index : index + 1])) or b"")
                await anyio.sleep(0.0005)
        if data:
            await client.send(down.send(h11.Data(data=data)) or b"")


async def _next(connection: h11.Connection, stream: SocketStream) -> object:
    """The next h11 event, reading as needed; `ConnectionClosed` at the end."""
    while True:
        event = connection.next_event()
        if event is not h11.NEED_DATA:
            return event
        try:
            data = await stream.receive(65536)
        except anyio.EndOfStream:
            data = b""
        connection.receive_data(data)


async def _until_closed(client: SocketStream, scope: anyio.CancelScope) -> None:
    """A stream's client sends nothing more; reading is how its leaving is noticed."""
    try:
        while await client.receive():
            pass
    except _IO_ERRORS:
        pass
    scope.cancel()


def _nodelay(stream: SocketStream) -> None:
    sock: socket.socket = stream.extra(SocketAttribute.raw_socket)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _reset(stream: SocketStream) -> None:
    """Close with RST (SO_LINGER 0), as a network failure does, not a polite FIN."""
    try:
        sock: socket.socket = stream.extra(SocketAttribute.raw_socket)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    await stream.aclose()
