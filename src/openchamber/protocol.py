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
from orjson import JSONDecodeError, loads

from openchamber.redact import redact
from openchamber.sse import EventTooLarge, PayloadDecoder

JSON = dict[str, Any]

EXCERPT_CHARS = 500
_new = object.__new__
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


def _shown(value: Any, as_json: bool = False) -> str:
    """`_excerpt` of a parsed value, unless it is nested too deep to write out."""
    try:
        return _excerpt(orjson.dumps(value).decode() if as_json else str(value))
    except (orjson.JSONEncodeError, RecursionError):  # orjson reads deeper than it writes
        return "(nested too deep to show)"


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
            _shown(payload),
            directory=directory,
        )
    if kind == "sync":
        return _normalize_sync(payload, directory, offset)
    event_id = payload.get("id")
    if type(event_id) is not str:
        event_id = None
    props = payload.get("properties")
    if type(props) is not dict:
        props = {}
    builder = _BUILDERS.get(kind)
    if builder is None:
        return RawEvent(kind, props, event_id=event_id, directory=directory)
    try:
        return builder(props, event_id, directory)
    except (KeyError, TypeError, ValueError) as exc:
        return Diagnostic(
            "shape",
            f"{kind}: unexpected shape ({type(exc).__name__}: {exc})",
            offset,
            _shown(payload, as_json=True),
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
    # rpartition() gives the regex's answer to "message.updated.1" in a fraction of the time
    # (str.isdecimal() is what \d matches: category Nd); the regex has the odd cases.
    head, dot, version = versioned_type.rpartition(".")
    kind = head if dot and version.isdecimal() else _SYNC_VERSION_SUFFIX.sub("", versioned_type)
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
        return Diagnostic("shape", "history item is not an object", 0, _shown(item))
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
    return _normalize_document(parsed, offset)


def _normalize_document(parsed: Any, offset: int) -> Event:
    """A parsed frame as an event: `/global/event`'s wrapper unwrapped, then the payload."""
    if _wrapped(parsed):
        directory = parsed.get("directory")
        return normalize_payload(
            parsed["payload"], directory if isinstance(directory, str) else None, offset
        )
    return normalize_payload(parsed, None, offset)


def _wrapped(parsed: Any) -> bool:
    """Whether a parsed frame is `/global/event`'s wrapper (its `payload` is the event)."""
    return isinstance(parsed, dict) and "payload" in parsed and "type" not in parsed


# Fast paths. While a reply streams, frame after frame has one layout in which only a few
# string values change: the event id and `delta` of `message.part.delta` (1.2+), or the
# event id, the growing `part.text` and `delta` of `message.part.updated` (1.0/1.1). Parsing
# each in full builds the same dicts and strings every time and, on 1.0/1.1, decodes the
# whole reply so far again (a 34 KB reply is ~160 MB of it). So a layout is learnt from a
# frame the general path parsed, and the next frames of that part are checked against it
# on bytes: only their changing values are parsed.
#
# Why that is exact: a layout is learnt only from a frame that is, byte for byte, orjson's
# serialization of what it parsed to, cut around the bodies of the string values that
# change. A frame made of the same pieces around other JSON string tokens parses to the
# same document with just those values changed (a string token may stand wherever another
# did), so the general path would build the event the layout builds. Anything else
# (another layout, a token that is not one valid JSON string, invalid UTF-8) fails the
# checks and takes the general path. The events share nothing a consumer could change:
# a layout gives each its own copy of every dict and list.
#
# A part has one layout at a time, dropped when an update without a delta starts or ends
# the part, so a frame that no layout takes is tried against the parts streaming now only.

_LAYOUTS = 16  # parts streaming at once (parallel subagents...) that all stay fast


def _replaced(doc: JSON, path: tuple[str, ...], value: str) -> JSON:
    """A copy of `doc` with the value at `path` replaced; what is off the path is shared."""
    key, *rest = path
    copy = dict(doc)
    copy[key] = _replaced(doc[key], tuple(rest), value) if rest else value
    return copy


def _cut(frame: bytes, doc: JSON, paths: list[tuple[str, ...]]) -> list[bytes] | None:
    """`frame` cut around the bodies of the string values at `paths`, in frame order.

    The pieces keep the tokens' quotes: what lies between two pieces is a string token's
    body. `frame` must be exactly orjson's serialization of `doc`; None unless each value
    is a string whose place the cut finds without doubt: orjson writes each string as a
    token of its own, so the pieces around the values' tokens are then `frame`.
    """
    if any(type(_at(doc, path)) is not str for path in paths):
        return None
    marks = [chr(i) for i in range(len(paths))]  # "\x00"...: if found elsewhere, no layout
    marked = doc
    for mark, path in zip(marks, paths, strict=True):
        marked = _replaced(marked, path, mark)
    text = orjson.dumps(marked)
    pieces: list[bytes] = []
    rest = text
    for mark in marks:
        escaped = orjson.dumps(mark)[1:-1]
        if text.count(escaped) != 1 or escaped not in rest:  # elsewhere too, or out of order
            return None
        piece, _, rest = rest.partition(escaped)
        pieces.append(piece)
    pieces.append(rest)
    return pieces


def _at(doc: Any, path: tuple[str, ...]) -> Any:
    """The value at `path` in parsed JSON, None if there is none."""
    for key in path:
        if type(doc) is not dict:
            return None
        doc = doc.get(key)
    return doc


def _cut_part_frame(
    frame: bytes, parsed: Any, event: Event, paths: list[tuple[str, ...]]
) -> tuple[bytes, slice | None, int, list[bytes]] | None:
    """`_cut` a part's frame at its payload's event id (if it has one), then `paths`, if
    the frame is exactly orjson's serialization of what it parsed to (`parsed`).

    Returns the head (the frame up to the event id's body, or nothing), the event id's
    token, where the rest starts, and the pieces of the rest. OpenCode's ids have a fixed
    length, so a layout expects the event id at a fixed place instead of searching.
    """
    try:
        if orjson.dumps(parsed) != frame:
            return None  # the quick answer for a server that lays its JSON out otherwise
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (it reads deeper)
        return None
    root = ("payload",) if _wrapped(parsed) else ()
    paths = [root + path for path in paths]
    if event.event_id is None:
        pieces = _cut(frame, parsed, paths)
        return None if pieces is None else (b"", None, 0, pieces)
    pieces = _cut(frame, parsed, [(*root, "id"), *paths])
    if pieces is None:
        return None
    head = pieces.pop(0)
    rest_at = len(head) + len(orjson.dumps(event.event_id)) - 2
    return head, slice(len(head) - 1, rest_at + 1), rest_at, pieces


def _copy_json(value: Any) -> Any:
    """A copy of parsed JSON that shares no dict or list with it."""
    if type(value) is dict:
        return {key: _copy_json(item) for key, item in value.items()}
    if type(value) is list:
        return [_copy_json(item) for item in value]
    return value


def _copier(value: dict[Any, Any] | list[Any]) -> Callable[[Any], Any]:
    """The quickest way to copy `value` the way `_copy_json` does."""
    items = value.values() if type(value) is dict else value
    if any(type(item) in (dict, list) for item in items):
        return _copy_json
    return dict.copy if type(value) is dict else list.copy


@dataclass(slots=True)
class _DeltaLayout:
    """`message.part.delta` frames of one part: head, event id, `key`, delta, `tail`."""

    head: bytes
    event_id: slice | None
    key_at: int  # where `key` starts: what tells frames of this layout from others
    key: bytes
    tail: bytes
    directory: str | None
    session_id: str | None
    message_id: str
    part_id: str
    part_field: str
    # Where to look, worked out once: slicing compared with `==` beats startswith().
    head_span: slice = field(init=False)
    key_span: slice = field(init=False)
    tail_span: slice = field(init=False)
    delta_token: slice = field(init=False)  # from the key's closing quote to the tail's

    def __post_init__(self) -> None:
        key_end = self.key_at + len(self.key)
        self.head_span = slice(0, len(self.head))
        self.key_span = slice(self.key_at, key_end)
        self.tail_span = slice(-len(self.tail), None)
        self.delta_token = slice(key_end - 1, 1 - len(self.tail))

    @classmethod
    def learn(cls, frame: bytes, parsed: Any, event: PartDelta) -> _DeltaLayout | None:
        if not isinstance(event.session_id, str | None):
            return None  # every event of the layout would share it
        cut = _cut_part_frame(frame, parsed, event, [("properties", "delta")])
        if cut is None:
            return None
        head, event_id, key_at, (key, tail) = cut
        return cls(
            head,
            event_id,
            key_at,
            key,
            tail,
            event.directory,
            event.session_id,
            event.message_id,
            event.part_id,
            event.field,
        )

    def take(self, frames: list[bytes], at: int, events: list[Event]) -> int:
        """Append the events of the frames from `at` on that have this layout.

        Returns the index of the first frame that has not (or the number of frames).
        """
        # Locals: this loop runs once per delta, most of a 1.2+ stream.
        head, key, tail = self.head, self.key, self.tail
        head_span, key_span, tail_span = self.head_span, self.key_span, self.tail_span
        event_id_token, delta_token = self.event_id, self.delta_token
        directory, session_id, message_id = self.directory, self.session_id, self.message_id
        part_id, part_field = self.part_id, self.part_field
        new, cls, append, parse = _new, PartDelta, events.append, loads
        for i in range(at, len(frames)):  # indexes: islice() would step over the first `at`
            frame = frames[i]
            if not (
                frame[key_span] == key and frame[head_span] == head and frame[tail_span] == tail
            ):
                return i
            # Each token starts and ends on a quote of the pieces around it, so it parses to
            # one string or fails; a frame too short for the pieces leaves one too short.
            try:
                event_id = parse(frame[event_id_token]) if event_id_token else None
                delta = parse(frame[delta_token])
            except JSONDecodeError:
                return i
            # Set the slots directly: the generated __init__ takes twice as long (keyword
            # arguments). The tests compare each event with the general path's.
            event: PartDelta = new(cls)
            event.event_id = event_id
            event.directory = directory
            event.session_id = session_id
            event.message_id = message_id
            event.part_id = part_id
            event.field = part_field
            event.delta = delta
            append(event)
        return len(frames)


@dataclass(slots=True)
class _TextLayout:
    """1.0/1.1 `message.part.updated` frames of one part whose text grows by `delta`.

    A frame is: head, event id, `key` (which ends with the text so far), the new piece of
    text, `between`, the same piece as the delta's body, `tail`. Only the piece is
    parsed; the frame's text becomes the text so far.
    """

    head: bytes
    event_id: slice | None
    key_at: int
    key: bytes
    text: str
    between: bytes
    tail: bytes
    directory: str | None
    session_id: str
    message_id: str
    part_id: object
    part: JSON  # the layout's own copy, text aside
    copies: list[tuple[str, Callable[[Any], Any]]]  # how to copy each dict or list in it

    @classmethod
    def learn(cls, frame: bytes, parsed: Any, event: PartUpdated) -> _TextLayout | None:
        paths = [("properties", "part", "text"), ("properties", "delta")]
        cut = _cut_part_frame(frame, parsed, event, paths)
        if cut is None:
            return None
        head, event_id, key_at, (before, between, tail) = cut
        text = event.part["text"]
        part = _copy_json(event.part)
        return cls(
            head,
            event_id,
            key_at,
            before + orjson.dumps(text)[1:-1],
            text,
            between,
            tail,
            event.directory,
            event.session_id,
            event.message_id,
            part.get("id"),
            part,
            [(key, _copier(value)) for key, value in part.items() if type(value) in (dict, list)],
        )

    def take(self, frames: list[bytes], at: int, events: list[Event]) -> int:
        """Like `_DeltaLayout.take`."""
        head, key, text, between, tail = self.head, self.key, self.text, self.between, self.tail
        head_end, key_at = len(head), self.key_at
        tail_span = slice(-len(tail), None)
        event_id_token = self.event_id
        start = key_at + len(key)  # where the frame's new piece of text starts
        after = len(between) + len(tail)
        to_token = len(between) - 1  # the delta token starts on between's closing quote
        token_end = 1 - len(tail)  # and ends on the tail's opening quote
        base, copies = self.part, self.copies
        directory, session_id, message_id = self.directory, self.session_id, self.message_id
        new, cls, append, parse = _new, PartUpdated, events.append, loads
        for i in range(at, len(frames)):
            frame = frames[i]
            # startswith(): the key holds the text so far, too long to copy for `==`. 1.0's
            # frames carry no event id: no head to compare.
            if not frame.startswith(key, key_at) or (head and frame[:head_end] != head):
                break
            twice = len(frame) - start - after  # the new piece is there twice
            end = start + (twice >> 1)
            token_at = end + to_token
            if twice < 0 or twice & 1 or frame[end : token_at + 1] != between:
                break
            token = frame[token_at:token_end]
            if frame[tail_span] != tail or frame[start : end + 1] != token[1:]:
                break
            try:
                event_id = parse(frame[event_id_token]) if event_id_token else None
                delta = parse(token)
            except JSONDecodeError:
                break
            # The text so far is valid JSON on its own and orjson refuses lone surrogates,
            # so no escape pairs up across the join: the frame's text is the old plus delta.
            text += delta
            key = frame[key_at:end]
            start = end
            part = base.copy()
            part["text"] = text
            for name, copy in copies:
                part[name] = copy(part[name])
            event: PartUpdated = new(cls)  # see _DeltaLayout.take
            event.event_id = event_id
            event.directory = directory
            event.session_id = session_id
            event.message_id = message_id
            event.part = part
            event.delta = delta
            append(event)
        else:
            i = len(frames)
        self.key = key
        self.text = text
        return i


@dataclass(slots=True)
class StreamParser:
    """Bytes of an event stream in, normalized events out: decoder plus normalizer.

    `offset` counts the bytes fed; a diagnostic's offset is where the chunk that completed
    the broken frame ended, so the frame lies at or before it. The events are those of
    `normalize_frame` for each frame; the layouts above only get there sooner.
    """

    max_event_size: int = 16 * 1024 * 1024
    offset: int = 0
    _decoder: PayloadDecoder = field(init=False)
    _layouts: list[_DeltaLayout | _TextLayout] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._decoder = PayloadDecoder(max_event_size=self.max_event_size)
        self._layouts = []  # of the parts streaming now, the newest first

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
                self._normalize(exc.events, out)
                out.append(Diagnostic("too-large", str(exc), self.offset))
                chunk = b""  # the decoder kept the rest of the chunk; go on with it
                continue
            self._normalize(frames, out)
            return out

    def _normalize(self, frames: list[bytes], events: list[Event]) -> None:
        """Append the events of `frames`: runs of them a layout takes, the others one by one."""
        layouts = self._layouts
        at = 0
        while at < len(frames):
            frame = frames[at]
            for layout in layouts:
                if frame.startswith(layout.key, layout.key_at):  # a quick no for most others
                    stop = layout.take(frames, at, events)
                    if stop > at:
                        at = stop
                        break
            else:
                events.append(self._learn(frame))
                at += 1

    def _learn(self, frame: bytes) -> Event:
        """The general path; a layout from the frame if it is one of a streaming part."""
        try:
            parsed = loads(frame)
        except JSONDecodeError:
            return normalize_frame(frame, self.offset)
        event = _normalize_document(parsed, self.offset)
        if type(event) is PartDelta:
            self._relayout(event.part_id, _DeltaLayout.learn(frame, parsed, event))
        elif type(event) is PartUpdated:
            # With a delta, a 1.0/1.1 part streaming; without, a part starting or ending:
            # its layout, if any, has had its day.
            layout = None if event.delta is None else _TextLayout.learn(frame, parsed, event)
            self._relayout(event.part.get("id"), layout)
        return event

    def _relayout(self, part_id: object, layout: _DeltaLayout | _TextLayout | None) -> None:
        """Give the part `layout` (or none) in place of the one it had, if any.

        One layout per part streaming now, no more: a frame no layout takes is tried
        against each.
        """
        layouts = self._layouts
        for i, known in enumerate(layouts):
            if known.part_id == part_id:
                del layouts[i]
                break
        if layout is not None:
            layouts.insert(0, layout)
            del layouts[_LAYOUTS:]
