"""`StreamParser`'s fast paths give exactly the events of the general path, and never raise.

`StreamParser` takes the frames of a streaming part by their byte layout (see the fast
paths in protocol.py). `reference()` below is the general path alone: each frame the
decoder yields, through `normalize_frame`, as `StreamParser.feed` did before the fast
paths. Every test compares the two, event for event (same class, same fields, no dict or
list shared between events), on the real captures, in the layouts other servers and
endpoints give, and disturbed every way hypothesis finds: bytes flipped, cut, inserted or
made invalid UTF-8, escapes inserted, keys renamed or reordered, values retyped or nested
deep, JSON laid out otherwise, frames duplicated, dropped, or of other parts interleaved;
then on frames crafted against each check the layouts make. The decoder's faster
splitting is checked against test_sse's reading of the spec.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from itertools import pairwise
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openchamber import protocol
from openchamber.protocol import (
    Diagnostic,
    Durable,
    Event,
    PartDelta,
    PartUpdated,
    StreamParser,
    normalize_durable,
    normalize_frame,
    normalize_payload,
)
from openchamber.replay import read_capture
from openchamber.sse import DEFAULT_MAX_EVENT_SIZE, EventTooLarge, PayloadDecoder

from .support import CAPTURES
from .test_sse import reference as spec_reference
from .test_sse import run as run_decoder

VERSIONS = ["1.0.152", "1.18.33"]
RAW = {v: read_capture(CAPTURES / f"opencode-{v}.sse.gz") for v in VERSIONS}


def reference(chunks: list[bytes], max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> list[Event]:
    """The general path alone: the decoder's frames through `normalize_frame`."""
    decoder = PayloadDecoder(max_event_size=max_event_size)
    offset = 0
    events: list[Event] = []
    for chunk in chunks:
        offset += len(chunk)
        data = chunk
        while True:
            try:
                frames = decoder.feed(data)
            except EventTooLarge as exc:
                events += [normalize_frame(frame, offset) for frame in exc.events]
                events.append(Diagnostic("too-large", str(exc), offset))
                data = b""
                continue
            events += [normalize_frame(frame, offset) for frame in frames]
            break
    return events


