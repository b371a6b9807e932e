"""One typed event model for every OpenCode wire generation and endpoint.

Pure: frames in, events out. Generations differ in how a text chunk travels (1.0/1.1:
cumulative `message.part.updated` with `delta`; 1.2+: `message.part.delta`; 1.3.3+: plus
`sessionID` and a `sync` twin with a per-session `seq`). `/global/event` wraps each payload
with its `directory`; `/event` does not. Nothing here raises on input from the wire: unknown
types become `RawEvent`, broken frames become `Diagnostic`, and the stream goes on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import orjson

from openchamber.redact import redact
from openchamber.sse import EventTooLarge, PayloadDecoder

JSON = dict[str, Any]

EXCERPT_CHARS = 500
_SYNC_VERSION_SUFFIX = re.compile(r"\.\d+$")


@dataclass(slots=True)
class Event:
    """Base of every normalized event: where it came from, as far as the wire says.

    Events are values: nothing changes one after it is made. They are not frozen only
    because a frozen dataclass costs three times as much to build, once per frame.
    """

    _: KW_ONLY
    event_id: str | None = None
    directory: str | None = None


@dataclass(slots=True)
class ServerConnected(Event):
    """First frame of a connection (1.0.164 and later)."""


@dataclass(slots=True)
class Heartbeat(Event):
    """`server.heartbeat`: proof of life for the watchdog; nothing to apply."""


@dataclass(slots=True)
class InstanceDisposed(Event):
    """The server's instance for a directory went away; its `/event` stream ends."""


@dataclass(slots=True)
class SessionUpdated(Event):
    """`session.created` or `session.updated`: the session's full info."""

    session_id: str
    info: JSON
    created: bool = False


@dataclass(slots=True)
class SessionDeleted(Event):
    session_id: str
    info: JSON


@dataclass(slots=True)
class SessionStatus(Event):
    """`{"type": "idle" | "busy" | "retry", ...}`."""

    session_id: str
    status: JSON


@dataclass(slots=True)
class SessionIdle(Event):
    """Deprecated twin of `SessionStatus` idle; kept so old servers end turns too."""

    session_id: str


@dataclass(slots=True)
class SessionError(Event):
    session_id: str | None
    error: JSON | None


@dataclass(slots=True)
class MessageUpdated(Event):
    session_id: str
    info: JSON


@dataclass(slots=True)
class MessageRemoved(Event):
    session_id: str
    message_id: str


@dataclass(slots=True)
class PartUpdated(Event):
    """A part's full state. `delta` is the 1.0/1.1 piece the cumulative text just grew by."""

    session_id: str
    message_id: str
    part: JSON
    delta: str | None = None


@dataclass(slots=True)
class PartDelta(Event):
    """1.2+: `field` (usually "text") of a part grew by `delta`. Never durable."""

    session_id: str | None
    message_id: str
    part_id: str
    field: str
    delta: str


@dataclass(slots=True)
class PartRemoved(Event):
    session_id: str
    message_id: str
    part_id: str


@dataclass(slots=True)
class PermissionAsked(Event):
    """A tool waits for the user's yes/no; `request` as the server sent it."""

    session_id: str
    request_id: str
    request: JSON


@dataclass(slots=True)
class PermissionReplied(Event):
    """`reply` is once | always | reject (older servers' `response` mapped onto it)."""

    session_id: str
    request_id: str
    reply: str


@dataclass(slots=True)
class QuestionAsked(Event):
    session_id: str
    request_id: str
    request: JSON


@dataclass(slots=True)
class QuestionAnswered(Event):
    """`question.replied` (with `answers`) or `question.rejected` (`rejected` True)."""

    session_id: str
    request_id: str
    answers: Any = None
    rejected: bool = False


@dataclass(slots=True)
class RawEvent(Event):
    """A type this model has no class for (or needs none): passed through untouched."""

    type: str
    properties: JSON


@dataclass(slots=True)
class Durable(Event):
    """A durable event with its place in its aggregate's (a session's) history.

    Live, it is the `sync` twin of an event the server also sent plainly (same event id);
    from `/sync/history` it may be the only copy. The store applies each seq once.
    """

    aggregate_id: str
    seq: int
    inner: Event


