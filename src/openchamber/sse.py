"""A sans-IO decoder for Server-Sent Events.

It implements the WHATWG HTML "event stream interpretation" exactly: feed it the raw
bytes of a ``text/event-stream`` body as they arrive and it returns the events each
chunk completes, the same events however the body is split into chunks.

It parses bytes and decodes only field values. Every byte the parser looks for (CR,
LF, colon, space) is ASCII, and a UTF-8 decoder that replaces errors never folds an
ASCII byte into one, so this gives exactly the spec's decode-then-parse result: a
character split across chunks is decoded whole, as its line is. It also keeps mostly
ASCII payloads out of the wide ``str`` form a single non-ASCII character forces on a
whole decoded chunk.

OpenCode servers send a lot of frames (1.0.x sends ~160 MB for one 34 KB reply), nearly
all ``data: <one-line JSON>\\n\\n``. A chunk made only of those is split in one go (see
``_parse_run``); anything else goes through the general line parser, which gives the
same events.
"""

from __future__ import annotations

import contextlib
from collections import deque
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Generic, NoReturn, TypeVar

__all__ = [
    "DEFAULT_MAX_EVENT_SIZE",
    "EventTooLarge",
    "PayloadDecoder",
    "SSEDecoder",
    "SSEError",
    "ServerSentEvent",
]