def parse(chunks: list[bytes], max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> list[Event]:
    parser = StreamParser(max_event_size=max_event_size)
    return [event for chunk in chunks for event in parser.feed(chunk)]


def assert_same(chunks: list[bytes], max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
    expected = reference(chunks, max_event_size)
    events = parse(chunks, max_event_size)
    assert [type(e) for e in events] == [type(e) for e in expected]
    assert events == expected
    owners: dict[int, Event] = {}  # no dict or list is in two events, as none is parsed twice
    for event in events:
        for container in _containers_of(event):
            assert owners.setdefault(id(container), event) is event


def _containers_of(value: Any) -> Iterator[Any]:
    if isinstance(value, Event):
        for name in value.__dataclass_fields__:
            yield from _containers_of(getattr(value, name))
    elif isinstance(value, dict | list):
        yield value
        for item in value.values() if isinstance(value, dict) else value:
            yield from _containers_of(item)


def layouts_after(chunks: list[bytes]) -> list[Any]:
    """The layouts a parser keeps after `chunks`: those of parts still streaming."""
    parser = StreamParser()
    for chunk in chunks:
        parser.feed(chunk)
    return parser._layouts


def cut(body: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted({c % (len(body) + 1) for c in cuts}), len(body)]
    return [body[start:end] for start, end in pairwise(bounds)]


def stream(frames: list[bytes]) -> bytes:
    return b"".join(b"data: " + frame + b"\n\n" for frame in frames)


# Frame sources: the captures as sent, and the layouts other servers or endpoints give.
def _with_event_ids(frames: list[bytes]) -> list[bytes]:
    """1.0 frames as a 1.1 server might send them: payloads with (fixed-length) ids."""
    out = []
    for n, frame in enumerate(frames):
        doc = orjson.loads(frame)
        doc["payload"] = {"id": f"evt_{n:026d}", **doc["payload"]}
        out.append(orjson.dumps(doc))
    return out


def _bare(frames: list[bytes]) -> list[bytes]:
    """The payloads alone, as `GET /event` sends them."""
    return [orjson.dumps(orjson.loads(frame)["payload"]) for frame in frames]


SOURCES = {v: PayloadDecoder().feed(RAW[v]) for v in VERSIONS}
SOURCES["1.0.152 with event ids"] = _with_event_ids(SOURCES["1.0.152"])
SOURCES["1.18.33 bare"] = _bare(SOURCES["1.18.33"])
SOURCES["1.0.152 bare"] = _bare(SOURCES["1.0.152"])


@pytest.fixture
def general_frames(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the frames that took the general path."""
    count = [0]
    normalize = protocol._normalize_document

    def counting(parsed: Any, offset: int) -> Event:
        count[0] += 1
        return normalize(parsed, offset)

    monkeypatch.setattr(protocol, "_normalize_document", counting)
    return count


# --- The captures --------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 7, 100, 1460, 16 * 1024, 1 << 30])
@pytest.mark.parametrize("version", VERSIONS)
def test_captures_in_chunks(version: str, size: int) -> None:
    raw = RAW[version]
    assert_same([raw[i : i + size] for i in range(0, len(raw), size)])


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_every_frame_of_every_source(source: str, general_frames: list[int]) -> None:
    frames = SOURCES[source]
    assert_same([stream(frames)])
    # Not vacuous: the fast paths took the streaming frames (all but one per part).
    streaming = [
        event
        for event in reference([stream(frames)])
        if isinstance(event, PartDelta)
        or (isinstance(event, PartUpdated) and event.delta is not None)
    ]
    parts = {e.part_id if isinstance(e, PartDelta) else e.part["id"] for e in streaming}
    general_frames[0] = 0
    parse([stream(frames)])
    assert len(frames) - general_frames[0] == len(streaming) - len(parts)
    assert layouts_after([stream(frames)]) == []  # each part's last update ends its layout


@settings(max_examples=100, deadline=None)
@given(version=st.sampled_from(VERSIONS), cuts=st.lists(st.integers(0, 2_000_000), max_size=40))
def test_captures_cut_anywhere(version: str, cuts: list[int]) -> None:
    assert_same(cut(RAW[version], cuts))


@pytest.mark.parametrize("version", VERSIONS)
def test_events_are_self_contained(version: str) -> None:
    """Changing an event a consumer holds changes no other event, and no later one."""

    def scribble(value: Any) -> None:
        if isinstance(value, Event):
            scribble(_fields(value))
        elif isinstance(value, dict):
            for item in list(value.values()):
                scribble(item)
            value["scribbled"] = True
        elif isinstance(value, list):
            for item in value:
                scribble(item)
            value.append("scribbled")

    raw = RAW[version]
    chunks = [raw[i : i + 4096] for i in range(0, len(raw), 4096)]
    expected = reference(chunks)
    parser = StreamParser()
    events = []
    for chunk in chunks:
        fresh = parser.feed(chunk)
        assert fresh == expected[len(events) : len(events) + len(fresh)]
        for event in fresh:
            scribble(event)
        events += fresh
    assert len(events) == len(expected)


def _fields(event: Event) -> dict[str, Any]:
    return {name: getattr(event, name) for name in event.__dataclass_fields__}


# --- Disturbed captures ---------------------------------------------------------------

INSERTS = [
    b'\\"',
    b"\\\\",
    b"\\u00e9",
    b"\\u2028",
    b"\\ud83d\\ude80",
    b"\\ud83d",
    b"\\ude80",
    b"\\n",
    b"\\",
    b'"',
    b'","',
    b"}",
    b" ",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xf0\x9f\x9a",
    b"\x00",
    b"\n",
    b"\r",
    b"\xc3\xa9",
]

Mutation = Callable[[st.DrawFn, bytes, list[bytes]], list[bytes]]


def _flip(draw: st.DrawFn, frame: bytes, _: list[bytes]) -> list[bytes]:
    at = draw(st.integers(0, max(len(frame) - 1, 0)))
    mask = draw(st.integers(1, 255))
    return [frame[:at] + bytes([frame[at] ^ mask]) + frame[at + 1 :]] if frame else [frame]


def _truncate(draw: st.DrawFn, frame: bytes, _: list[bytes]) -> list[bytes]:
    return [frame[: draw(st.integers(0, len(frame)))]]


def _insert(draw: st.DrawFn, frame: bytes, _: list[bytes]) -> list[bytes]:
    at = draw(st.integers(0, len(frame)))
    return [frame[:at] + draw(st.sampled_from(INSERTS)) + frame[at:]]


def _delete(draw: st.DrawFn, frame: bytes, _: list[bytes]) -> list[bytes]:
    at = draw(st.integers(0, len(frame)))
    return [frame[:at] + frame[at + draw(st.integers(1, 8)) :]]


def _duplicate(draw: st.DrawFn, frame: bytes, _: list[bytes]) -> list[bytes]:
    return [frame] * draw(st.integers(2, 3))


def _drop(draw: st.DrawFn, frame: bytes, _: list[bytes]) -> list[bytes]:
    return []


def _other_frame(draw: st.DrawFn, frame: bytes, frames: list[bytes]) -> list[bytes]:
    """A frame from elsewhere in the capture: often another part's, mid-stream."""
    return [frame, draw(st.sampled_from(frames))]


def _other_part(draw: st.DrawFn, frame: bytes, _: list[bytes]) -> list[bytes]:
    """The frame as if of another part (or message, session): ids changed, same length."""
    ids = re.findall(rb"(?:prt|msg|ses|evt)_\w+", frame)
    if not ids:
        return [frame]
    old = draw(st.sampled_from(ids))
    new = old[:4] + draw(st.sampled_from([b"0", b"z"])) * (len(old) - 4 + draw(st.integers(-2, 1)))
    return [frame.replace(old, new)]


def _rewrite(edit: Callable[[st.DrawFn, Any], Any]) -> Mutation:
    """A mutation of the frame's JSON, serialized again by orjson."""

    def mutation(draw: st.DrawFn, frame: bytes, _: list[bytes]) -> list[bytes]:
        try:
            doc = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return [frame]
        edited = edit(draw, doc)
        try:
            return [orjson.dumps(edited)]
        except orjson.JSONEncodeError:  # too deep for orjson to write: as json writes it
            return [json.dumps(edited, separators=(",", ":"), ensure_ascii=False).encode()]

    return mutation


def _containers(doc: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(doc, dict):
        found.append(doc)
        for value in doc.values():
            found += _containers(value)
    return found


def _reorder(draw: st.DrawFn, doc: Any) -> Any:
    dicts = _containers(doc)
    if dicts:
        chosen = draw(st.sampled_from(dicts))
        items = list(chosen.items())
        chosen.clear()
        chosen.update(reversed(items))
    return doc


def _set_string(draw: st.DrawFn, doc: Any) -> Any:
    """A string in the frame (text, delta, an id...) set to another, escapes and all."""
    holders = [(d, k) for d in _containers(doc) for k, v in d.items() if isinstance(v, str)]
    if holders:
        holder, key = draw(st.sampled_from(holders))
        value = holder[key]
        holder[key] = draw(
            st.sampled_from(
                [
                    "",
                    value + "x",
                    value[:-1],
                    value + '"}}}\\',
                    "é🚀\u2028\n\x00",
                    draw(st.text(max_size=5)),
                ]
            )
        )
    return doc


def _rename(draw: st.DrawFn, doc: Any) -> Any:
    """A key renamed: over another of the same dict, or to a new name."""
    dicts = [d for d in _containers(doc) if d]
    if dicts:
        chosen = draw(st.sampled_from(dicts))
        old = draw(st.sampled_from(list(chosen)))
        new = draw(st.sampled_from([*chosen, "x", old.upper()]))
        chosen[new] = chosen.pop(old)
    return doc


JSON_VALUES = [None, 0, 1.5, True, "", "s", [], {}, ["x"], {"text": "x"}, [[[[[[]]]]]]]


def _retype(draw: st.DrawFn, doc: Any) -> Any:
    """A value replaced by one of another JSON type (or nested past orjson's writing)."""
    dicts = [d for d in _containers(doc) if d]
    if dicts:
        chosen = draw(st.sampled_from(dicts))
        key = draw(st.sampled_from(list(chosen)))
        chosen[key] = draw(st.sampled_from([*JSON_VALUES, "deep"]))
        if chosen[key] == "deep":
            chosen[key] = []
            for _ in range(300):
                chosen[key] = [chosen[key]]
    return doc


def _duplicate_key(draw: st.DrawFn, frame: bytes, _: list[bytes]) -> list[bytes]:
    """A member repeated with another value before it: JSON that orjson reads (the last
    one wins) but never writes."""
    keys = re.findall(rb'"(\w+)":', frame)
    if not keys:
        return [frame]
    key = b'"%s":' % draw(st.sampled_from(keys))
    value = draw(st.sampled_from([b'"x"', b"1", b"null", b"{}"]))
    return [frame.replace(key, key + value + b"," + key, 1)]


def _spaced(draw: st.DrawFn, frame: bytes, _: list[bytes]) -> list[bytes]:
    """The same JSON laid out otherwise, as another server might."""
    try:
        doc = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return [frame]
    return [json.dumps(doc, ensure_ascii=draw(st.booleans())).encode()]


MUTATIONS: list[Mutation] = [
    _flip,
    _truncate,
    _insert,
    _delete,
    _duplicate,
    _drop,
    _other_frame,
    _other_part,
    _rewrite(_reorder),
    _rewrite(_set_string),
    _rewrite(_rename),
    _rewrite(_retype),
    _duplicate_key,
    _spaced,
]


@st.composite
def disturbed(draw: st.DrawFn) -> list[bytes]:
    """A run of consecutive frames of a source, a few of them disturbed."""
    frames = SOURCES[draw(st.sampled_from(sorted(SOURCES)))]
    start = draw(st.integers(0, len(frames) - 1))
    window = list(frames[start : start + draw(st.integers(1, 40))])
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(window) - 1)) if window else 0
        mutation = draw(st.sampled_from(MUTATIONS))
        window[at : at + 1] = mutation(draw, window[at], frames) if window else []
    return window


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=disturbed(), cuts=st.lists(st.integers(0, 100_000), max_size=12))
def test_disturbed_frames(frames: list[bytes], cuts: list[int]) -> None:
    body = stream(frames)
    assert_same([body])
    assert_same(cut(body, cuts))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=disturbed(), max_event_size=st.integers(50, 2000))
