"""Turns a server will never end: on servers without a status route (1.0.x).

1.0.x says a turn is over only with a final event. A turn its restart killed gets none:
its session stays busy here for good, and a message waiting for that turn to end would
wait for ever. `TurnWatch` notes when each session last showed progress; a busy session
silent for `stall` seconds, with no tool running (a tool may run silently for long), is a
candidate the runtime checks over REST and, if the server's copy has not moved either,
takes as idle. If the session shows progress after all, it is busy again.

Pure: fed patches and times, no clock of its own.
"""

from __future__ import annotations

from openchamber.store import Patch, Store

BUSY = {"type": "busy"}


class TurnWatch:
    def __init__(self, stall: float) -> None:
        self.stall = stall
        self._heard: dict[str, float] = {}  # session id -> when it last showed progress
        self._presumed_idle: set[str] = set()

    def note(self, patches: list[Patch], now: float) -> set[str]:
        """Take in patches; returns the sessions presumed idle that showed progress again."""
        revived: set[str] = set()
        for patch in patches:
            session_id = patch.get("sessionID")
            if session_id is None:
                continue
            op = patch["op"]
            if op == "session.remove":
                self._heard.pop(session_id, None)
                self._presumed_idle.discard(session_id)
            elif op == "session.status":
                if patch["status"].get("type") != "idle":
                    self._heard[session_id] = now
                    self._presumed_idle.discard(session_id)
            else:
                self._heard[session_id] = now
                if session_id in self._presumed_idle:
                    self._presumed_idle.discard(session_id)
                    revived.add(session_id)
        return revived

    def stalled(self, store: Store, now: float) -> set[str]:
        """Busy sessions silent for `stall` seconds, with no tool running."""
        return {
            session_id
            for session_id, session in store.sessions.items()
            if session.status.get("type") != "idle"
            and now - self._heard.setdefault(session_id, now) >= self.stall
            and not _tool_running(store, session_id)
        }

    def heard_since(self, session_id: str, since: float) -> bool:
        return self._heard.get(session_id, since) > since

    def presume_idle(self, session_id: str) -> None:
        self._presumed_idle.add(session_id)


def _tool_running(store: Store, session_id: str) -> bool:
    messages = store.messages(session_id)
    return bool(messages) and any(
        part.get("type") == "tool" and part.get("state", {}).get("status") in ("pending", "running")
        for part in messages[-1]["parts"]
    )
