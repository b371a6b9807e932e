"""`WS /api/events?cursor=N`: replay after the view's cursor, then live, one frame at a time.

The view's position is its cursor into the shared ring, not a queue of its own: however
long it sleeps, the bridge holds nothing more for it. On waking it gets everything after
its cursor, or, once that has left the ring, a snapshot, and then live patches, with no
gap between the two: both are read from the same ring.
"""

from __future__ import annotations

import logging

import anyio
import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from openchamber.bridge.feed import Feed
from openchamber.hub import coalesce

log = logging.getLogger("openchamber.bridge")

# The shortest time between two messages to one view: a burst of deltas goes as one message
# per 2 ms (at most 500 a second, each the work of one small JSON parse in a view), and a
# change waits at most that long, far below what a view can show at 60 Hz.
DEFAULT_FRAME_INTERVAL = 0.002


async def follow(
    websocket: WebSocket, feed: Feed, frame_interval: float = DEFAULT_FRAME_INTERVAL
) -> None:
    """Serve one view until it goes away."""
    await websocket.accept()
    cursor = _cursor(websocket.query_params.get("cursor"))
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(_until_closed, websocket, group.cancel_scope)
            await _send_changes(websocket, feed, cursor, frame_interval)
    except (WebSocketDisconnect, OSError, RuntimeError) as exc:
        # Sending to a view that has just gone: nothing to do, it resumes by its cursor.
        log.debug("view left: %r", exc)


def _cursor(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


async def _until_closed(websocket: WebSocket, scope: anyio.CancelScope) -> None:
    """Views send nothing we need; reading is how a close is noticed."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass
    scope.cancel()


async def _send_changes(
    websocket: WebSocket, feed: Feed, cursor: int | None, frame_interval: float
) -> None:
    while True:
        patches = feed.hub.since(cursor) if cursor is not None else None
        if patches is None:
            snapshot = feed.snapshot()
            cursor = snapshot["cursor"]
            message = {"type": "snapshot", "cursor": cursor, "snapshot": snapshot}
            await websocket.send_text(_dumps(message))
        else:
            cursor = feed.cursor  # read with since(), no await between: they agree
            if patches:
                message = {"type": "patches", "cursor": cursor, "patches": coalesce(patches)}
                await websocket.send_text(_dumps(message))
        sent_at = anyio.current_time()
        await feed.wait_beyond(cursor)
        # At most one message a frame: the first change after a quiet spell goes at once,
        # a burst's deltas gather until the frame is over (one message, not dozens).
        await anyio.sleep_until(sent_at + frame_interval)


def _dumps(message: object) -> str:
    return orjson.dumps(message).decode()
