"""One typed event model for every OpenCode wire generation and endpoint.

Pure: frames in, events out. Generations differ in how a text chunk travels (1.0/1.1:
cumulative `message.part.updated` with `delta`; 1.2+: `message.part.delta`; 1.3.3+: plus
`sessionID` and a `sync` twin with a per-session `seq`). `/global/event` wraps each payload
with its `directory`; `/event` does not. Nothing here raises on input from the wire: unknown
types become `RawEvent`, broken frames become `Diagnostic`, and the stream goes on.
"""

from __future__ import annotations

import re
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import orjson

from openchamber.redact import redact
from openchamber.sse import EventTooLarge, SSEDecoder

JSON = dict[str, Any]

EXCERPT_CHARS = 500
_SYNC_VERSION_SUFFIX = re.compile(r"\.\d+$")


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every normalized event: where it came from, as far as the wire says."""

    _: KW_ONLY
    event_id: str | None = None
    directory: str | None = None


@dataclass(frozen=True, slots=True)
class ServerConnected(Event):
    """First frame of a connection (1.0.164 and later)."""


@dataclass(frozen=True, slots=True)
class Heartbeat(Event):
    """`server.heartbeat`: proof of life for the watchdog; nothing to apply."""


@dataclass(frozen=True, slots=True)
class InstanceDisposed(Event):
    """The server's instance for a directory went away; its `/event` stream ends."""


@dataclass(frozen=True, slots=True)
class SessionUpdated(Event):
    """`session.created` or `session.updated`: the session's full info."""

    session_id: str
    info: JSON
    created: bool = False


@dataclass(frozen=True, slots=True)
class SessionDeleted(Event):
    session_id: str
    info: JSON


@dataclass(frozen=True, slots=True)
class SessionStatus(Event):
    """`{"type": "idle" | "busy" | "retry", ...}`."""

    session_id: str
    status: JSON


@dataclass(frozen=True, slots=True)
class SessionIdle(Event):
    """Deprecated twin of `SessionStatus` idle; kept so old servers end turns too."""

    session_id: str


@dataclass(frozen=True, slots=True)
class SessionError(Event):
    session_id: str | None
    error: JSON | None


@dataclass(frozen=True, slots=True)
class MessageUpdated(Event):
    session_id: str
    info: JSON


@dataclass(frozen=True, slots=True)
class MessageRemoved(Event):
    session_id: str
    message_id: str


@dataclass(frozen=True, slots=True)
class PartUpdated(Event):
    """A part's full state. `delta` is the 1.0/1.1 piece the cumulative text just grew by."""

    session_id: str
    message_id: str
    part: JSON
    delta: str | None = None


@dataclass(frozen=True, slots=True)
class PartDelta(Event):
    """1.2+: `field` (usually "text") of a part grew by `delta`. Never durable."""

    session_id: str | None
    message_id: str
    part_id: str
    field: str
    delta: str


@dataclass(frozen=True, slots=True)
class PartRemoved(Event):
    session_id: str
    message_id: str
    part_id: str


@dataclass(frozen=True, slots=True)
class PermissionAsked(Event):
    """A tool waits for the user's yes/no; `request` as the server sent it."""

    session_id: str
    request_id: str
    request: JSON


@dataclass(frozen=True, slots=True)
class PermissionReplied(Event):
    """`reply` is once | always | reject (older servers' `response` mapped onto it)."""

    session_id: str
    request_id: str
    reply: str


@dataclass(frozen=True, slots=True)
class QuestionAsked(Event):
    session_id: str
    request_id: str
    request: JSON


@dataclass(frozen=True, slots=True)
class QuestionAnswered(Event):
    """`question.replied` (with `answers`) or `question.rejected` (`rejected` True)."""

    session_id: str
    request_id: str
    answers: Any = None
    rejected: bool = False


@dataclass(frozen=True, slots=True)
class RawEvent(Event):
    """A type this model has no class for (or needs none): passed through untouched."""

    type: str
    properties: JSON


@dataclass(frozen=True, slots=True)
class Durable(Event):
    """A durable event with its place in its aggregate's (a session's) history.

    Live, it is the `sync` twin of an event the server also sent plainly (same event id);
    from `/sync/history` it may be the only copy. The store applies each seq once.
    """

    aggregate_id: str
    seq: int
    inner: Event


