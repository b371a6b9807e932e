"""Helpers shared by tests that talk to real servers."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from openchamber.protocol import Event
from openchamber.server import OpenCodeServer
from openchamber.store import Patch, Store

CAPTURES = Path(__file__).resolve().parents[2] / "shared" / "captures"

Payload = dict[str, Any]


class RawStream:
    """`/global/event` read raw in a thread, independent of openchamber's own decoder.

    Lines are split on LF only: OpenCode sends U+2028 unescaped inside JSON, and httpx's
    `iter_lines()` would cut a frame there.
    """

    def __init__(self, server: OpenCodeServer) -> None:
        self.payloads: list[Payload] = []
        self.chunks: list[bytes] = []  # the raw body, as it arrived
        self.error: httpx.TransportError | None = None
        self._server = server
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            self._read_frames()
        except httpx.TransportError as exc:  # the server went away: the stream simply ends
            self.error = exc

    def _read_frames(self) -> None:
        headers = {"Accept": "text/event-stream", "Accept-Encoding": "identity"}
        with (
            httpx.Client(base_url=self._server.url, auth=self._server.auth, timeout=None) as http,
            http.stream("GET", "/global/event", headers=headers) as response,
        ):
            pending = b""
            for chunk in response.iter_raw():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                frames = [json.loads(x[6:])["payload"] for x in lines if x.startswith(b"data: ")]
                with self._changed:
                    self.chunks.append(chunk)
                    self.payloads += frames
                    self._changed.notify_all()
                    if self._closed:
                        return

    def wait_for(self, predicate: Callable[[Payload], bool], timeout: float = 60) -> Payload:
        """The first payload (seen or still to come) that matches."""
        with self._changed:
            found: list[Payload] = []

            def match() -> bool:
                found[:] = [p for p in self.payloads if predicate(p)][:1]
                return bool(found)

            if not self._changed.wait_for(match, timeout):
                raise TimeoutError(f"no matching event within {timeout}s")
            return found[0]

    def wait_until(self, condition: Callable[[], bool], timeout: float = 60) -> None:
        """Block until `condition()` holds over what was received so far."""
        with self._changed:
            if not self._changed.wait_for(condition, timeout):
                raise TimeoutError(f"condition not met within {timeout}s")

    def open_with(self, trigger: Callable[[], None], timeout: float = 30) -> None:
        """Run `trigger` until the stream delivers an event it caused.

        Neither the response headers nor `server.connected` prove the subscription is
        live: 1.0.x withholds the headers until the first event, and 1.18 was seen losing
        events published just after `server.connected`. Only an event caused after the
        stream opened proves it.
        """
        for _ in range(int(timeout)):
            trigger()
            with self._changed:
                if self._changed.wait_for(lambda: any(map(_caused, self.payloads)), 1.0):
                    return
        raise TimeoutError("event stream did not open")

    def close(self) -> None:
        with self._changed:
            self._closed = True


def stream_with_session(server: OpenCodeServer) -> tuple[RawStream, str]:
    """A live raw stream, and a session made once it was live (see `open_with`)."""
    stream = RawStream(server)
    sessions: list[str] = []

    def create_session() -> None:
        created = httpx.post(f"{server.url}/session", json={}, auth=server.auth)
        sessions.append(created.raise_for_status().json()["id"])

    stream.open_with(create_session)
    return stream, sessions[-1]


def _caused(payload: Payload) -> bool:
    return payload.get("type") not in ("server.connected", "server.heartbeat")


def session_idle(session_id: str) -> Callable[[Payload], bool]:
    return lambda p: p["type"] == "session.idle" and p["properties"].get("sessionID") == session_id


def assistant_done(session_id: str) -> Callable[[Payload], bool]:
    """An assistant message of the session completed (unlike `session.idle`, it cannot
    be an event from before the prompt)."""

    def match(payload: Payload) -> bool:
        info = payload.get("properties", {}).get("info", {})
        return (
            payload.get("type") == "message.updated"
            and info.get("sessionID") == session_id
            and info.get("role") == "assistant"
            and bool(info.get("time", {}).get("completed"))
        )

    return match


def _streaming(part: Payload) -> bool:
    timing = part.get("time")
    return isinstance(timing, dict) and "start" in timing and "end" not in timing


class ShrinkWatcher:
    """Applies steps to a store and checks invariant 1 after each: a part's text never
    shrinks, except by its final snapshot or by a removal that takes the part away."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store or Store()
        self.lengths: dict[str, int] = {}

    def step(self, patches: list[Patch]) -> None:
        finals = {
            p["part"]["id"]
            for p in patches
            if p["op"] == "part.upsert" and not _streaming(p["part"])
        }
        removal = any(
            p["op"] in ("part.remove", "message.remove", "session.remove") for p in patches
        )
        now = self.store.text_lengths()
        for part_id, before in self.lengths.items():
            after = now.get(part_id)
            if after is None and removal:
                continue
            assert part_id in finals or (after or 0) >= before, (
                f"text of {part_id} shrank from {before} to {after}"
            )
        self.lengths = now

    def apply(self, event: Event) -> None:
        self.step(self.store.apply(event))

    def load(self, snapshot: dict[str, list[Payload]]) -> None:
        for session_id, messages in snapshot.items():
            self.step(self.store.load_messages(session_id, messages))