def test_disturbed_frames_with_a_size_limit(frames: list[bytes], max_event_size: int) -> None:
    body = stream(frames)
    assert_same([body[i : i + 500] for i in range(0, len(body), 500)], max_event_size)


@settings(max_examples=100, deadline=None)
@given(
    source=st.sampled_from(["1.18.33", "1.0.152", "1.0.152 with event ids"]),
    parts=st.integers(2, 40),
)
def test_parts_streaming_at_once(source: str, parts: int) -> None:
    """Many parts interleaved frame by frame, more than the parser keeps layouts for."""
    frames = SOURCES[source]
    first = next(i for i, f in enumerate(frames) if b'"delta":' in f)
    frames = frames[first - 5 : first + 60]
    copies = [[f.replace(b"prt_", b"prt%c" % (65 + n)) for f in frames] for n in range(parts)]
    assert_same([stream([copy[i] for i in range(len(frames)) for copy in copies])])


# --- Frames crafted against the layouts ------------------------------------------------


def _delta_frame(delta: str, event_id: str = "evt_210eed780001L1HkwqOrMXUtkZ") -> bytes:
    doc = orjson.loads(next(f for f in SOURCES["1.18.33"] if b'"message.part.delta"' in f))
    doc["payload"]["id"] = event_id
    doc["payload"]["properties"]["delta"] = delta
    return orjson.dumps(doc)


