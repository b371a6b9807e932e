"""Replaying a raw event-stream capture through decoder, normalizer and store.

A capture is the raw body of an event stream (`.sse`, or gzipped `.sse.gz`). One made
by `openchamber capture` starts with a header line, `: openchamber-capture {json}` (where
and when it was recorded, the response headers): an SSE comment, so the file stays a
valid event stream that any decoder, ours included, reads unchanged.
"""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from openchamber.protocol import Diagnostic, Event, StreamParser
from openchamber.store import Store

HEADER_PREFIX = b": openchamber-capture "


class CaptureError(Exception):
    """A capture file that cannot be read; the message says why."""


def read_capture(path: Path) -> bytes:
    """The raw stream bytes of a `.sse` or `.sse.gz` capture."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CaptureError(f"cannot read capture {path}: {exc.strerror or exc}") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise CaptureError(f"capture {path} is not valid gzip: {exc}") from exc
    return raw


def format_header(header: dict[str, Any]) -> bytes:
    """The header line of a capture; `header` must already be redacted."""
    return HEADER_PREFIX + orjson.dumps(header) + b"\n"


def capture_header(data: bytes) -> dict[str, Any] | None:
    """The header of a capture made by `openchamber capture`; None for other captures."""
    if not data.startswith(HEADER_PREFIX):
        return None
    line = data[len(HEADER_PREFIX) :].split(b"\n", 1)[0]
    try:
        header = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return header if isinstance(header, dict) else None


@dataclass
class Replay:
    store: Store = field(default_factory=Store)
    frames: int = 0
    types: Counter[str] = field(default_factory=Counter)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    shrink_attempts: int = 0

    def apply(self, events: Iterable[Event]) -> None:
        for event in events:
            self.frames += 1
            self.types[type(event).__name__] += 1
            if isinstance(event, Diagnostic):
                self.diagnostics.append(event)
            self.store.apply(event)


def chunks(data: bytes, sizes: Iterable[int] | None) -> Iterator[bytes]:
    """`data` cut into pieces of the given sizes (cycled); whole when `sizes` is None."""
    if sizes is None:
        yield data
        return
    position = 0
    while position < len(data):
        for size in sizes:
            if position >= len(data):
                return
            yield data[position : position + size]
            position += size


def replay(data: bytes, sizes: Iterable[int] | None = None) -> Replay:
    parser = StreamParser()
    result = Replay()
    for piece in chunks(data, sizes):
        result.apply(parser.feed(piece))
    return result
