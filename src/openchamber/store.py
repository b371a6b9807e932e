"""What a chat client shows, kept exact: a pure reducer over normalized events and snapshots.

No I/O, no clock. Feed it `protocol` events (`apply`) and REST snapshots (`load_*`); each
call returns the patches that describe what changed, small and JSON-serializable, so views
can follow without re-reading the state.

Invariants (asserted after every step by the tests):
1. Streamed text never shrinks because of an empty, stale or older update or snapshot;
   a part's final snapshot (`time.end` set) wins.
2. Text shrinks or vanishes only on a real removal or a part's final snapshot.
3. Once the stream settles, every part equals the server's.
4. A durable event applied twice changes nothing the second time.
5. Completion is explicit (`time.completed`/`finish`, session idle), never guessed.
"""

from __future__ import annotations

import bisect
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from openchamber.protocol import (
    JSON,
    Diagnostic,
    Durable,
    Event,
    MessageRemoved,
    MessageUpdated,
    PartDelta,
    PartRemoved,
    PartUpdated,
    PermissionAsked,
    PermissionReplied,
    QuestionAnswered,
    QuestionAsked,
    RawEvent,
    SessionDeleted,
    SessionError,
    SessionIdle,
    SessionStatus,
    SessionUpdated,
)

Patch = dict[str, Any]

IDLE: JSON = {"type": "idle"}
# String fields that grow by deltas while a part streams.
_STREAMED_FIELDS = frozenset({"text"})
_TOOL_RANK = {"pending": 0, "running": 1, "completed": 2, "error": 2}


class TextBuffer:
    """A string that grows in amortized O(1) per append: pieces are joined only when read.

    Every `_BATCH` appends the newest pieces are joined into one, so a reply made of many
    small deltas costs about one byte per character, not one string object per delta.
    """

    __slots__ = ("_fresh", "_length", "_pieces")
    _BATCH = 64

    def __init__(self, text: str = "") -> None:
        self._pieces: list[str] = [text] if text else []
        self._length = len(text)
        self._fresh = 0  # appends since the last batch join

    def __len__(self) -> int:
        return self._length

    def append(self, text: str) -> None:
        self._pieces.append(text)
        self._length += len(text)
        self._fresh += 1
        if self._fresh == self._BATCH:
            batch = "".join(self._pieces[-self._BATCH :])
            del self._pieces[-self._BATCH :]
            self._pieces.append(batch)
            self._fresh = 0

    def set(self, text: str) -> None:
        self._pieces = [text] if text else []
        self._length = len(text)
        self._fresh = 0

    @property
    def value(self) -> str:
        if len(self._pieces) > 1:
            self._pieces = ["".join(self._pieces)]
            self._fresh = 0
        return self._pieces[0] if self._pieces else ""


@dataclass(slots=True)
class _Part:
    session_id: str
    message_id: str
    data: JSON  # the part as last described, streamed fields left out
    streamed: dict[str, TextBuffer] = field(default_factory=dict)
    touched: int = 0  # the store's clock when an event last changed it

    @classmethod
    def from_json(cls, session_id: str, message_id: str, part: JSON) -> _Part:
        data, texts = _split_streamed(part)
        return cls(session_id, message_id, data, {k: TextBuffer(v) for k, v in texts.items()})

    def to_json(self) -> JSON:
        out = dict(self.data)
        for name, buffer in self.streamed.items():
            out[name] = buffer.value
        return out

    @property
    def final(self) -> bool:
        return _is_final(self.data)


@dataclass(slots=True)
class _Message:
    info: JSON
    parts: dict[str, _Part] = field(default_factory=dict)
    part_order: list[str] = field(default_factory=list)
    # Client-side state of an optimistic message not yet echoed by the server.
    local: JSON | None = None
    # Optimistic parts the server has not echoed under the same id (yet).
    optimistic_parts: set[str] = field(default_factory=set)
    touched: int = 0  # the store's clock when an event last changed its info