def _text_frame(text: str, delta: str) -> bytes:
    doc = orjson.loads(next(f for f in SOURCES["1.0.152"] if b'"delta":"H"' in f))
    doc["payload"]["properties"]["part"]["text"] = text
    doc["payload"]["properties"]["delta"] = delta
    return orjson.dumps(doc)


def _each_after(learnt: bytes, crafted: list[bytes]) -> list[bytes]:
    """Each crafted frame right after the frame its layout is learnt from."""
    return [frame for one in crafted for frame in (learnt, one)]


def test_delta_frames_crafted() -> None:
    learnt = _delta_frame("x")
    head, _, rest = learnt.partition(b"evt_")
    key_and_tail = rest[26:]  # the key, the delta token and the tail
    key = key_and_tail[: key_and_tail.rindex(b'"x"') + 1]
    tail = key_and_tail[key_and_tail.rindex(b'"x"') + 2 :]
    event_id = b"evt_" + b"B" * 26
    crafted = [
        _delta_frame('a"b\\c\u2028é🚀\n\t\x00'),
        _delta_frame(""),
        _delta_frame("x", "evt_" + "A" * 27),  # a longer id
        _delta_frame("x", "evt_" + "A" * 25),  # a shorter id
        head + b"evt_\\u0041" + b"A" * 20 + key + b"x" + tail,  # an escape in the id
        head + event_id[:-1] + b'"' + key + b"x" + tail,  # a quote in the id
        head + event_id[:-1] + b"\xff" + key + b"x" + tail,  # invalid UTF-8 in the id
        head + event_id + key + tail[1:],  # no room for a delta token
        head + event_id + key + b'x"y' + tail,  # a quote too many
        head + event_id + key + b"\\ud83d" + tail,  # a lone surrogate
        head + event_id + key + b"\xff" + tail,  # invalid UTF-8
        head + event_id + key + b"x" + tail + tail,  # a tail too many
        head + event_id + key + b"x" + tail[:-1] + b"]",  # another tail
        head[:-9] + b"X" + head[-8:] + event_id + key + b"x" + tail,  # another head
        head + event_id + key[:-5] + b"X" + key[-4:] + b"x" + tail,  # another key
    ]
    assert_same([stream(_each_after(learnt, crafted))])