@dataclass(slots=True)
class Diagnostic(Event):
    """A frame that could not be understood. The stream goes on without it."""

    kind: str
    message: str
    offset: int = 0
    excerpt: str = ""


def _excerpt(text: str) -> str:
    return redact(text[:EXCERPT_CHARS])


def _str(value: Any) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


# One builder per wire type that has a class of its own; any other type is a RawEvent.
# Each takes (properties, event id, directory) and raises KeyError/TypeError on a wrong shape.
Builder = Callable[[JSON, "str | None", "str | None"], Event]


def _part_delta(p: JSON, eid: str | None, d: str | None) -> Event:
    # The hot path: most frames of a reply are deltas.
    delta = p["delta"]
    if type(delta) is not str:
        raise TypeError("delta is not a string")
    return PartDelta(
        p.get("sessionID"),
        _str(p["messageID"]),
        _str(p["partID"]),
        _str(p["field"]),
        delta,
        event_id=eid,
        directory=d,
    )


def _part_updated(p: JSON, eid: str | None, d: str | None) -> Event:
    part = p["part"]
    delta = p.get("delta")
    return PartUpdated(
        _str(part["sessionID"]),
        _str(part["messageID"]),
        dict(part),
        delta if type(delta) is str else None,
        event_id=eid,
        directory=d,
    )


def _message_updated(p: JSON, eid: str | None, d: str | None) -> Event:
    info = dict(p["info"])
    return MessageUpdated(_str(info["sessionID"]), info, event_id=eid, directory=d)


def _session_info(p: JSON) -> tuple[str, JSON]:
    info = dict(p["info"])
    return _str(p.get("sessionID") or info["id"]), info


def _session_created(p: JSON, eid: str | None, d: str | None) -> Event:
    return SessionUpdated(*_session_info(p), created=True, event_id=eid, directory=d)


def _session_updated(p: JSON, eid: str | None, d: str | None) -> Event:
    return SessionUpdated(*_session_info(p), event_id=eid, directory=d)


def _session_deleted(p: JSON, eid: str | None, d: str | None) -> Event:
    return SessionDeleted(*_session_info(p), event_id=eid, directory=d)


def _session_status(p: JSON, eid: str | None, d: str | None) -> Event:
    return SessionStatus(_str(p["sessionID"]), dict(p["status"]), event_id=eid, directory=d)


def _session_idle(p: JSON, eid: str | None, d: str | None) -> Event:
    return SessionIdle(_str(p["sessionID"]), event_id=eid, directory=d)


def _session_error(p: JSON, eid: str | None, d: str | None) -> Event:
    error = p.get("error")
    return SessionError(
        p.get("sessionID"), error if isinstance(error, dict) else None, event_id=eid, directory=d
    )


def _message_removed(p: JSON, eid: str | None, d: str | None) -> Event:
    return MessageRemoved(_str(p["sessionID"]), _str(p["messageID"]), event_id=eid, directory=d)


def _part_removed(p: JSON, eid: str | None, d: str | None) -> Event:
    return PartRemoved(
        _str(p["sessionID"]), _str(p["messageID"]), _str(p["partID"]), event_id=eid, directory=d
    )


def _permission_asked(p: JSON, eid: str | None, d: str | None) -> Event:
    return PermissionAsked(_str(p["sessionID"]), _str(p["id"]), dict(p), event_id=eid, directory=d)


def _permission_replied(p: JSON, eid: str | None, d: str | None) -> Event:
    # 1.0.224 renamed permissionID/response to requestID/reply.
    request_id = p.get("requestID", p.get("permissionID"))
    reply = p.get("reply", p.get("response"))
    return PermissionReplied(
        _str(p["sessionID"]), _str(request_id), _str(reply), event_id=eid, directory=d
    )


def _question_asked(p: JSON, eid: str | None, d: str | None) -> Event:
    return QuestionAsked(_str(p["sessionID"]), _str(p["id"]), dict(p), event_id=eid, directory=d)