@dataclass(frozen=True, slots=True)
class Diagnostic(Event):
    """A frame that could not be understood. The stream goes on without it."""

    kind: str
    message: str
    offset: int = 0
    excerpt: str = ""


# Wire types that have a class of their own; any other type passes through as RawEvent.
_TYPED = {
    "server.connected",
    "server.heartbeat",
    "server.instance.disposed",
    "session.created",
    "session.updated",
    "session.deleted",
    "session.status",
    "session.idle",
    "session.error",
    "message.updated",
    "message.removed",
    "message.part.updated",
    "message.part.delta",
    "message.part.removed",
    "permission.updated",
    "permission.asked",
    "permission.replied",
    "question.asked",
    "question.replied",
    "question.rejected",
}


def _excerpt(text: str) -> str:
    return redact(text[:EXCERPT_CHARS])


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _build(kind: str, props: JSON, meta: JSON) -> Event:
    """The typed event for a known `kind`; raises KeyError/TypeError on a wrong shape."""
    if kind == "message.part.delta":
        return PartDelta(
            props.get("sessionID"),
            _str(props["messageID"]),
            _str(props["partID"]),
            _str(props["field"]),
            _str(props["delta"]),
            **meta,
        )
    if kind == "message.part.updated":
        part = props["part"]
        delta = props.get("delta")
        return PartUpdated(
            _str(part["sessionID"]),
            _str(part["messageID"]),
            dict(part),
            delta if isinstance(delta, str) else None,
            **meta,
        )
    if kind == "message.updated":
        info = dict(props["info"])
        return MessageUpdated(_str(info["sessionID"]), info, **meta)
    if kind in ("session.created", "session.updated", "session.deleted"):
        info = dict(props["info"])
        session_id = _str(props.get("sessionID") or info["id"])
        if kind == "session.deleted":
            return SessionDeleted(session_id, info, **meta)
        return SessionUpdated(session_id, info, created=kind == "session.created", **meta)
    if kind == "session.status":
        return SessionStatus(_str(props["sessionID"]), dict(props["status"]), **meta)
    if kind == "session.idle":
        return SessionIdle(_str(props["sessionID"]), **meta)
    if kind == "session.error":
        error = props.get("error")
        return SessionError(
            props.get("sessionID"), error if isinstance(error, dict) else None, **meta
        )
    if kind == "message.removed":
        return MessageRemoved(_str(props["sessionID"]), _str(props["messageID"]), **meta)
    if kind == "message.part.removed":
        return PartRemoved(
            _str(props["sessionID"]), _str(props["messageID"]), _str(props["partID"]), **meta
        )
    if kind in ("permission.updated", "permission.asked"):
        return PermissionAsked(_str(props["sessionID"]), _str(props["id"]), dict(props), **meta)
    if kind == "permission.replied":
        # 1.0.224 renamed permissionID/response to requestID/reply.
        request_id = props.get("requestID", props.get("permissionID"))
        reply = props.get("reply", props.get("response"))
        return PermissionReplied(_str(props["sessionID"]), _str(request_id), _str(reply), **meta)
    if kind == "question.asked":
        return QuestionAsked(_str(props["sessionID"]), _str(props["id"]), dict(props), **meta)
    if kind in ("question.replied", "question.rejected"):
        return QuestionAnswered(
            _str(props["sessionID"]),
            _str(props["requestID"]),
            props.get("answers"),
            rejected=kind == "question.rejected",
            **meta,
        )
    if kind == "server.connected":
        return ServerConnected(**meta)
    if kind == "server.heartbeat":
        return Heartbeat(**meta)
    return InstanceDisposed(**meta)