def test_text_frames_tokens() -> None:
    """1.0's cumulative text: the frame's text must be the last one's plus the delta."""
    frames = [
        _text_frame("H", "H"),
        _text_frame("Hé", "é"),
        _text_frame("Hé🚀", "🚀"),
        _text_frame("Hé🚀", ""),  # nothing new
        _text_frame("Hé🚀ab", "ab"),
        _text_frame("Hé🚀abX", "Y"),  # the delta is not what the text grew by
        _text_frame("Hé🚀abXY", "Y"),
        _text_frame("hé🚀abXYZ", "Z"),  # the text changed before the new piece
        _text_frame("Hé🚀abXYZ", "Z"),
        _text_frame('Hé🚀abXYZ"\\\u2028', '"\\\u2028'),
        _text_frame("", "x"),
        _text_frame("x", "x"),
    ]
    assert_same([stream(frames)])


def test_text_frames_crafted() -> None:
    learnt = _text_frame("", "")
    before, _, after = learnt.partition(b'"text":""')
    between = b'"' + after[: after.index(b'"delta":""') + len(b'"delta":"')]
    tail = after[after.index(b'"delta":""') + len(b'"delta":"') :]
    key = before + b'"text":"'
    crafted = [
        key + b"ab" + between + b"ab" + tail,
        key + b"\\\\" + between + b"\\\\" + tail,  # an escaped backslash
        key[:-1] + between + tail,  # the text's quote missing: one byte short of a frame
        key + b"\\ud83d" + between + b"\\ude80" + tail,  # half a surrogate pair each
        key + b"a" + between + b"a" + tail + b" ",  # a byte too many
        key + b"ab" + between + b"ab" + tail[:-1],  # a byte too few
        key + b"ab" + between + b"ab" + tail[:-1] + b"]",  # another tail
        key + b"ab" + between[:-3] + b"X" + between[-2:] + b"ab" + tail,  # another between
        key + b"ab" + between + b"aB" + tail,  # a delta that is not the new piece
        key[:-9] + b"X" + key[-8:] + b"ab" + between + b"ab" + tail,  # another key
        key + b'"' + between + b'"' + tail,  # a bare quote as the piece
        key + b"\\" + between + b"\\" + tail,  # half an escape
        key + b"\xff" + between + b"\xff" + tail,  # invalid UTF-8
    ]
    assert_same([stream(_each_after(learnt, crafted))])


@pytest.mark.parametrize("source", ["1.18.33", "1.0.152 with event ids"])
def test_other_directory_mid_stream(source: str) -> None:
    """A frame of the streaming part from another directory (same length) mid-stream."""
    frames = SOURCES[source]
    first = next(i for i, f in enumerate(frames) if b'"delta":' in f)
    window = list(frames[first : first + 8])
    window[4] = window[4].replace(b"/home/user/project", b"/home/user/elsewh")
    window[5] = window[5].replace(b"/home/user/project", b"/home/user/projecT")
    assert_same([stream(window)])