@dataclass(slots=True)
class _SeqTracker:
    """Which `seq`s of one aggregate were applied: a contiguous watermark plus stragglers."""

    watermark: int | None = None
    above: set[int] = field(default_factory=set)

    def add(self, seq: int) -> str:
        """'new', 'gap' (new, but earlier ones are missing) or 'duplicate'."""
        if self.watermark is None:
            self.watermark = seq
            return "new"
        if seq <= self.watermark or seq in self.above:
            return "duplicate"
        if seq == self.watermark + 1:
            self.watermark = seq
            while self.watermark + 1 in self.above:
                self.watermark += 1
                self.above.discard(self.watermark)
            return "new"
        self.above.add(seq)
        return "gap"


@dataclass(slots=True)
class _Session:
    info: JSON | None = None
    status: JSON = field(default_factory=lambda: dict(IDLE))
    messages: dict[str, _Message] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    permissions: dict[str, JSON] = field(default_factory=dict)
    questions: dict[str, JSON] = field(default_factory=dict)
    error: JSON | None = None


def _split_streamed(part: JSON) -> tuple[JSON, dict[str, str]]:
    texts = {k: v for k, v in part.items() if k in _STREAMED_FIELDS and isinstance(v, str)}
    if not texts:
        return dict(part), texts
    return {k: v for k, v in part.items() if k not in texts}, texts


def _is_final(part: JSON) -> bool:
    """A part is final unless it is streaming: started (`time.start`) and not ended."""
    timing = part.get("time")
    if not isinstance(timing, dict) or "start" not in timing:
        return True
    return timing.get("end") is not None


def _tool_rank(part: JSON) -> int:
    state = part.get("state")
    status = state.get("status") if isinstance(state, dict) else None
    return _TOOL_RANK.get(status, -1) if isinstance(status, str) else -1


def _merge_info(old: JSON, new: JSON) -> JSON:
    """A message's new info in place of the old: the server may drop a key (1.0.x drops
    `summary`), so keys do not accumulate, except completion. A stale info (a mid-stream
    snapshot, a late event) must not undo `time.completed` or `finish` once said."""
    merged = dict(new)
    if "finish" in old and "finish" not in new:
        merged["finish"] = old["finish"]
    if isinstance(old.get("time"), dict):
        newer = new.get("time")
        merged["time"] = {**old["time"], **(newer if isinstance(newer, dict) else {})}
    return merged