def normalize_payload(payload: Any, directory: str | None = None, offset: int = 0) -> Event:
    """One `{"id"?, "type", "properties"}` payload (already parsed) as a typed event."""
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        return Diagnostic(
            "shape",
            "payload without a string `type`",
            offset,
            _excerpt(str(payload)),
            directory=directory,
        )
    kind: str = payload["type"]
    event_id = payload.get("id") if isinstance(payload.get("id"), str) else None
    meta: JSON = {"event_id": event_id, "directory": directory}
    if kind == "sync":
        return _normalize_sync(payload, meta, offset)
    props = payload.get("properties")
    if not isinstance(props, dict):
        props = {}
    if kind not in _TYPED:
        return RawEvent(kind, props, **meta)
    try:
        return _build(kind, props, meta)
    except (KeyError, TypeError, ValueError) as exc:
        return Diagnostic(
            "shape",
            f"{kind}: unexpected shape ({type(exc).__name__}: {exc})",
            offset,
            _excerpt(orjson.dumps(payload).decode()),
            **meta,
        )


def _normalize_sync(payload: JSON, meta: JSON, offset: int) -> Event:
    sync = payload.get("syncEvent")
    if not isinstance(sync, dict):
        return Diagnostic("shape", "sync frame without syncEvent", offset, **meta)
    return normalize_durable(
        sync.get("aggregateID"),
        sync.get("seq"),
        sync.get("type"),
        sync.get("id"),
        sync.get("data"),
        meta["directory"],
        offset,
    )


def normalize_durable(
    aggregate_id: Any,
    seq: Any,
    versioned_type: Any,
    event_id: Any,
    data: Any,
    directory: str | None = None,
    offset: int = 0,
) -> Event:
    """A durable event (`sync` frame or `/sync/history` item) as `Durable`."""
    if (
        not isinstance(aggregate_id, str)
        or not isinstance(seq, int)
        or isinstance(seq, bool)
        or not isinstance(versioned_type, str)
    ):
        return Diagnostic(
            "shape", "durable event without aggregateID/seq/type", offset, directory=directory
        )
    kind = _SYNC_VERSION_SUFFIX.sub("", versioned_type)
    inner = normalize_payload({"type": kind, "id": event_id, "properties": data}, directory, offset)
    return Durable(
        aggregate_id,
        seq,
        inner,
        event_id=event_id if isinstance(event_id, str) else None,
        directory=directory,
    )


def normalize_history_item(item: Any) -> Event:
    """One `POST /sync/history` answer item: `{id, aggregate_id, seq, type, data}`."""
    if not isinstance(item, dict):
        return Diagnostic("shape", "history item is not an object", 0, _excerpt(str(item)))
    return normalize_durable(
        item.get("aggregate_id", item.get("aggregateID")),
        item.get("seq"),
        item.get("type"),
        item.get("id"),
        item.get("data"),
    )


def normalize_frame(data: str, offset: int = 0) -> Event:
    """One SSE `data` field from `/global/event` (wrapped) or `/event` (bare)."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return Diagnostic("json", f"malformed JSON: {exc}", offset, _excerpt(data))
    if isinstance(parsed, dict) and "payload" in parsed and "type" not in parsed:
        directory = parsed.get("directory")
        return normalize_payload(
            parsed["payload"], directory if isinstance(directory, str) else None, offset
        )
    return normalize_payload(parsed, None, offset)


@dataclass(slots=True)
class StreamParser:
    """Bytes of an event stream in, normalized events out: decoder plus normalizer.

    `offset` counts the bytes fed; a diagnostic's offset is where the chunk that completed
    the broken frame ended, so the frame lies at or before it.
    """

    max_event_size: int = 16 * 1024 * 1024
    offset: int = 0
    _decoder: SSEDecoder = field(init=False)

    def __post_init__(self) -> None:
        self._decoder = SSEDecoder(max_event_size=self.max_event_size)

    @property
    def decoder(self) -> SSEDecoder:
        return self._decoder

    def feed(self, data: bytes) -> list[Event]:
        self.offset += len(data)
        out: list[Event] = []
        chunk = data
        while True:
            try:
                frames = self._decoder.feed(chunk)
            except EventTooLarge as exc:
                out.extend(normalize_frame(f.data, self.offset) for f in exc.events)
                out.append(Diagnostic("too-large", str(exc), self.offset))
                chunk = b""  # the decoder kept the rest of the chunk; go on with it
                continue
            out.extend(normalize_frame(f.data, self.offset) for f in frames)
            return out