def _part_frames(source: str, edit: Callable[[Any], Any], count: int = 8) -> list[bytes]:
    """The first streaming frames of a source's first part, the first edited."""
    frames = SOURCES[source]
    first = next(i for i, f in enumerate(frames) if b'"delta":' in f)
    window = list(frames[first : first + count])
    window[0] = json.dumps(edit(orjson.loads(window[0])), separators=(",", ":")).encode()
    return window


@pytest.mark.parametrize("value", [5, None, ["x"], {"x": "y"}])
@pytest.mark.parametrize(
    ("source", "key"),
    [("1.0.152", "text"), ("1.0.152", "sessionID"), ("1.18.33", "sessionID")],
)
def test_first_frame_of_other_shapes(source: str, key: str, value: Any) -> None:
    """The frame a layout would be learnt from holds a value of another type."""

    def edit(doc: Any) -> Any:
        properties = doc["payload"]["properties"]
        (properties.get("part") or properties)[key] = value
        return doc

    assert_same([stream(_part_frames(source, edit))])
    if key == "sessionID":  # every frame so: the events must still share no container
        frames = SOURCES[source]
        first = next(i for i, f in enumerate(frames) if b'"delta":' in f)
        edited = [orjson.dumps(edit(orjson.loads(f))) for f in frames[first : first + 8]]
        assert_same([stream(edited)])


@pytest.mark.parametrize("source", ["1.18.33", "1.0.152 with event ids"])
def test_values_the_cut_could_take_for_another(source: str) -> None:
    """An event id of NUL is written as the cut's stand-in for it is: the directory, NUL as
    well, must not be taken for where the event id goes."""

    def edit(doc: Any) -> Any:
        doc["directory"] = "\x00"
        doc["payload"]["id"] = "\x00"
        return doc

    frames = _part_frames(source, edit, 12)
    moved = json.loads(frames[0])
    moved["directory"] = "\x01"  # a token of the same length
    frames.insert(1, json.dumps(moved, separators=(",", ":")).encode())
    assert_same([stream(frames)])


@pytest.mark.parametrize("source", ["1.18.33", "1.0.152 with event ids"])
def test_event_id_after_the_values(source: str) -> None:
    def edit(doc: Any) -> Any:
        doc["payload"]["id"] = doc["payload"].pop("id")  # last instead of first
        return doc

    frames = SOURCES[source]
    first = next(i for i, f in enumerate(frames) if b'"delta":' in f)
    window = [
        json.dumps(edit(orjson.loads(f)), separators=(",", ":"), ensure_ascii=False).encode()
        for f in frames[first : first + 12]
    ]
    assert_same([stream(window)])
    assert layouts_after([stream(window)]) == []  # no layout from a cut out of order


@pytest.mark.parametrize("value", [*JSON_VALUES, "missing", "deep"])
@pytest.mark.parametrize(
    ("source", "path"),
    [
        ("1.18.33", ("payload", "properties", "delta")),
        ("1.18.33", ("payload", "id")),
        ("1.18.33", ("payload", "properties", "extra")),
        ("1.0.152", ("payload", "properties", "part", "text")),
        ("1.0.152", ("payload", "properties", "delta")),
        ("1.0.152", ("payload", "properties", "part", "time")),
    ],
)
def test_streaming_part_frames_of_other_shapes(
    source: str, path: tuple[str, ...], value: Any
) -> None:
    """A part's frames, every one but the first with a value gone, retyped or nested deep."""
    frames = SOURCES[source]
    first = next(i for i, f in enumerate(frames) if b'"delta":' in f)
    window = list(frames[first : first + 12])
    for n in range(1, len(window), 2):
        doc = orjson.loads(window[n])
        *parents, key = path
        holder = doc
        for parent in parents:
            holder = holder[parent]
        if value == "missing":
            holder.pop(key, None)
        elif value == "deep":
            holder[key] = json.loads("[" * 300 + "]" * 300)
        else:
            holder[key] = value
        window[n] = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    assert_same([stream(window)])


