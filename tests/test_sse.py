"""Tests for openchamber.sse, the sans-IO Server-Sent Events decoder.

Each case runs under several chunkings (whole, byte by byte, seeded random splits),
since a decoder must give the same events however the body arrives. The
web-platform-tests ``eventsource/format-*`` cases are written out as the exact bytes
their server scripts send. Properties compare the decoder with ``reference`` below, a
literal transcription of the WHATWG "event stream interpretation" steps.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import random
import re
import tracemalloc
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openchamber.sse import (
    DEFAULT_MAX_EVENT_SIZE,
    EventTooLarge,
    ServerSentEvent,
    SSEDecoder,
    SSEError,
)

E = ServerSentEvent

# ---------------------------------------------------------------------------------------
# Helpers


def reference(
    stream: bytes, last_event_id: str = ""
) -> tuple[list[ServerSentEvent], str, int | None]:
    """Decode a whole stream the way the spec reads, step by step, with no shortcuts."""
    text = stream.decode("utf-8", "replace")
    text = text.removeprefix("\ufeff")
    lines = re.split("\r\n|\r|\n", text)
    lines.pop()  # not terminated: an incomplete line, dropped at the end of the stream
    data, event_type, id_buffer, retry = "", "", last_event_id, None
    events = []
    for line in lines:
        if line == "":
            last_event_id = id_buffer
            if data:
                events.append(E(event_type or "message", data.removesuffix("\n"), last_event_id))
            data, event_type = "", ""
            continue
        if line.startswith(":"):
            continue
        if ":" in line:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
        else:
            field, value = line, ""
        if field == "event":
            event_type = value
        elif field == "data":
            data += value + "\n"
        elif field == "id":
            if "\0" not in value:
                id_buffer = value
        elif field == "retry" and value and all(c in "0123456789" for c in value):
            retry = int(value)
    return events, last_event_id, retry


Outcome = tuple[list[ServerSentEvent], str, int | None, int]


def run(
    chunks: Iterable[bytes], max_event_size: int = DEFAULT_MAX_EVENT_SIZE, last_event_id: str = ""
) -> Outcome:
    """Feed ``chunks``; return the events, last_event_id, retry and EventTooLarge count.

    After an EventTooLarge the decoder still holds the rest of the chunk, so it is
    drained with ``feed(b"")`` before the next chunk, the way a client would.
    """
    decoder = SSEDecoder(max_event_size, last_event_id=last_event_id)
    events: list[ServerSentEvent] = []
    oversized = 0
    for chunk in chunks:
        data = chunk
        while True:
            try:
                events += decoder.feed(data)
                break
            except EventTooLarge as exc:
                events += exc.events
                oversized += 1
                data = b""
    return events, decoder.last_event_id, decoder.retry, oversized


CHUNKINGS = ["whole", "bytewise", "random0", "random1", "random2"]


def split(data: bytes, how: str) -> list[bytes]:
    """Cut ``data`` into chunks: whole, one byte each, or at seeded random places."""
    if how == "whole":
        return [data]
    if how == "bytewise":
        return [data[i : i + 1] for i in range(len(data))]
    rng = random.Random(f"{how}:{len(data)}")
    cuts = sorted(rng.sample(range(1, len(data)), max(0, min(len(data) - 1, rng.randint(1, 12)))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    bounds = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *bounds], [*bounds, len(data)], strict=True)]


# ---------------------------------------------------------------------------------------
# web-platform-tests eventsource/format-*: the bytes each test's server sends.
# resources/message.py answers `message + ("\n\n" unless newline=none) + "\n"`.


def message_py(message: bytes, newline: bool = True) -> bytes:
    return message + (b"\n\n" if newline else b"") + b"\n"


LONG = b"x" * 2048
WPT: dict[str, tuple[bytes, list[ServerSentEvent], str, int | None]] = {
    "format-bom": (
        message_py(b"\xef\xbb\xbfdata:1\n\n\xef\xbb\xbfdata:2\n\ndata:3"),
        [E(data="1"), E(data="3")],
        "",
        None,
    ),
    "format-bom-2": (
        message_py(b"\xef\xbb\xbf\xef\xbb\xbfdata:1\n\ndata:2\n\ndata:3"),
        [E(data="2"), E(data="3")],
        "",
        None,
    ),
    "format-comments": (
        message_py(
            b"data:1\r:\0\n:\r\ndata:2\n:"
            + LONG
            + b"\rdata:3\n:data:fail\r:"
            + LONG
            + b"\ndata:4\n",
            newline=False,
        ),
        [E(data="1\n2\n3\n4")],
        "",
        None,
    ),
    "format-data-before-final-empty-line": (
        message_py(b"retry:1000\ndata:test1\n\nid:test\ndata:test2", newline=False),
        [E(data="test1")],
        "",  # the id of the event the stream cut off never counts
        1000,
    ),
    "format-field-data": (
        message_py(b"data:\n\ndata\ndata\n\ndata:test"),
        [E(data=""), E(data="\n"), E(data="test")],
        "",
        None,
    ),
    "format-field-event": (
        message_py(b"event:test\ndata:x\n\ndata:x"),
        [E("test", "x"), E("message", "x")],
        "",
        None,
    ),
    "format-field-event-empty": (
        message_py(b"event: \ndata:data"),
        [E(data="data")],
        "",
        None,
    ),
    "format-field-id": (
        "id: …\nretry: 200\ndata: hello\n\n".encode(),
        [E(data="hello", last_event_id="…")],
        "…",
        200,
    ),
    "format-field-id-3-persists": (
        b"id: 1\ndata: 1\n\ndata: 2\n\nid: 2\ndata:3\n\ndata:4\n\n",
        [E(data=d, last_event_id=i) for d, i in [("1", "1"), ("2", "1"), ("3", "2"), ("4", "2")]],
        "2",
        None,
    ),
    "format-field-id-3-resets": (
        b"id: 1\ndata: 1\n\nid:\ndata:2\n\ndata:3\n\n",
        [E(data="1", last_event_id="1"), E(data="2"), E(data="3")],
        "",
        None,
    ),
    "format-field-id-3-resets-without-colon": (
        b"id: 1\ndata: 1\n\nid\ndata:2\n\ndata:3\n\n",
        [E(data="1", last_event_id="1"), E(data="2"), E(data="3")],
        "",
        None,
    ),
    **{
        f"format-field-id-null-{i}": (
            b"id: " + value + b"\nretry: 200\ndata: hello\n\n",
            [E(data="hello")],
            "",
            200,
        )
        for i, value in enumerate([b"\0\0", b"x\0", b"\0x", b"x\0x", b" \0"])
    },
    "format-field-parsing": (
        message_py(
            b"data:\0\ndata:  2\rData:1\ndata\0:2\ndata:1\r\0data:4\nda-ta:3\rdata_5\ndata:3\r"
            b"data:\r\n data:32\ndata:4\n",
            newline=False,
        ),
        [E(data="\0\n 2\n1\n3\n\n4")],
        "",
        None,
    ),
    "format-field-retry": (message_py(b"retry:03000\ndata:x"), [E(data="x")], "", 3000),
    "format-field-retry-bogus": (
        message_py(b"retry:3000\nretry:1000x\ndata:x"),
        [E(data="x")],
        "",
        3000,
    ),
    "format-field-retry-empty": (message_py(b"retry\ndata:test"), [E(data="test")], "", None),
    "format-field-unknown": (
        message_py(
            b"data:test\n data\ndata\nfoobar:xxx\njustsometext\n:thisisacommentyay\ndata:test"
        ),
        [E(data="test\n\ntest")],
        "",
        None,
    ),
    "format-leading-space": (
        message_py(b"data:\ttest\rdata: \ndata:test"),
        [E(data="\ttest\n\ntest")],
        "",
        None,
    ),
    "format-newlines": (
        message_py(b"data:test\r\ndata\ndata:test\r\n\r", newline=False),
        [E(data="test\n\ntest")],
        "",
        None,
    ),
    "format-null-character": (message_py(b"data:\0\n\n"), [E(data="\0")], "", None),
    "format-utf-8": (message_py("data:ok…".encode()), [E(data="ok…")], "", None),
    # format-mime-*: Content-Type checks belong to the HTTP layer; the body they get is
    # message.py's default, decoded here like eventsource-onmessage's.
    "eventsource-onmessage": (message_py(b"data: data"), [E(data="data")], "", None),
    "event-data": (  # resources/message2.py, one round of its loop
        b"data:msg\ndata: msg\n\n:\nfalsefield:msg\n\nfalsefield:msg\nData:data\n\n"
        b"data\n\ndata:end\n\n",
        [E(data="msg\nmsg"), E(data=""), E(data="end")],
        "",
        None,
    ),
}


@pytest.mark.parametrize("how", CHUNKINGS)
@pytest.mark.parametrize("name", list(WPT))
def test_wpt_format(name: str, how: str) -> None:
    stream, events, last_event_id, retry = WPT[name]
    assert run(split(stream, how)) == (events, last_event_id, retry, 0)
    assert reference(stream) == (events, last_event_id, retry)


@pytest.mark.parametrize("how", CHUNKINGS)
def test_wpt_format_field_id_reconnects(how: str) -> None:
    """format-field-id(-2): the id carries over to each new connection's events."""
    first = run(split("id: …\nretry: 200\ndata: hello\n\n".encode(), how))
    assert first == ([E(data="hello", last_event_id="…")], "…", 200, 0)
    last_event_id = first[1]
    for _ in range(2):  # resources/last-event-id.py echoes the Last-Event-ID it got
        again = run(split(f"data: {last_event_id}\n\n".encode(), how), last_event_id=last_event_id)
        assert again == ([E(data="…", last_event_id="…")], "…", None, 0)
        last_event_id = again[1]