class Store:
    """Sessions, their status, messages in order, parts, pending permissions and questions."""

    def __init__(self, *, seen_ids_limit: int = 8192, orphan_delta_limit: int = 4096) -> None:
        self.sessions: dict[str, _Session] = {}
        self.anomalies: Counter[str] = Counter()
        self.raw_types: Counter[str] = Counter()
        self._messages: dict[str, str] = {}  # message id -> session id
        self._parts: dict[str, _Part] = {}
        self._seqs: dict[str, _SeqTracker] = {}
        # Recent event ids, oldest first: a set to ask, a deque to forget in O(1).
        self._seen: set[str] = set()
        self._seen_order: deque[str] = deque()
        self._seen_limit = seen_ids_limit
        # Recently removed message ids: one that comes back means the server's state and its
        # events disagree (seen on 1.0.x after a revert), so its session is resynced.
        self._removed: set[str] = set()
        self._removed_order: deque[str] = deque(maxlen=seen_ids_limit)
        self._orphans: dict[str, list[PartDelta]] = {}
        self._orphan_count = 0
        self._orphan_limit = orphan_delta_limit
        self._resync: set[str] = set()
        # Counts events applied. A snapshot fetched at clock T is older than any event
        # applied after T: for what those events touched, the events win (`as_of`).
        self.clock = 0
        self._as_of: int | None = None  # set while a snapshot loads
        self._settled_load = False  # set while a snapshot of a settled session loads

    # ------------------------------------------------------------------ reading

    def messages(self, session_id: str) -> list[JSON]:
        """A session's messages in the REST shape of `GET /session/{id}/message`."""
        session = self.sessions.get(session_id)
        if session is None:
            return []
        return [self._entry(session.messages[m]) for m in session.order]

    def message(self, message_id: str) -> tuple[str, JSON] | None:
        """One message's session id and REST-shaped entry; None if unknown here."""
        session_id = self._messages.get(message_id)
        if session_id is None:
            return None
        return session_id, self._entry(self.sessions[session_id].messages[message_id])

    def settled(self, message_id: str) -> bool:
        """Known, confirmed by the server, and no part of it streaming."""
        session_id = self._messages.get(message_id)
        if session_id is None:
            return False
        message = self.sessions[session_id].messages[message_id]
        return message.local is None and all(p.final for p in message.parts.values())

    @staticmethod
    def _entry(message: _Message) -> JSON:
        entry: JSON = {
            "info": message.info,
            "parts": [message.parts[p].to_json() for p in message.part_order],
        }
        if message.local is not None:
            entry["local"] = message.local
        return entry

    def visible_messages(self, session_id: str) -> list[JSON]:
        """What a chat view shows: `messages()` without what a revert took back.

        A revert only marks the session (`info.revert`); the server keeps returning the
        reverted messages until the next prompt removes them, but the user must not see
        them from the moment of the revert. From `revert.messageID` on everything is
        hidden, or from `revert.partID` on within that message when one is named.
        """
        messages = self.messages(session_id)
        session = self.sessions.get(session_id)
        revert = session.info.get("revert") if session and session.info else None
        if not isinstance(revert, dict) or not isinstance(revert.get("messageID"), str):
            return messages
        cut_message, cut_part = revert["messageID"], revert.get("partID")
        visible = []
        for message in messages:
            message_id = message["info"]["id"]
            if message_id > cut_message:
                break
            if message_id == cut_message:
                if not isinstance(cut_part, str):
                    break
                parts = [p for p in message["parts"] if p["id"] < cut_part]
                message = {**message, "parts": parts}
            visible.append(message)
        return visible

    def local_state(self, message_id: str) -> str | None:
        """A message's delivery state: None if unknown here, "confirmed" once the server
        has it, else its local state ("sending", "queued", "failed")."""
        session_id = self._messages.get(message_id)
        if session_id is None:
            return None
        local = self.sessions[session_id].messages[message_id].local
        return "confirmed" if local is None else str(local["state"])

    def part_text(self, part_id: str, name: str = "text") -> str | None:
        part = self._parts.get(part_id)
        if part is None or name not in part.streamed:
            return None
        return part.streamed[name].value

    def part_text_length(self, part_id: str, name: str = "text") -> int:
        part = self._parts.get(part_id)
        return len(part.streamed[name]) if part and name in part.streamed else 0

    def text_lengths(self) -> dict[str, int]:
        """Length of every streamed text field, by part id: what invariant 1 watches."""
        return {
            pid: len(p.streamed["text"]) for pid, p in self._parts.items() if "text" in p.streamed
        }

    def sequences(self) -> dict[str, int]:
        """Highest contiguous durable `seq` applied per aggregate: the `/sync/history` body."""
        return {k: t.watermark for k, t in self._seqs.items() if t.watermark is not None}

    def session_infos(self) -> list[JSON]:
        infos = [s.info for s in self.sessions.values() if s.info is not None]
        return sorted(infos, key=lambda i: i.get("time", {}).get("updated", 0), reverse=True)

    def snapshot(self) -> JSON:
        """The whole state: messages per session in the REST shape, plus infos and status."""
        return {
            "sessions": {sid: self.messages(sid) for sid in self.sessions},
            "sessionList": self.session_infos(),
            "sessionStatus": {sid: s.status for sid, s in self.sessions.items()},
            "permissions": [p for s in self.sessions.values() for p in s.permissions.values()],
            "questions": [q for s in self.sessions.values() for q in s.questions.values()],
        }

    def streaming_sessions(self) -> set[str]:
        """Sessions holding a part that has started and not ended."""
        return {p.session_id for p in self._parts.values() if not p.final}

    def request_resync(self, session_id: str) -> None:
        self._resync.add(session_id)

    def take_resync_requests(self) -> set[str]:
        """Sessions whose state is known to be incomplete and should be refetched over REST."""
        requests, self._resync = self._resync, set()
        return requests

    # ------------------------------------------------------------------ events

    def apply(self, event: Event) -> list[Patch]:
        if isinstance(event, Durable):
            return self._apply_durable(event)
        if event.event_id is not None:
            if event.event_id in self._seen:
                self.anomalies["duplicate event ignored"] += 1
                return []
            self._remember(event.event_id)
        return self._reduce(event)

    def _reduce(self, event: Event) -> list[Patch]:
        self.clock += 1
        match event:
            case PartDelta():
                return self._apply_delta(event)
            case PartUpdated(session_id=sid, message_id=mid, part=part, delta=delta):
                return self._upsert_part(sid, mid, part, delta)
            case MessageUpdated(session_id=sid, info=info):
                return self._upsert_message(sid, info)
            case SessionUpdated(session_id=sid, info=info):
                return self._upsert_session(sid, info)
            case SessionStatus(session_id=sid, status=status):
                return self.set_status(sid, status)
            case SessionIdle(session_id=sid):
                return self.set_status(sid, IDLE)
            case MessageRemoved(session_id=sid, message_id=mid):
                return self.remove_message(sid, mid)
            case PartRemoved(session_id=sid, message_id=mid, part_id=pid):
                return self._remove_part(sid, mid, pid)
            case SessionDeleted(session_id=sid):
                return self.remove_session(sid)
            case PermissionAsked(session_id=sid, request_id=rid, request=request):
                self._session(sid).permissions[rid] = request
                return [{"op": "permission.upsert", "sessionID": sid, "request": request}]
            case PermissionReplied(session_id=sid, request_id=rid):
                return self._clear_request(sid, rid, "permission")
            case QuestionAsked(session_id=sid, request_id=rid, request=request):
                self._session(sid).questions[rid] = request
                return [{"op": "question.upsert", "sessionID": sid, "request": request}]
            case QuestionAnswered(session_id=sid, request_id=rid):
                return self._clear_request(sid, rid, "question")
            case SessionError(session_id=sid, error=error):
                if sid is not None:
                    self._session(sid).error = error
                return [{"op": "session.error", "sessionID": sid, "error": error}]
            case RawEvent(type=kind):
                self.raw_types[kind] += 1
                return []
            case Diagnostic(kind=kind):
                self.anomalies[f"malformed frame ({kind})"] += 1
                return []
        return []  # connection-level events (connected, heartbeat, disposed) change no state

    def _remember(self, event_id: str) -> None:
        self._seen.add(event_id)
        self._seen_order.append(event_id)
        if len(self._seen_order) > self._seen_limit:
            self._seen.discard(self._seen_order.popleft())

    def _apply_durable(self, event: Durable) -> list[Patch]:
        tracker = self._seqs.setdefault(event.aggregate_id, _SeqTracker())
        verdict = tracker.add(event.seq)
        if verdict == "duplicate":
            self.anomalies["duplicate durable event"] += 1
            return []
        if verdict == "gap":
            self.anomalies["durable sequence gap"] += 1
            self._resync.add(event.aggregate_id)
        inner = event.inner
        if isinstance(inner, SessionDeleted):
            # Its history is over; its plain twin may have removed the session already.
            self._seqs.pop(event.aggregate_id, None)
        # The live stream sends each durable event plainly too; the id says if it was applied.
        if inner.event_id is not None and inner.event_id in self._seen:
            return []
        return self.apply(inner)

    # ------------------------------------------------------------------ sessions

    def _session(self, session_id: str) -> _Session:
        session = self.sessions.get(session_id)
        if session is None:
            session = self.sessions[session_id] = _Session()
        return session

    def _upsert_session(self, session_id: str, info: JSON) -> list[Patch]:
        session = self._session(session_id)
        if session.info == info:
            return []
        session.info = info
        return [{"op": "session.upsert", "sessionID": session_id, "info": info}]

    def set_status(self, session_id: str, status: JSON) -> list[Patch]:
        session = self._session(session_id)
        if session.status == status:
            return []
        session.status = status
        if status.get("type") == "idle" and session_id in self.streaming_sessions():
            # Idle, yet a part never ended: its end was lost, or the server lost the part
            # (a reply cut by a restart). Only the server's copy can say which.
            self._resync.add(session_id)
        return [{"op": "session.status", "sessionID": session_id, "status": status}]

    def remove_session(self, session_id: str) -> list[Patch]:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return []
        for message_id, message in session.messages.items():
            self._forget_message(message_id, message)
        self._seqs.pop(session_id, None)
        return [{"op": "session.remove", "sessionID": session_id}]

    def _clear_request(self, session_id: str, request_id: str, kind: str) -> list[Patch]:
        session = self._session(session_id)
        pending = session.permissions if kind == "permission" else session.questions
        if pending.pop(request_id, None) is None:
            return []
        return [{"op": f"{kind}.remove", "sessionID": session_id, "requestID": request_id}]

    # ------------------------------------------------------------------ messages

    def _message(self, session_id: str, message_id: str) -> tuple[_Message, list[Patch]]:
        """The message, created as a placeholder (and its session resynced) if unknown."""
        session = self._session(session_id)
        message = session.messages.get(message_id)
        if message is not None:
            return message, []
        info: JSON = {"id": message_id, "sessionID": session_id}
        self._insert_message(session, session_id, _Message(info))
        self._resync.add(session_id)
        self.anomalies["part before its message"] += 1
        return session.messages[message_id], [
            {"op": "message.upsert", "sessionID": session_id, "info": info}
        ]

    def _insert_message(self, session: _Session, session_id: str, message: _Message) -> None:
        message_id = message.info["id"]
        session.messages[message_id] = message
        bisect.insort(session.order, message_id)
        self._messages[message_id] = session_id

    def _upsert_message(self, session_id: str, info: JSON) -> list[Patch]:
        message_id = info.get("id")
        if not isinstance(message_id, str):
            self.anomalies["message without id"] += 1
            return []
        session = self._session(session_id)
        message = session.messages.get(message_id)
        if self._as_of is None:
            if message is not None:
                message.touched = self.clock
        elif message is not None and message.touched > self._as_of:
            return []  # an event newer than the snapshot said more
        if message is None:
            if message_id in self._removed:
                self.anomalies["message back after its removal"] += 1
                self._resync.add(session_id)
            touched = self.clock if self._as_of is None else 0
            self._insert_message(session, session_id, _Message(dict(info), touched=touched))
            return [{"op": "message.upsert", "sessionID": session_id, "info": info}]
        merged = _merge_info(message.info, info)
        confirmed = message.local is not None
        if merged == message.info and not confirmed:
            return []
        message.info = merged
        message.local = None  # the server's echo confirms an optimistic message
        return [{"op": "message.upsert", "sessionID": session_id, "info": merged}]

    def remove_message(self, session_id: str, message_id: str) -> list[Patch]:
        session = self.sessions.get(session_id)
        message = session.messages.pop(message_id, None) if session else None
        if session is None or message is None:
            return []
        session.order.remove(message_id)
        self._forget_message(message_id, message)
        if len(self._removed_order) == self._removed_order.maxlen:
            self._removed.discard(self._removed_order[0])
        self._removed_order.append(message_id)
        self._removed.add(message_id)
        return [{"op": "message.remove", "sessionID": session_id, "messageID": message_id}]

    def _forget_message(self, message_id: str, message: _Message) -> None:
        self._messages.pop(message_id, None)
        for part_id in message.parts:
            self._parts.pop(part_id, None)
            self._drop_orphans(part_id)

    # ------------------------------------------------------------------ parts

    def _upsert_part(
        self, session_id: str, message_id: str, incoming: JSON, delta: str | None = None
    ) -> list[Patch]:
        part_id = incoming.get("id")
        if not isinstance(part_id, str):
            self.anomalies["part without id"] += 1
            return []
        message, patches = self._message(session_id, message_id)
        existing = message.parts.get(part_id)
        if self._as_of is not None and existing is not None and existing.touched > self._as_of:
            return patches  # an event newer than the snapshot said more
        if existing is None:
            patches += self._drop_optimistic_parts(session_id, message_id, message)
            part = _Part.from_json(session_id, message_id, incoming)
            part.touched = self.clock if self._as_of is None else 0
            message.parts[part_id] = part
            bisect.insort(message.part_order, part_id)
            self._parts[part_id] = part
            self._apply_orphans(part_id, part)
            patches.append(self._part_patch(part))
            return patches
        message.optimistic_parts.discard(part_id)
        if self._as_of is None:
            existing.touched = self.clock
        return patches + self._merge_part(existing, part_id, incoming, delta)

    def _merge_part(
        self, part: _Part, part_id: str, incoming: JSON, delta: str | None
    ) -> list[Patch]:
        if _tool_rank(incoming) < _tool_rank(part.data):
            self.anomalies["stale tool update ignored"] += 1
            return []
        final = _is_final(incoming) or self._settled_load
        if part.final and not final:
            self.anomalies["stale update of a finished part ignored"] += 1
            return []
        data, texts = _split_streamed(incoming)
        appends: list[Patch] = []
        replaced = data != part.data
        for name, text in texts.items():
            buffer = part.streamed.get(name)
            if buffer is None:
                part.streamed[name] = TextBuffer(text)
                replaced = True
                continue
            if not final and len(text) < len(buffer):
                # The trap behind truncated replies: a mid-stream snapshot carries less text
                # than was streamed. Keep the longer text until the part's final snapshot.
                self.anomalies["shrink blocked"] += 1
                continue
            grown = self._extension(buffer, text, delta)
            if grown is None:
                replaced = True
            elif grown:
                appends.append(self._append_patch(part, part_id, name, grown))
            buffer.set(text)
        part.data = data
        if replaced:
            return [self._part_patch(part)]
        return appends

    @staticmethod
    def _extension(buffer: TextBuffer, text: str, delta: str | None) -> str | None:
        """What `text` adds to the buffer ("" if nothing), or None if it is not an extension."""
        grown_by = len(text) - len(buffer)
        if delta is not None and grown_by == len(delta) and text.endswith(delta):
            return delta  # 1.0/1.1 cumulative updates: trust the delta, skip an O(n) compare
        current = buffer.value
        if grown_by == 0:
            return "" if text == current else None
        return text[len(current) :] if text.startswith(current) else None

    def _apply_delta(self, event: PartDelta) -> list[Patch]:
        part = self._parts.get(event.part_id)
        if part is None:
            self._buffer_orphan(event)
            return []
        if part.final:
            self.anomalies["delta after final snapshot ignored"] += 1
            return []
        buffer = part.streamed.get(event.field)
        if buffer is None:
            buffer = part.streamed[event.field] = TextBuffer()
        buffer.append(event.delta)
        part.touched = self.clock
        return [self._append_patch(part, event.part_id, event.field, event.delta)]

    def _buffer_orphan(self, event: PartDelta) -> None:
        # A delta before its part (joined mid-stream, or a gap): keep it for when the part
        # shows up, and ask for a resync so it does.
        self.anomalies["delta before its part"] += 1
        session_id = event.session_id or self._messages.get(event.message_id)
        if session_id is not None:
            self._resync.add(session_id)
        self._orphans.setdefault(event.part_id, []).append(event)
        self._orphan_count += 1
        while self._orphan_count > self._orphan_limit:
            oldest = next(iter(self._orphans))
            self.anomalies["buffered deltas dropped for resync"] += len(self._orphans[oldest])
            self._drop_orphans(oldest)

    def _drop_orphans(self, part_id: str) -> None:
        self._orphan_count -= len(self._orphans.pop(part_id, ()))

    def _apply_orphans(self, part_id: str, part: _Part) -> None:
        waiting = self._orphans.pop(part_id, None)
        if not waiting:
            return
        self._orphan_count -= len(waiting)
        if part.final:
            return  # the final snapshot already holds everything they carried
        for event in waiting:
            part.streamed.setdefault(event.field, TextBuffer()).append(event.delta)

    def _remove_part(self, session_id: str, message_id: str, part_id: str) -> list[Patch]:
        session = self.sessions.get(session_id)
        message = session.messages.get(message_id) if session else None
        if message is None or message.parts.pop(part_id, None) is None:
            return []
        message.part_order.remove(part_id)
        self._parts.pop(part_id, None)
        return [
            {
                "op": "part.remove",
                "sessionID": session_id,
                "messageID": message_id,
                "partID": part_id,
            }
        ]

    def _drop_optimistic_parts(
        self, session_id: str, message_id: str, message: _Message
    ) -> list[Patch]:
        """A server part under a new id replaces the optimistic parts it did not echo."""
        patches: list[Patch] = []
        for part_id in sorted(message.optimistic_parts):
            patches += self._remove_part(session_id, message_id, part_id)
        message.optimistic_parts.clear()
        return patches

    @staticmethod
    def _part_patch(part: _Part) -> Patch:
        return {
            "op": "part.upsert",
            "sessionID": part.session_id,
            "messageID": part.message_id,
            "part": part.to_json(),
        }

    @staticmethod
    def _append_patch(part: _Part, part_id: str, name: str, text: str) -> Patch:
        return {
            "op": "part.text.append",
            "sessionID": part.session_id,
            "messageID": part.message_id,
            "partID": part_id,
            "field": name,
            "text": text,
        }

    # ------------------------------------------------------------------ snapshots

    def load_sessions(self, infos: Iterable[JSON]) -> list[Patch]:
        """`GET /session`: upsert each; absent ones are left to events (other directories)."""
        patches: list[Patch] = []
        for info in infos:
            if isinstance(info.get("id"), str):
                patches += self._upsert_session(info["id"], info)
        return patches

    def load_status(self, statuses: dict[str, JSON]) -> list[Patch]:
        """`GET /session/status`: sessions not listed are idle."""
        patches: list[Patch] = []
        for session_id in {*self.sessions, *statuses}:
            patches += self.set_status(session_id, statuses.get(session_id, IDLE))
        return patches

    def load_messages(
        self,
        session_id: str,
        messages: Iterable[JSON],
        as_of: int | None = None,
        *,
        settled: bool = False,
    ) -> list[Patch]:
        """Merge `GET /session/{id}/message` without regressing what was streamed.

        Messages (and parts) missing from the snapshot are removed only inside the id range
        it covers: anything newer may have been created after the server answered. With
        `as_of` (the `clock` when the request went out), what events changed since is
        newer than the snapshot and kept as the events left it. With `settled` (the server
        said the session was idle before and after the snapshot), the snapshot's parts are
        the server's last word even where they say less than was streamed: a reply cut
        off by a server restart stays "streaming" on the server, with its text lost.
        """
        self._as_of = as_of
        self._settled_load = settled
        try:
            return self._load_messages(session_id, messages)
        finally:
            self._as_of = None
            self._settled_load = False

    def _load_messages(self, session_id: str, messages: Iterable[JSON]) -> list[Patch]:
        patches: list[Patch] = []
        seen: set[str] = set()
        for entry in messages:
            info = entry.get("info")
            if not isinstance(info, dict) or not isinstance(info.get("id"), str):
                self.anomalies["snapshot message without id"] += 1
                continue
            message_id = info["id"]
            seen.add(message_id)
            patches += self._upsert_message(session_id, info)
            part_ids: set[str] = set()
            for part in entry.get("parts") or []:
                if isinstance(part, dict) and isinstance(part.get("id"), str):
                    part_ids.add(part["id"])
                    patches += self._upsert_part(session_id, message_id, part)
            patches += self._prune(session_id, message_id, part_ids)
        session = self.sessions.get(session_id)
        if session is not None and seen:
            low, high = min(seen), max(seen)
            for message_id in [m for m in session.order if low <= m <= high and m not in seen]:
                message = session.messages[message_id]
                if message.local is None and not self._newer(message.touched):
                    patches += self.remove_message(session_id, message_id)
        return patches

    def _prune(self, session_id: str, message_id: str, kept: set[str]) -> list[Patch]:
        message = self.sessions[session_id].messages[message_id]
        if not kept or message.local is not None:
            return []
        high = max(kept)
        stale = [
            p
            for p in message.part_order
            if p < high and p not in kept and not self._newer(message.parts[p].touched)
        ]
        patches: list[Patch] = []
        for part_id in stale:
            patches += self._remove_part(session_id, message_id, part_id)
        return patches

    def _newer(self, touched: int) -> bool:
        """Whether an event changed it after the snapshot being loaded was asked for."""
        return self._as_of is not None and touched > self._as_of

    # ------------------------------------------------------------------ optimistic sends

    def add_optimistic(
        self, session_id: str, message_id: str, parts: list[JSON], created_ms: int
    ) -> list[Patch]:
        """Show a user's message at once under its client-made id, until the server echoes it."""
        session = self._session(session_id)
        if message_id in session.messages:
            return []
        info: JSON = {
            "id": message_id,
            "sessionID": session_id,
            "role": "user",
            "time": {"created": created_ms},
        }
        local: JSON = {"state": "sending"}
        message = _Message(info, local=local, optimistic_parts={p["id"] for p in parts})
        self._insert_message(session, session_id, message)
        patches: list[Patch] = [
            {"op": "message.upsert", "sessionID": session_id, "info": info, "local": local}
        ]
        return patches + self._add_optimistic_parts(session_id, message_id, message, parts)

    def replace_optimistic_parts(self, message_id: str, parts: list[JSON]) -> list[Patch]:
        """A message not yet sent, edited: its parts replaced by `parts`."""
        found = self._unconfirmed(message_id)
        if found is None:
            return []
        session_id, message = found
        patches = self._drop_optimistic_parts(session_id, message_id, message)
        message.optimistic_parts = {p["id"] for p in parts}
        return patches + self._add_optimistic_parts(session_id, message_id, message, parts)

    def _unconfirmed(self, message_id: str) -> tuple[str, _Message] | None:
        """A message sent from here that the server has not confirmed yet, and its session."""
        session_id = self._messages.get(message_id)
        if session_id is None:
            return None
        message = self.sessions[session_id].messages[message_id]
        return None if message.local is None else (session_id, message)

    def _add_optimistic_parts(
        self, session_id: str, message_id: str, message: _Message, parts: list[JSON]
    ) -> list[Patch]:
        patches: list[Patch] = []
        for part in parts:
            full = {**part, "sessionID": session_id, "messageID": message_id}
            state = _Part.from_json(session_id, message_id, full)
            message.parts[part["id"]] = state
            bisect.insort(message.part_order, part["id"])
            self._parts[part["id"]] = state
            patches.append(self._part_patch(state))
        return patches

    def set_local_state(self, message_id: str, state: str, error: str | None = None) -> list[Patch]:
        """Mark an optimistic message sending/queued/failed; no-op once the server confirmed it."""
        found = self._unconfirmed(message_id)
        if found is None:
            return []
        session_id, message = found
        assert message.local is not None
        message.local["state"] = state
        if error is None:
            message.local.pop("error", None)
        else:
            message.local["error"] = error
        return [
            {
                "op": "message.local",
                "sessionID": session_id,
                "messageID": message_id,
                "local": message.local,
            }
        ]