@pytest.mark.parametrize("source", ["1.18.33", "1.0.152"])
def test_server_laying_json_out_otherwise(source: str, general_frames: list[int]) -> None:
    frames = [
        json.dumps(orjson.loads(f), indent=1).replace("\n", "").encode() for f in SOURCES[source]
    ]
    assert_same([stream(frames)])
    general_frames[0] = 0
    parse([stream(frames)])
    assert general_frames[0] == len(frames)
    # ...and no layout learnt: one that does not fit the frame it came from is no use.
    assert layouts_after([stream(frames[: len(frames) // 2])]) == []


# --- The pieces that changed under the fast paths -----------------------------------


# Frames of every length about the decoder's switch from rsplit() to a step per frame,
# and past a chunk, among events of other kinds.
long_payload = st.builds(
    lambda size, fill: (fill * size)[:size],
    st.one_of(st.integers(0, 64), st.integers(900, 1200), st.integers(2_000, 40_000)),
    st.sampled_from([b"x", b'{"a":"\xc3\xa9 b"}', b"\xff\n", b"data: ", b"\r\n"]),
)
sse_piece = st.one_of(
    long_payload.map(lambda p: b"data: " + p + b"\n\n"),
    long_payload.map(lambda p: b"data: " + p + b"\n\n"),
    long_payload.map(lambda p: b"data:" + p + b"\r\n\r\n"),
    st.tuples(long_payload, long_payload).map(lambda p: b"data: %s\ndata: %s\n\n" % p),
    long_payload.map(lambda p: b"data: " + p + b"\nxdata: y\n\n"),  # a line of no field
    st.sampled_from([b": comment\n", b"event: x\n", b"id: 7\n", b"\n", b"data: a\n"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pieces=st.lists(sse_piece, max_size=12),
    cuts=st.lists(st.integers(0, 1_000_000), max_size=30),
    max_event_size=st.sampled_from([DEFAULT_MAX_EVENT_SIZE, 30_000, 1500]),
)
def test_decoder_on_long_frames(pieces: list[bytes], cuts: list[int], max_event_size: int) -> None:
    """The decoder's run splitting and its joining of unfinished lines, on long frames."""
    body = b"".join(pieces)
    whole = run_decoder([body], max_event_size)
    assert run_decoder(cut(body, cuts), max_event_size) == whole
    if max_event_size == DEFAULT_MAX_EVENT_SIZE:
        assert whole[:3] == spec_reference(body)


@pytest.mark.parametrize(
    "body",
    [
        b"data: " + b"x" * 2000 + b"\n\n\n",  # a blank line too many after the run
        b"data: " + b"x" * 2000 + b"\n\n\n\n",
        b"data: " + b"x" * 2000 + b"\n\ndata: y\n\n\ndata: z\n\n",
        b"data: " + b"x" * 2000 + b"\n\ndata:\n\n",
        b"data: " + b"x" * 2000 + b"\n\ndata\n\n",
    ],
)
def test_decoder_on_long_frames_crafted(body: bytes) -> None:
    assert run_decoder([body])[:3] == spec_reference(body)
    assert run_decoder(cut(body, [2006, 2007, 2008]))[:3] == spec_reference(body)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b"\n", b"\n\n", b"data: ", b"\n\ndata: ", b"x", b"\r", b" "])))
def test_rsplit_is_split_for_the_frame_separator(pieces: list[bytes]) -> None:
    """The decoder splits runs with rsplit(), faster, relying on this."""
    run = b"".join(pieces)
    assert run.rsplit(b"\n\ndata: ") == run.split(b"\n\ndata: ")


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.builds(
            "".join,
            st.lists(st.sampled_from(["message.updated", ".", "1", "٣", "²", "\n", "x", "sync"])),
        ),
    )
)
def test_sync_event_kind_as_the_regex_gives_it(versioned_type: str) -> None:
    """normalize_durable() drops the version suffix as `re.sub(r"\\.\\d+$", "")` does."""
    data = {"sessionID": "ses_1", "info": {"id": "ses_1"}}
    kind = re.sub(r"\.\d+$", "", versioned_type)
    inner = normalize_payload({"type": kind, "id": "evt_1", "properties": data}, "/d", 7)
    expected = Durable("ses_1", 3, inner, event_id="evt_1", directory="/d")
    assert normalize_durable("ses_1", 3, versioned_type, "evt_1", data, "/d", 7) == expected