# ---------------------------------------------------------------------------------------
# Edge cases


EDGE: dict[str, tuple[bytes, list[ServerSentEvent], str, int | None]] = {
    "crlf": (b"data: a\r\ndata: b\r\n\r\n", [E(data="a\nb")], "", None),
    "cr-only": (b"data: a\rdata: b\r\r", [E(data="a\nb")], "", None),
    "cr-cr-lf-is-two-endings": (b"data: a\r\r\ndata: b\n\n", [E(data="a"), E(data="b")], "", None),
    "lf-cr-is-two-endings": (b"data: a\n\rdata: b\n\n", [E(data="a"), E(data="b")], "", None),
    "unicode-line-separators-are-data": (
        "data: a\u2028b\u2029c\x85d\n\n".encode(),
        [E(data="a\u2028b\u2029c\x85d")],
        "",
        None,
    ),
    "unicode-line-separator-in-field-name": ("data\u2028: x\n\n".encode(), [], "", None),
    "invalid-utf8-replaced": (b"data: \xff\xfeok\n\n", [E(data="\ufffd\ufffdok")], "", None),
    "truncated-utf8-before-lf": (b"data: \xe2\x82\n\n", [E(data="\ufffd")], "", None),
    "surrogate-bytes-replaced": (b"data: \xed\xa0\x80\n\n", [E(data="\ufffd" * 3)], "", None),
    "multibyte": ("data: €🚀日本\n\n".encode(), [E(data="€🚀日本")], "", None),
    "bom-only-once": (b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n", [], "", None),
    "bom-then-data": (b"\xef\xbb\xbfdata: x\n\n", [E(data="x")], "", None),
    "broken-bom": (b"\xef\xbbdata: x\n\n", [], "", None),
    "bom-not-at-start": (b"data: \xef\xbb\xbfx\n\n", [E(data="\ufeffx")], "", None),
    "id-with-nul-ignored": (
        b"id: 1\n\nid: a\0b\ndata: x\n\n",
        [E(data="x", last_event_id="1")],
        "1",
        None,
    ),
    "empty-id-resets": (b"id: 1\n\nid:\ndata: x\n\n", [E(data="x")], "", None),
    "id-only-block": (b"id: 7\n\n", [], "7", None),
    "id-only-block-then-event": (
        b"id: 7\n\ndata: x\n\n",
        [E(data="x", last_event_id="7")],
        "7",
        None,
    ),
    "id-of-unfinished-event-not-committed": (b"id: 9\ndata: x\n", [], "", None),
    "id-keeps-inner-spaces": (b"id:  a b \n\n", [], " a b ", None),
    "retry-zero": (b"retry: 0\n", [], "", 0),
    "retry-leading-zeros": (b"retry: 007\n", [], "", 7),
    "retry-latest-wins": (b"retry: 5\nretry: 6\n", [], "", 6),
    "retry-not-digits": (
        "retry: 12a\nretry: -1\nretry: 1.5\nretry: +1\nretry: ١٢\nretry: ²\nretry:  5\nretry: \n"
        "retry: 1 \n".encode(),
        [],
        "",
        None,
    ),
    "retry-applies-without-blank-line": (b"data: x\nretry: 10\n", [], "", 10),
    "no-dispatch-without-data": (b"event: foo\nid: 3\n\n", [], "3", None),
    "event-type-reset-after-empty-block": (b"event: foo\n\ndata: x\n\n", [E(data="x")], "", None),
    "event-type-reset-after-dispatch": (
        b"event: foo\ndata: x\n\ndata: y\n\n",
        [E("foo", "x"), E("message", "y")],
        "",
        None,
    ),
    "last-event-type-wins": (b"event: a\nevent: b\ndata: x\n\n", [E("b", "x")], "", None),
    "one-trailing-newline-removed": (b"data: a\ndata:\n\n", [E(data="a\n")], "", None),
    "empty-data-lines": (b"data\ndata\ndata\n\n", [E(data="\n\n")], "", None),
    "field-without-colon": (b"event\ndata\n\n", [E(data="")], "", None),
    "comment": (b": hello\ndata: x\n:\n\n", [E(data="x")], "", None),
    "comment-only-block": (b":\n\n: ping\n\n", [], "", None),
    "one-leading-space-removed": (b"data:  x\n\n", [E(data=" x")], "", None),
    "no-leading-space": (b"data:x\n\n", [E(data="x")], "", None),
    "tab-not-stripped": (b"data:\tx\n\n", [E(data="\tx")], "", None),
    "colon-in-value": (b"data: a:b: c\n\n", [E(data="a:b: c")], "", None),
    "field-names-case-sensitive": (b"Data: x\nEVENT: y\n\n", [], "", None),
    "field-name-with-space": (b"data : x\n\n", [], "", None),
    "unterminated-event-dropped": (b"data: x\n", [], "", None),
    "unterminated-line-dropped": (b"data: x\n\ndata: y", [E(data="x")], "", None),
    "blank-lines-only": (b"\n\n\r\n\r", [], "", None),
    "many-blank-lines-between": (
        b"data: a\n\n\n\n\ndata: b\n\n",
        [E(data="a"), E(data="b")],
        "",
        None,
    ),
    "nul-in-data": (b"data: a\0b\n\n", [E(data="a\0b")], "", None),
    "nul-in-event": (b"event: a\0\ndata: x\n\n", [E("a\0", "x")], "", None),
    "empty-event-name-is-message": (b"event:\ndata: x\n\n", [E("message", "x")], "", None),
}


@pytest.mark.parametrize("how", CHUNKINGS)
@pytest.mark.parametrize("name", list(EDGE))
def test_edge_case(name: str, how: str) -> None:
    stream, events, last_event_id, retry = EDGE[name]
    assert run(split(stream, how)) == (events, last_event_id, retry, 0)
    assert reference(stream) == (events, last_event_id, retry)


@pytest.mark.parametrize(
    "chunks",
    [
        [b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"],
        [b"data: a\r", b"", b"\n", b"data: b\r\n\r", b"", b"", b"\n"],
        [b"data: a\r", b"data: b\r", b"\r"],
    ],
)
def test_cr_lf_split_across_chunks_is_one_line_ending(chunks: list[bytes]) -> None:
    assert run(chunks) == ([E(data="a\nb")], "", None, 0)


@pytest.mark.parametrize(
    ("chunks", "data"),
    [
        ([b"data: \xe2", b"\x82", b"\xac\n\n"], "€"),
        ([b"data: \xe2\x82", b"\xac\n", b"\n"], "€"),
        ([b"data: \xf0\x9f", b"", b"\x9a\x80\xe2\x82\xac", b"\n\n"], "🚀€"),
        ([b"data: \xf0\x9f", b"\x9a", b"\n\n"], "\ufffd"),
    ],
)
def test_multibyte_character_split_across_chunks(chunks: list[bytes], data: str) -> None:
    assert run(chunks) == ([E(data=data)], "", None, 0)


def test_bom_split_across_chunks() -> None:
    assert run([b"\xef", b"\xbb", b"\xbf", b"data: x\n\n"])[0] == [E(data="x")]
    assert run([b"\xef", b"", b"\xbb\xbfdata: x\n\n"])[0] == [E(data="x")]


def test_pending_input_is_discarded_at_end_of_stream() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 1\ndata: x\n") == []
    assert decoder.last_event_id == ""  # the event never completed
    assert decoder.feed(b"\n") == [E(data="x", last_event_id="1")]
    assert decoder.last_event_id == "1"


def test_initial_last_event_id_for_a_reconnection() -> None:
    decoder = SSEDecoder(last_event_id="41")
    assert decoder.last_event_id == "41"
    assert decoder.feed(b"data: x\n\nid: 42\ndata: y\n\n") == [
        E(data="x", last_event_id="41"),
        E(data="y", last_event_id="42"),
    ]


def test_retry_with_more_digits_than_int_parses_is_ignored() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"retry: 5\nretry: " + b"9" * 5000 + b"\ndata: x\n\n") == [E(data="x")]
    assert decoder.retry == 5


def test_events_are_frozen_slotted_dataclasses() -> None:
    event = SSEDecoder().feed(b"data: x\n\n")[0]
    assert type(event) is ServerSentEvent
    assert event == E("message", "x", "")
    assert hash(event) == hash(E("message", "x", ""))
    assert E() == E("message", "", "")
    assert not hasattr(event, "__dict__")
    assert dataclasses.replace(event, data="y") == E(data="y")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.data = "y"  # type: ignore[misc]


def test_max_event_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_event_size"):
        SSEDecoder(max_event_size=0)


def test_mixed_frames_in_one_chunk_match_the_reference() -> None:
    """A chunk of plain frames with one other kind of line anywhere in it."""
    plain = [b'data: {"n": %d}\n\n' % i for i in range(200)]
    odd = [b"id: 7\n", b"event: e\n", b": c\n", b"data: a\ndata: b\n", b"\n", b"data:x\n"]
    for at in (0, 1, 100, 199, 200):
        for line in odd:
            stream = b"".join(plain[:at]) + line + b"".join(plain[at:])
            for how in CHUNKINGS[::2]:
                assert run(split(stream, how))[:3] == reference(stream)


def test_plain_frames_at_every_chunk_size() -> None:
    stream = b"".join(b'data: {"n": %d, "s": "\xe2\x82\xac"}\n\n' % i for i in range(50))
    expected = reference(stream)
    assert len(expected[0]) == 50
    for size in range(1, 40):
        chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
        assert run(chunks)[:3] == expected


def captures_dir() -> Path:
    default = Path(__file__).resolve().parents[2] / "shared" / "captures"
    return Path(os.environ.get("OPENCHAMBER_CAPTURES", default))


@pytest.mark.parametrize("name", ["opencode-1.18.33", "opencode-1.0.152"])
def test_real_capture(name: str) -> None:
    path = captures_dir() / f"{name}.sse.gz"
    assert path.exists(), f"no capture at {path} (the shared captures sit beside the repo)"
    stream = gzip.decompress(path.read_bytes())
    expected = reference(stream)
    assert expected[0]
    for size in (1460, 16384, len(stream)):
        chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
        assert run(chunks)[:3] == expected


def test_one_huge_event_in_small_pieces() -> None:
    payload = b"x" * (8 * 1024 * 1024)
    stream = b"id: big\ndata: " + payload + b"\n\ndata: next\n\n"
    decoder = SSEDecoder()
    events = []
    for i in range(0, len(stream), 1460):
        events += decoder.feed(stream[i : i + 1460])
    assert [len(e.data) for e in events] == [len(payload), 4]
    assert events[0].last_event_id == "big"


# ---------------------------------------------------------------------------------------
# EventTooLarge


def test_event_too_large_message_and_type() -> None:
    decoder = SSEDecoder(max_event_size=100)
    with pytest.raises(EventTooLarge) as caught:
        decoder.feed(b"data: " + b"x" * 200 + b"\n\n")
    exc = caught.value
    assert isinstance(exc, SSEError)
    assert (exc.size, exc.limit, exc.events) == (206, 100, [])
    assert str(exc) == (
        "SSE event of at least 206 bytes exceeds max_event_size (100 bytes); event discarded"
    )


def test_event_too_large_keeps_earlier_events_and_the_rest_of_the_chunk() -> None:
    decoder = SSEDecoder(max_event_size=100)
    with pytest.raises(EventTooLarge) as caught:
        decoder.feed(b"data: a\n\ndata: " + b"x" * 200 + b"\n\ndata: b\n\ndata: c")
    assert caught.value.events == [E(data="a")]
    assert decoder.feed(b"") == [E(data="b")]
    assert decoder.feed(b"\n\n") == [E(data="c")]


def test_event_size_limit_is_inclusive() -> None:
    line = b"data: " + b"x" * 94  # 100 bytes
    assert run([line + b"\n\n"], max_event_size=100)[::3] == ([E(data="x" * 94)], 0)
    assert run([line + b"x\n\n"], max_event_size=100)[::3] == ([], 1)
    # The data buffer (value + LF per line) plus the line being read.
    two = b"data: " + b"x" * 44 + b"\ndata: " + b"y" * 48 + b"\n\n"  # 45 + 54 bytes
    assert run([two], max_event_size=99)[3] == 0
    assert run([two], max_event_size=98)[3] == 1


def test_event_too_large_across_many_lines() -> None:
    stream = b"data: 0123456789\n" * 20 + b"\ndata: ok\n\n"
    for how in CHUNKINGS:
        assert run(split(stream, how), max_event_size=100) == ([E(data="ok")], "", None, 1)


def test_huge_line_without_newline_is_discarded_then_decoding_resumes() -> None:
    decoder = SSEDecoder(max_event_size=1000)
    assert decoder.feed(b"data: " + b"x" * 900) == []
    with pytest.raises(EventTooLarge):
        decoder.feed(b"x" * 200)
    for _ in range(100):
        assert decoder.feed(b"x" * 1000) == []  # discarding: no error, no buffering
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\ndata: ok\n\n") == [E(data="ok")]


def test_oversized_event_is_dropped_whole_but_retry_stays() -> None:
    big = b"x" * 200
    stream = (
        b"id: 1\ndata: a\n\n"
        b"id: 2\nretry: 5\nevent: big\ndata: " + big + b"\nid: 3\nretry: 6\n\n"
        b"data: b\n\n"
    )
    for how in CHUNKINGS:
        assert run(split(stream, how), max_event_size=100) == (
            [E(data="a", last_event_id="1"), E(data="b", last_event_id="1")],
            "1",
            5,
            1,
        )


def test_consecutive_oversized_events() -> None:
    big = b"data: " + b"x" * 300 + b"\n\n"
    stream = big + big + b"data: a\n\n" + big + b"data: b\n\n"
    for how in CHUNKINGS:
        assert run(split(stream, how), max_event_size=100) == (
            [E(data="a"), E(data="b")],
            "",
            None,
            3,
        )


def too_large(decoder: SSEDecoder, chunk: bytes) -> bool:
    try:
        decoder.feed(chunk)
    except EventTooLarge:
        return True
    return False


@pytest.mark.parametrize(
    "piece", [b"x" * 65536, (b"data: " + b"x" * 993 + b"\n") * 64], ids=["one-line", "many-lines"]
)
def test_memory_stays_bounded_while_discarding(piece: bytes) -> None:
    """64 MiB of one oversized event, as a single line or many: nothing piles up."""
    decoder = SSEDecoder(max_event_size=1024 * 1024)
    decoder.feed(b"data: ")
    pieces = 1
    while not too_large(decoder, piece):
        pieces += 1
    assert pieces in (16, 17)  # 1 MiB is 16 pieces of 64 KiB
    tracemalloc.start()
    try:
        for _ in range(1024):
            assert decoder.feed(piece) == []
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 512 * 1024
    assert decoder.feed(b"\n\ndata: ok\n\n") == [E(data="ok")]


# ---------------------------------------------------------------------------------------
# Properties


line_ending = st.sampled_from([b"\n", b"\r\n", b"\r"])
field_text = st.text(
    st.characters(exclude_categories=["Cs"]) | st.sampled_from("\0\u2028\x85\ufeff :"),
    max_size=12,
).map(lambda s: s.replace("\r", "").replace("\n", "").encode())
sse_line = st.one_of(
    st.builds(lambda v: b"data: " + v, field_text),
    st.builds(lambda v: b"data:" + v, field_text),
    st.just(b"data"),
    st.builds(lambda v: b"event:" + v, field_text),
    st.builds(lambda v: b"id: " + v, field_text),
    st.just(b"id"),
    st.builds(lambda v: b"retry: " + v, st.sampled_from([b"0", b"1500", b"x", b"", b"12 "])),
    st.builds(lambda v: b":" + v, field_text),
    field_text,
    st.just(b""),
    st.binary(max_size=6),
)
sse_stream = st.builds(
    lambda bom, parts: bom + b"".join(parts),
    st.sampled_from([b"", b"\xef\xbb\xbf"]),
    st.lists(st.builds(lambda line, end: line + end, sse_line, line_ending), max_size=30),
)
# Streams shaped like OpenCode's: mostly plain data frames, sometimes something else.
opencode_stream = st.lists(
    st.one_of(
        st.builds(lambda v: b"data: " + v + b"\n\n", field_text),
        st.builds(lambda v: b"data: " + v + b"\n\n", field_text),
        st.builds(lambda v: b"data: " + v + b"\n\n", field_text),
        st.builds(lambda line, end: line + end, sse_line, line_ending),
    ),
    max_size=60,
).map(b"".join)
any_stream = st.one_of(st.binary(max_size=200), sse_stream, opencode_stream)
cuts = st.lists(st.integers(min_value=0, max_value=10_000), max_size=20)


@settings(max_examples=400, deadline=None)
@given(stream=any_stream, cuts=cuts)
def test_matches_reference(stream: bytes, cuts: list[int]) -> None:
    assert run([stream])[:3] == reference(stream)
    assert run(split_at(stream, cuts))[:3] == reference(stream)


@settings(max_examples=300, deadline=None)
@given(stream=any_stream, cuts=cuts, max_event_size=st.integers(1, 60))
def test_chunking_invariance(stream: bytes, cuts: list[int], max_event_size: int) -> None:
    whole = run([stream], max_event_size=max_event_size)
    assert run(split_at(stream, cuts), max_event_size=max_event_size) == whole
    assert run(split(stream, "bytewise"), max_event_size=max_event_size) == whole


@settings(max_examples=200, deadline=None)
@given(stream=any_stream, max_event_size=st.integers(1, 60))
def test_oversized_events_are_just_missing(stream: bytes, max_event_size: int) -> None:
    """With a limit, the events are the reference's minus the oversized ones."""
    events, _, _, oversized = run([stream], max_event_size=max_event_size)
    expected = reference(stream)[0]
    if not oversized:
        assert events == expected
    remaining = iter((e.event, e.data) for e in expected)
    assert all((e.event, e.data) in remaining for e in events)  # in order, some left out


any_text = st.text(st.characters(exclude_categories=["Cs"]))
single_line = any_text.map(lambda s: re.sub("[\r\n]", "", s))
sent_event = st.tuples(
    single_line,  # event type, "" meaning message
    any_text,  # data: CR, LF and CRLF in it become separate data lines
    st.none() | single_line.filter(lambda s: "\0" not in s),  # id, None for no id line
)


@settings(max_examples=300, deadline=None)
@given(
    sent=st.lists(sent_event, max_size=12),
    ending=line_ending,
    comments=st.booleans(),
    cuts=cuts,
)
def test_round_trip(
    sent: list[tuple[str, str, str | None]], ending: bytes, comments: bool, cuts: list[int]
) -> None:
    """Encode events as a server would, with any line ending; decoding gives them back."""
    body = []
    expected = []
    last_event_id = ""
    for event_type, data, event_id in sent:
        data_lines = re.split("\r\n|\r|\n", data)
        lines = [": " + data_lines[0][:3]] if comments else []
        if event_type:
            lines.append(f"event: {event_type}")
        if event_id is not None:
            lines.append(f"id: {event_id}")
            last_event_id = event_id
        lines += [f"data: {line}" for line in data_lines]
        body.append(ending.decode().join([*lines, "", ""]))
        expected.append(E(event_type or "message", "\n".join(data_lines), last_event_id))
    stream = "".join(body).encode()
    assert run(split_at(stream, cuts)) == (expected, last_event_id, None, 0)
