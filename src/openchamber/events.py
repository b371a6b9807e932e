"""`openchamber events`: a server's event stream as JSON lines, for people and `jq`.

Normalized events come through the runtime's own connection (it reconnects, and says so
on stderr); `--raw` prints each frame's data exactly as sent, from one connection.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import anyio
import httpx
import orjson

from openchamber.client import OpenCodeClient
from openchamber.config import Settings
from openchamber.connect import (
    STREAM_HEADERS,
    CommandError,
    Exit,
    cancel_on_ctrl_c,
    connect,
    opencode_endpoint,
    stderr,
)
from openchamber.protocol import Event, RawEvent
from openchamber.runtime import Runtime
from openchamber.sse import PayloadDecoder
from openchamber.store import Patch
from openchamber.stream import State


def event_json(event: Event) -> dict[str, Any]:
    """A normalized event as JSON: `event` names its kind, the rest are its fields."""
    out: dict[str, Any] = {"event": type(event).__name__}
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        out[field.name] = event_json(value) if isinstance(value, Event) else value
    return out


def _wire_type(document: Any) -> str | None:
    payload = document.get("payload", document) if isinstance(document, dict) else None
    kind = payload.get("type") if isinstance(payload, dict) else None
    return kind if isinstance(kind, str) else None


class Lines:
    """JSON lines on stdout, flushed one by one; notes a reader that went away."""

    def __init__(self, scope: anyio.CancelScope) -> None:
        self.closed = False
        self._scope = scope

    def write(self, line: bytes) -> None:
        try:
            sys.stdout.buffer.write(line + b"\n")
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            self.closed = True
            self._scope.cancel()


async def _normalized(client: OpenCodeClient, lines: Lines, types: Collection[str]) -> int:
    wanted = {t.lower() for t in types}
    console = stderr()
    final: list[State] = []

    async def on_patches(patches: list[Patch]) -> None:
        for patch in patches:
            if patch["op"] == "connection":
                state, hint = State(patch["status"]["state"]), patch["status"]["hint"]
                console.print(f"[dim]stream {state}: {hint}[/]")
                final[:] = [state]

    runtime = Runtime(client, on_patches)
    apply: Callable[[list[Event]], Awaitable[None]] = runtime.stream.on_events

    async def tap(events: list[Event]) -> None:
        for event in events:
            kind = type(event).__name__.lower()
            raw = event.type.lower() if isinstance(event, RawEvent) else None
            if not wanted or kind in wanted or raw in wanted:
                lines.write(orjson.dumps(event_json(event)))
        await apply(events)

    runtime.stream.on_events = tap
    await runtime.run()
    if final == [State.AUTH_FAILED]:
        raise CommandError("the server refused the credentials mid-stream", Exit.AUTH)
    return Exit.OK


async def _raw(client: OpenCodeClient, lines: Lines, types: Collection[str]) -> int:
    wanted = set(types)
    decoder = PayloadDecoder()
    try:
        async with client.http.stream(
            "GET", "/global/event", headers=STREAM_HEADERS, timeout=httpx.Timeout(10.0, read=None)
        ) as response:
            if response.status_code != 200:
                raise CommandError(f"GET /global/event answered {response.status_code}")
            async for chunk in response.aiter_raw():
                for data in decoder.feed(chunk):
                    try:
                        document = orjson.loads(data)
                    except orjson.JSONDecodeError:
                        document, data = (
                            None,
                            orjson.dumps({"malformed": data.decode(errors="replace")}),
                        )
                    if not wanted or _wire_type(document) in wanted:
                        lines.write(data)
    except httpx.TransportError as exc:
        raise CommandError(
            f"the stream from {client.base_url} broke: {exc or type(exc).__name__}",
            Exit.UNREACHABLE,
        ) from exc
    raise CommandError("the server closed the stream")


async def _events(settings: Settings, raw: bool, types: Collection[str]) -> int:
    code: int = Exit.OK
    with opencode_endpoint(settings) as endpoint:
        client = await connect(endpoint, settings)
        async with client, anyio.create_task_group() as tasks:
            lines = Lines(tasks.cancel_scope)
            tasks.start_soon(cancel_on_ctrl_c, tasks.cancel_scope)
            code = await (_raw if raw else _normalized)(client, lines, types)
            tasks.cancel_scope.cancel()
    if lines.closed:
        raise BrokenPipeError
    return code


def run_events(settings: Settings, *, raw: bool, types: Collection[str]) -> int:
    if settings.opencode.value is None:
        raise CommandError(
            "events needs a server: pass --opencode URL or set OPENCHAMBER_OPENCODE_URL",
            Exit.USAGE,
        )
    return anyio.run(_events, settings, raw, types)