DEFAULT_MAX_EVENT_SIZE = 16 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"
_LONG_FRAME = 1024  # a run whose first frame is longer is split frame by frame


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event.

    ``last_event_id`` is the stream's last event ID when the event was dispatched (the
    DOM's ``MessageEvent.lastEventId``), whether or not this event carried an ``id:``.
    """

    event: str = "message"
    data: str = ""
    last_event_id: str = ""


_new = object.__new__
_set_event = vars(ServerSentEvent)["event"].__set__
_set_data = vars(ServerSentEvent)["data"].__set__
_set_last_event_id = vars(ServerSentEvent)["last_event_id"].__set__


def _messages(datas: list[str], last_event_id: str) -> list[ServerSentEvent]:
    """Build ``message`` events for ``datas``, twice as fast as calling the class.

    The generated ``__init__`` of a frozen dataclass makes three Python-level
    ``object.__setattr__`` calls per event; here C-level ``map`` calls the slot
    descriptors, which is what those calls end up doing anyway.
    """
    events = list(map(_new, repeat(ServerSentEvent, len(datas))))
    deque(map(_set_event, events, repeat("message")), 0)
    deque(map(_set_data, events, datas), 0)
    deque(map(_set_last_event_id, events, repeat(last_event_id)), 0)
    return events


_Out = TypeVar("_Out")


class SSEError(Exception):
    """Base class of the errors this module raises."""


class EventTooLarge(SSEError):
    """An event outgrew ``max_event_size``; it is dropped, the stream goes on.

    ``events`` holds the events completed earlier in the same ``feed()`` call, so none
    is lost. The decoder keeps the rest of the chunk and skips the oversized event up to
    its terminating blank line without buffering it; the next ``feed()`` (``b""`` will
    do) carries on with the events after it.
    """

    def __init__(self, size: int, limit: int, events: list[Any]) -> None:
        super().__init__(
            f"SSE event of at least {size} bytes exceeds max_event_size ({limit} bytes); "
            "event discarded"
        )
        self.size = size
        self.limit = limit
        self.events = events


class _Parser(Generic[_Out]):
    """The event stream parser; subclasses choose what a dispatched event becomes.

    ``last_event_id`` is what to send as ``Last-Event-ID`` when reconnecting: the last
    event ID buffer as of the latest blank line, so an ``id:`` line counts once its
    event (even an id-only one) is complete, and one in an event cut off by the end of
    the stream does not. Pass it on to the next connection's decoder.
    ``retry`` is the latest valid ``retry:`` value in milliseconds, or None.

    ``max_event_size`` bounds memory: it counts the bytes of an event's data buffer plus
    the line being read, line endings excluded. An event that exceeds it raises
    :class:`EventTooLarge` and is dropped whole, its id included, like an event cut off
    by the end of the stream; a ``retry:`` read before the limit was hit stays, as
    retry takes effect at once.

    Input left over when the stream ends is an incomplete event, which the spec drops,
    so there is no ``close()``.
    """

    def __init__(
        self, max_event_size: int = DEFAULT_MAX_EVENT_SIZE, *, last_event_id: str = ""
    ) -> None:
        if max_event_size < 1:
            raise ValueError(f"max_event_size must be positive, got {max_event_size}")
        self.max_event_size = max_event_size
        self.last_event_id = last_event_id
        self.retry: int | None = None
        self._head: bytes | None = b""  # the stream's first bytes, until the BOM check
        self._after_cr = False  # the last chunk ended in CR, so a leading LF is its CRLF
        self._carry = b""  # input left unread when EventTooLarge interrupted a chunk
        self._line: list[bytes] = []  # the pieces of an incomplete line
        self._line_len = 0
        self._data: list[bytes] = []  # the data buffer, one value per data line
        self._data_len = 0  # its length as the spec builds it, a LF after each value
        self._event_type = ""
        self._id = last_event_id  # the last event ID buffer
        self._discarding = False  # skipping an oversized event up to its blank line
        self._discard_mid_line = False

    def feed(self, data: bytes) -> list[_Out]:
        """Take the next chunk of the body and return the events it completes.

        Raises :class:`EventTooLarge` when an event outgrows ``max_event_size``.
        """
        buf = self._normalize(data)
        if self._carry:
            buf = self._carry + buf
            self._carry = b""
        events: list[_Out] = []
        pos = 0
        if self._discarding:
            pos = self._skip_discarded(buf)
            if pos < 0:
                return events
        if self._line and (4 * self._line_len <= len(buf) or b"\n" in buf):
            # Read a short unfinished line again with the new input, so that the chunk
            # starts with a whole frame and can take the fast path; a longer one too once
            # it ends here (a 1.0 reply's frame outgrows a chunk): it is joined once, so
            # big events are not copied over and over.
            self._line.append(buf)
            buf = b"".join(self._line)
            self._line = []
            self._line_len = 0
        if not self._line and not self._data and not self._event_type:
            pos = self._parse_run(buf, pos, events)
        self._parse_lines(buf[pos:] if pos else buf, events)
        return events

    def _normalize(self, data: bytes) -> bytes:
        """Strip the stream's BOM and turn each CRLF or CR line ending into one LF.

        The parser then only looks for LF, and a CR ending one chunk with the LF that
        starts the next still counts once.
        """
        if self._head is not None:
            data = self._head + data
            if len(data) < 3 and _BOM.startswith(data):
                self._head = data
                return b""
            self._head = None
            if data.startswith(_BOM):
                data = data[3:]
        if data and self._after_cr:
            self._after_cr = False
            if data[0] == 0x0A:
                data = data[1:]
        if b"\r" in data:
            self._after_cr = data[-1] == 0x0D
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        return data

    def _parse_run(self, buf: bytes, pos: int, events: list[_Out]) -> int:
        """Dispatch a run of plain ``data: <line>`` frames from ``pos`` in one go.

        The run is all of ``buf`` up to its last blank line, and must hold nothing but
        such frames each followed by one blank line; then it is split in C, which beats
        a Python step per line several times over. Returns where the run ends, or
        ``pos`` when it is not such a run.
        """
        end = buf.rfind(b"\n\n", pos) + 2
        if end < pos + len(b"data: \n\n") or not buf.startswith(b"data: ", pos):
            return pos
        if buf.find(b"\n", pos) - pos < _LONG_FRAME:
            # rsplit() gives the same pieces (two separators cannot overlap: no proper
            # prefix of it is also a suffix) twice as fast: it searches from the end, keying
            # on the separator's first byte, LF, which JSON lines lack, where split() keys
            # on its last, a space, which text is full of.
            payloads = buf[pos + 6 : end - 2].rsplit(b"\n\ndata: ")
            if b"".join(payloads).find(b"\n") >= 0:  # a frame with more than one line
                return pos
        else:
            # Long frames (a 1.0 reply's): a step per frame costs less than the searches
            # of rsplit() over each byte; memchr() finds each line's end.
            payloads = []
            at = pos
            while at < end:
                line_end = buf.find(b"\n", at)
                if buf[line_end + 1 : line_end + 2] != b"\n" or not buf.startswith(b"data: ", at):
                    return pos
                payloads.append(buf[at + 6 : line_end])
                at = line_end + 2
        if end - pos > self.max_event_size and max(map(len, payloads)) + 6 > self.max_event_size:
            return pos
        self.last_event_id = self._id
        events += self._run_events(payloads)
        return end

    def _parse_lines(self, buf: bytes, events: list[_Out]) -> None:
        """Process ``buf`` line by line, per the spec's steps; keep its unfinished line.

        A long line that began earlier (still in ``_line``) is only joined once it ends,
        so an event fed in small pieces takes linear time.
        """
        if b"\n" not in buf:  # memchr: much faster than split() over a long line
            if buf:
                self._line.append(buf)
                self._line_len += len(buf)
                self._check_partial_line(events)
            return
        lines = buf.split(b"\n")
        if self._line:
            self._line.append(lines[0])
            lines[0] = b"".join(self._line)
            self._line = []
            self._line_len = 0
        partial = lines.pop()
        limit = self.max_event_size
        for i, line in enumerate(lines):
            if not line:
                self._dispatch(events)
                continue
            if self._data_len + len(line) > limit:
                rest = b"\n".join([*lines[i + 1 :], partial])
                self._overflow(self._data_len + len(line), rest, events)
            if line.startswith(b"data:"):  # the usual line, decided at once
                value = line[6:] if line[5:6] == b" " else line[5:]
                self._data.append(value)
                self._data_len += len(value) + 1
                continue
            colon = line.find(b":")
            if colon == 0:
                continue  # a comment
            if colon < 0:
                field, value = line, b""
            else:
                field = line[:colon]
                value = (
                    line[colon + 2 :] if line[colon + 1 : colon + 2] == b" " else line[colon + 1 :]
                )
            if field == b"data":
                self._data.append(value)
                self._data_len += len(value) + 1
            elif field == b"event":
                self._event_type = value.decode("utf-8", "replace")
            elif field == b"id":
                if b"\0" not in value:
                    self._id = value.decode("utf-8", "replace")
            elif field == b"retry" and value.isdigit():  # bytes.isdigit(): ASCII digits only
                # int() refuses more digits than sys.get_int_max_str_digits(); such a
                # value is ignored like any other it cannot use.
                with contextlib.suppress(ValueError):
                    self.retry = int(value)
        if partial:
            self._line = [partial]
            self._line_len = len(partial)
            self._check_partial_line(events)

    def _check_partial_line(self, events: list[_Out]) -> None:
        """Enforce ``max_event_size`` on a line still waiting for its end."""
        size = self._data_len + self._line_len
        if size > self.max_event_size:
            self._discard_mid_line = True
            self._overflow(size, b"", events)

    def _dispatch(self, events: list[_Out]) -> None:
        """Handle a blank line: commit the id, then emit the event if it has data."""
        self.last_event_id = self._id
        if self._data:
            events.append(self._event(self._event_type or "message", b"\n".join(self._data)))
            self._data = []
            self._data_len = 0
        self._event_type = ""

    def _overflow(self, size: int, rest: bytes, events: list[_Out]) -> NoReturn:
        """Drop the pending event, skip the rest of it, keep what follows, and raise.

        ``rest`` is the input after where reading stopped: after the offending line, or
        nothing if that line is incomplete (``_discard_mid_line`` is then set).
        """
        self._line = []
        self._line_len = 0
        self._data = []
        self._data_len = 0
        self._event_type = ""
        self._id = self.last_event_id
        self._discarding = True
        end = self._skip_discarded(rest)
        if end >= 0:
            self._carry = rest[end:]
        raise EventTooLarge(size, self.max_event_size, events)

    def _skip_discarded(self, buf: bytes) -> int:
        """Skip the discarded event in ``buf`` up to and including its blank line.

        Returns where the input after it starts, or -1 if ``buf`` ends first.
        """
        if not self._discard_mid_line and buf.startswith(b"\n"):
            end = 1
        else:
            end = buf.find(b"\n\n")
            if end < 0:
                if buf:
                    self._discard_mid_line = buf[-1] != 0x0A
                return -1
            end += 2
        self._discarding = False
        self._discard_mid_line = False
        return end

    def _run_events(self, payloads: list[bytes]) -> list[_Out]:
        """Events for a run of plain ``data:`` frames (type "message", the current id)."""
        raise NotImplementedError

    def _event(self, event_type: str, data: bytes) -> _Out:
        """The event for one dispatch; ``data`` is the raw UTF-8 of the data buffer."""
        raise NotImplementedError


class SSEDecoder(_Parser[ServerSentEvent]):
    """Incremental event stream parser: ``feed(bytes) -> list[ServerSentEvent]``.

    See :class:`_Parser` for ``last_event_id``, ``retry`` and ``max_event_size``.
    """

    def _run_events(self, payloads: list[bytes]) -> list[ServerSentEvent]:
        try:  # strict UTF-8 is the rule, and the quickest call
            datas = list(map(bytes.decode, payloads))
        except UnicodeDecodeError:
            datas = [p.decode("utf-8", "replace") for p in payloads]
        return _messages(datas, self._id)

    def _event(self, event_type: str, data: bytes) -> ServerSentEvent:
        return ServerSentEvent(event_type, data.decode("utf-8", "replace"), self._id)


class PayloadDecoder(_Parser[bytes]):
    """The same parser, returning each event's ``data`` as raw UTF-8 bytes.

    For consumers that parse the data themselves (JSON parsers read UTF-8 directly):
    decoding to ``str`` first would only cost a copy. Event types are dropped; invalid
    UTF-8 is left for the consumer to judge.
    """

    def _run_events(self, payloads: list[bytes]) -> list[bytes]:
        return payloads

    def _event(self, event_type: str, data: bytes) -> bytes:
        return data
