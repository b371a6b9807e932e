"""A view of the bridge as a UI keeps one, for tests: applies its messages and watches that
no text a view has shown ever gets shorter except by a real removal or a snapshot."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import orjson
from websockets.asyncio.client import ClientConnection, connect

JSON = dict[str, Any]


class View:
    def __init__(self) -> None:
        self.cursor: int | None = None
        self.status: JSON = {}
        # session id -> message id -> {"info", "parts": {part id -> part}, "local"?}
        self.sessions: dict[str, dict[str, JSON]] = {}
        self.snapshots = 0
        self.patches = 0
        self.shrinks: list[tuple[str, int, int]] = []  # (part id, length shown, then)
        self.cursor_regressions = 0
        self.states: list[str] = []
        self.session_status: dict[str, JSON] = {}
        self.confirmed = True  # False while what it shows came from the bridge's cache

    # ------------------------------------------------------------------ reading

    def messages(self, session_id: str) -> list[JSON]:
        """The session in `GET /session/{id}/message` shape."""
        out = []
        for message_id in sorted(self.sessions.get(session_id, {})):
            message = self.sessions[session_id][message_id]
            entry: JSON = {
                "info": message["info"],
                "parts": [message["parts"][p] for p in sorted(message["parts"])],
            }
            if message.get("local") is not None:
                entry["local"] = message["local"]
            out.append(entry)
        return out

    def idle(self, session_id: str) -> bool:
        # As OpenCode's own /session/status: a session with no status is idle.
        return self.session_status.get(session_id, {"type": "idle"}).get("type") == "idle"

    def longest_text(self) -> int:
        return max(
            (
                len(p.get("text") or "")
                for messages in self.sessions.values()
                for m in messages.values()
                for p in m["parts"].values()
            ),
            default=0,
        )

    # ------------------------------------------------------------------ applying

    def receive(self, message: JSON) -> None:
        cursor = message["cursor"]
        if self.cursor is not None and cursor < self.cursor and message["type"] == "patches":
            self.cursor_regressions += 1
        if message["type"] == "snapshot":
            self.load(message["snapshot"])
        else:
            for patch in message["patches"]:
                self.apply(patch)
        self.cursor = cursor

    def load(self, snapshot: JSON) -> None:
        self.snapshots += 1
        self.status = snapshot["status"]
        self.session_status = dict(snapshot["sessionStatus"])
        self.confirmed = snapshot["confirmed"]
        self.sessions = {
            sid: {
                m["info"]["id"]: {
                    "info": m["info"],
                    "parts": {p["id"]: p for p in m["parts"]},
                    "local": m.get("local"),
                }
                for m in messages
            }
            for sid, messages in snapshot["sessions"].items()
        }

    def apply(self, patch: JSON) -> None:
        self.patches += 1
        op = patch["op"]
        if op == "confirmed":
            self.confirmed = True
            return
        if op == "connection":
            self.status = patch["status"]
            self.states.append(patch["status"]["state"])
            return
        sid = patch.get("sessionID")
        if op == "session.status":
            self.session_status[sid] = patch["status"]
        elif op == "session.remove":
            self.sessions.pop(sid, None)
        elif op == "message.upsert":
            message = self.sessions.setdefault(sid, {}).setdefault(
                patch["info"]["id"], {"info": {}, "parts": {}}
            )
            message["info"] = patch["info"]
            message["local"] = patch.get("local")
        elif op == "message.local":
            self.sessions[sid][patch["messageID"]]["local"] = patch["local"]
        elif op == "message.remove":
            self.sessions.get(sid, {}).pop(patch["messageID"], None)
        elif op == "part.upsert":
            part = patch["part"]
            parts = self._message(sid, patch["messageID"])["parts"]
            old = parts.get(part["id"])
            if old is not None and len(part.get("text") or "") < len(old.get("text") or ""):
                self.shrinks.append((part["id"], len(old["text"]), len(part["text"])))
            parts[part["id"]] = part
        elif op == "part.text.append":
            part = self._message(sid, patch["messageID"])["parts"][patch["partID"]]
            part[patch["field"]] = (part.get(patch["field"]) or "") + patch["text"]
        elif op == "part.remove":
            self._message(sid, patch["messageID"])["parts"].pop(patch["partID"], None)

    def _message(self, session_id: str, message_id: str) -> JSON:
        return self.sessions.setdefault(session_id, {}).setdefault(
            message_id, {"info": {"id": message_id}, "parts": {}}
        )


class Follower:
    """A view subscribed to a bridge over a real WebSocket."""

    def __init__(self, url: str, token: str, view: View | None = None) -> None:
        self.url = url.replace("http://", "ws://") + "/api/events"
        self.token = token
        self.view = view or View()
        self._changed = anyio.Event()

    async def follow(
        self, *, task_status: anyio.abc.TaskStatus[ClientConnection] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Connect with the view's cursor and apply messages until the socket closes."""
        url = self.url if self.view.cursor is None else f"{self.url}?cursor={self.view.cursor}"
        headers = {"Authorization": f"Bearer {self.token}"}
        async with connect(url, additional_headers=headers, max_size=None) as socket:
            task_status.started(socket)
            async for raw in socket:
                self.view.receive(orjson.loads(raw))
                self._changed.set()
                self._changed = anyio.Event()

    async def changed(self) -> None:
        """Return after the view's next change."""
        await self._changed.wait()

    async def wait_until(self, condition: Callable[[View], bool]) -> None:
        with anyio.fail_after(60):
            while not condition(self.view):
                await self._changed.wait()