def _question_replied(p: JSON, eid: str | None, d: str | None) -> Event:
    return QuestionAnswered(
        _str(p["sessionID"]), _str(p["requestID"]), p.get("answers"), event_id=eid, directory=d
    )


def _question_rejected(p: JSON, eid: str | None, d: str | None) -> Event:
    return QuestionAnswered(
        _str(p["sessionID"]), _str(p["requestID"]), rejected=True, event_id=eid, directory=d
    )


_BUILDERS: dict[str, Builder] = {
    "message.part.delta": _part_delta,
    "message.part.updated": _part_updated,
    "message.updated": _message_updated,
    "session.created": _session_created,
    "session.updated": _session_updated,
    "session.deleted": _session_deleted,
    "session.status": _session_status,
    "session.idle": _session_idle,
    "session.error": _session_error,
    "message.removed": _message_removed,
    "message.part.removed": _part_removed,
    "permission.updated": _permission_asked,
    "permission.asked": _permission_asked,
    "permission.replied": _permission_replied,
    "question.asked": _question_asked,
    "question.replied": _question_replied,
    "question.rejected": _question_rejected,
    "server.connected": lambda p, eid, d: ServerConnected(event_id=eid, directory=d),
    "server.heartbeat": lambda p, eid, d: Heartbeat(event_id=eid, directory=d),
    "server.instance.disposed": lambda p, eid, d: InstanceDisposed(event_id=eid, directory=d),
}


def normalize_payload(payload: Any, directory: str | None = None, offset: int = 0) -> Event:
    """One `{"id"?, "type", "properties"}` payload (already parsed) as a typed event."""
    kind = payload.get("type") if type(payload) is dict else None
    if type(kind) is not str:
        return Diagnostic(
            "shape",
            "payload without a string `type`",
            offset,
            _excerpt(str(payload)),
            directory=directory,
        )
    event_id = payload.get("id")
    if type(event_id) is not str:
        event_id = None
    props = payload.get("properties")
    if type(props) is not dict:
        props = {}
    builder = _BUILDERS.get(kind)
    if builder is None:
        if kind == "sync":
            return _normalize_sync(payload, directory, offset)
        return RawEvent(kind, props, event_id=event_id, directory=directory)
    try:
        return builder(props, event_id, directory)
    except (KeyError, TypeError, ValueError) as exc:
        return Diagnostic(
            "shape",
            f"{kind}: unexpected shape ({type(exc).__name__}: {exc})",
            offset,
            _excerpt(orjson.dumps(payload).decode()),
            event_id=event_id,
            directory=directory,
        )


def _normalize_sync(payload: JSON, directory: str | None, offset: int) -> Event:
    sync = payload.get("syncEvent")
    if not isinstance(sync, dict):
        return Diagnostic("shape", "sync frame without syncEvent", offset, directory=directory)
    return normalize_durable(
        sync.get("aggregateID"),
        sync.get("seq"),
        sync.get("type"),
        sync.get("id"),
        sync.get("data"),
        directory,
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


def normalize_frame(data: bytes | str, offset: int = 0) -> Event:
    """One SSE `data` field from `/global/event` (wrapped) or `/event` (bare)."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        if isinstance(data, bytes) and "\ufffd" in text:
            # Invalid UTF-8: the SSE rule is to replace it, then the JSON may still parse.
            return normalize_frame(text, offset)
        return Diagnostic("json", f"malformed JSON: {exc}", offset, _excerpt(text))
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
    _decoder: PayloadDecoder = field(init=False)

    def __post_init__(self) -> None:
        self._decoder = PayloadDecoder(max_event_size=self.max_event_size)

    @property
    def decoder(self) -> PayloadDecoder:
        return self._decoder

    def feed(self, data: bytes) -> list[Event]:
        self.offset += len(data)
        out: list[Event] = []
        chunk = data
        while True:
            try:
                frames = self._decoder.feed(chunk)
            except EventTooLarge as exc:
                out.extend(normalize_frame(data, self.offset) for data in exc.events)
                out.append(Diagnostic("too-large", str(exc), self.offset))
                chunk = b""  # the decoder kept the rest of the chunk; go on with it
                continue
            out.extend(normalize_frame(data, self.offset) for data in frames)
            return out
