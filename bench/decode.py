"""Decoding benchmark: bytes of a real OpenCode event stream in, events out.

Each real OpenCode capture is repeated to at least 32 MB and fed in 16 KiB chunks to:

- decode + parse: openchamber's ``StreamParser`` (SSE decode, JSON parse and normalization
  into the typed event model: what the runtime really runs) against httpx-sse and
  launchdarkly-eventsource each followed by ``json.loads`` or ``orjson.loads`` of every
  payload (untyped dicts: they do less), and, for reference, StreamParser's own decoder
  followed by a full orjson.loads of every payload and no normalization;
- decode only: openchamber's ``SSEDecoder`` against the two peers' decoders alone.

Then one 8 MiB event fed in 1460-byte pieces is timed against a 1 MiB one, through every
decoder, to show the cost per byte does not grow with the event.

    python -m bench decode        # or: python -m bench.decode

``run()`` returns the numbers as a dict, ``report()`` formats them. Captures are read from
``../shared/captures`` beside the repository, or from ``$OPENCHAMBER_CAPTURES``.
"""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import orjson
from httpx._decoders import TextDecoder
from httpx_sse._decoders import SSEDecoder as HttpxSSEDecoder
from httpx_sse._decoders import SSELineDecoder
from ld_eventsource.actions import Event as LDEvent  # type: ignore[import-untyped]
from ld_eventsource.reader import _BufferedLineReader, _SSEReader  # type: ignore[import-untyped]

from bench._common import Case, MiB, best_of, meets, table, verdict
from openchamber.protocol import PartUpdated, StreamParser, normalize_frame
from openchamber.sse import PayloadDecoder, SSEDecoder

CAPTURES = ["opencode-1.18.33", "opencode-1.0.152"]
CORPUS_BYTES = 32 * 1000 * 1000
CHUNK = 16 * 1024
REPEATS = 5
PIECE = 1460  # one TCP segment's payload
HUGE_SIZES = (MiB, 8 * MiB)
HUGE_REPEATS = 3

TARGET_VS_HTTPX_JSON = 3.0  # StreamParser against httpx-sse + json.loads, both corpora
TARGET_HUGE_PER_BYTE = 10.0  # time per byte, 8 MiB event / 1 MiB event

OPENCHAMBER_PARSE = "openchamber StreamParser (typed events)"
OPENCHAMBER_PAYLOADS = "openchamber PayloadDecoder + orjson.loads (untyped)"
OPENCHAMBER_DECODE = "openchamber SSEDecoder"
PARSE_BASELINE = "httpx-sse + json.loads"
STRONGEST_PEER = "httpx-sse + orjson.loads"
DECODE_BASELINE = "httpx-sse"

# A pipeline takes the chunks of a body and returns how many events it produced.
Pipeline = Callable[[list[bytes]], int]
# Called on each payload a peer's decoder produces.
Use = Callable[[str], object]


def captures_dir() -> Path:
    default = Path(__file__).resolve().parent.parent.parent / "shared" / "captures"
    return Path(os.environ.get("OPENCHAMBER_CAPTURES", default))


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def prepared(pipeline: Pipeline, chunks: list[bytes]) -> Case[int]:
    """A benchmark case: nothing to set up, then the pipeline over these chunks."""
    return lambda: partial(pipeline, chunks)


# ---------------------------------------------------------------------- pipelines


def openchamber_parse(chunks: list[bytes]) -> int:
    """The runtime's real pipeline: bytes in, typed events (PartDelta, ...) out."""
    parser = StreamParser()
    n = 0
    for chunk in chunks:
        n += len(parser.feed(chunk))
    return n


def openchamber_payloads(chunks: list[bytes]) -> int:
    """StreamParser's payload decoder, then a full orjson.loads of each payload (untyped)."""
    decoder = PayloadDecoder()
    loads = orjson.loads
    n = 0
    for chunk in chunks:
        for payload in decoder.feed(chunk):
            loads(payload)
            n += 1
    return n


def openchamber_decode(chunks: list[bytes], use: Use) -> int:
    decoder = SSEDecoder()
    n = 0
    for chunk in chunks:
        for event in decoder.feed(chunk):
            use(event.data)
            n += 1
    return n


def httpx_sse(chunks: list[bytes], use: Use) -> int:
    """httpx-sse's pipeline (EventSource.iter_sse) with its generators inlined.

    httpx's Response.iter_text() decodes with TextDecoder; httpx_sse splits the text
    with SSELineDecoder and feeds each line, stripped of "\\n", to its SSEDecoder.
    """
    text_decoder = TextDecoder()
    line_decoder = SSELineDecoder()
    decoder = HttpxSSEDecoder()
    n = 0
    for chunk in chunks:
        for line in line_decoder.decode(text_decoder.decode(chunk)):
            sse = decoder.decode(line.rstrip("\n"))
            if sse is not None:
                use(sse.data)
                n += 1
    return n


def ld_eventsource(chunks: list[bytes], use: Use) -> int:
    """launchdarkly-eventsource's parser, wired as its SSEClient wires it to a stream."""
    n = 0
    reader = _SSEReader(_BufferedLineReader.lines_from(chunks))
    for item in reader.events_and_comments():
        if isinstance(item, LDEvent):
            use(item.data)
            n += 1
    return n


# (stage, name, pipeline); openchamber's rows first. The reference row is StreamParser's own
# decoder with a full JSON parse of every payload and no typed events: the plain way to use it.
PIPELINES: list[tuple[str, str, Pipeline]] = [
    ("decode+parse", OPENCHAMBER_PARSE, openchamber_parse),
    ("decode+parse", OPENCHAMBER_PAYLOADS, openchamber_payloads),
    ("decode+parse", PARSE_BASELINE, partial(httpx_sse, use=json.loads)),
    ("decode+parse", STRONGEST_PEER, partial(httpx_sse, use=orjson.loads)),
    ("decode+parse", "ld-eventsource + json.loads", partial(ld_eventsource, use=json.loads)),
    ("decode+parse", "ld-eventsource + orjson.loads", partial(ld_eventsource, use=orjson.loads)),
    ("decode", OPENCHAMBER_DECODE, partial(openchamber_decode, use=len)),
    ("decode", DECODE_BASELINE, partial(httpx_sse, use=len)),
    ("decode", "ld-eventsource", partial(ld_eventsource, use=len)),
]
BASELINES = {"decode+parse": PARSE_BASELINE, "decode": DECODE_BASELINE}


# ---------------------------------------------------------------------- measurements


def event_mix(raw: bytes) -> dict[str, int]:
    """How many typed events of each kind one copy of the capture makes."""
    return dict(Counter(type(event).__name__ for event in StreamParser().feed(raw)).most_common())


def differing_events(raw: bytes) -> int:
    """Frames of two copies of the capture on which StreamParser, fed in chunks, does not
    give the event `normalize_frame` gives for the frame alone: it must be 0, or the
    StreamParser row is not measuring the real thing."""
    body = raw * 2
    parser = StreamParser()
    fast = [event for chunk in chunked(body, CHUNK) for event in parser.feed(chunk)]
    plain = [normalize_frame(frame) for frame in PayloadDecoder().feed(body)]
    if len(fast) != len(plain):
        return max(len(fast), len(plain))
    return sum(a != b for a, b in zip(fast, plain, strict=True))


def bench_corpus(raw: bytes) -> dict[str, Any]:
    copies = -(-CORPUS_BYTES // len(raw))
    body = raw * copies
    chunks = chunked(body, CHUNK)
    cases = {name: prepared(pipeline, chunks) for _, name, pipeline in PIPELINES}
    timings = best_of(cases, REPEATS)
    counts = {name: events for name, (_, events) in timings.items()}
    if len(set(counts.values())) != 1:
        raise AssertionError(f"the pipelines disagree on the number of events: {counts}")
    events = counts[OPENCHAMBER_PARSE]
    rows: dict[str, dict[str, Any]] = {}
    for stage, name, _ in PIPELINES:
        seconds = timings[name][0]
        baseline = BASELINES[stage]
        rows[name] = {
            "stage": stage,
            "seconds": seconds,
            "mb_per_s": len(body) / seconds / 1e6,
            "events_per_s": events / seconds,
            "baseline": baseline,
            "ratio": timings[baseline][0] / seconds,
        }
        if stage == "decode+parse":
            rows[name]["ratio_vs_strongest"] = timings[STRONGEST_PEER][0] / seconds
    measured = rows[OPENCHAMBER_PARSE]["ratio"]
    mix = event_mix(raw)
    return {
        "differing_events": differing_events(raw),
        "capture_bytes": len(raw),
        "copies": copies,
        "bytes": len(body),
        "events": events,
        "chunk": CHUNK,
        "event_mix": mix,
        "rows": rows,
        "target": {
            "goal": TARGET_VS_HTTPX_JSON,
            "measured": measured,
            "met": meets(measured, TARGET_VS_HTTPX_JSON),
        },
    }


def huge_frame(size: int) -> bytes:
    """A `message.part.updated` frame whose part's text is ``size`` characters."""
    part = {
        "id": "prt_huge",
        "sessionID": "ses_huge",
        "messageID": "msg_huge",
        "type": "text",
        "text": "x" * size,
        "time": {"start": 1},
    }
    payload = {"type": "message.part.updated", "properties": {"part": part}}
    return b"data: " + orjson.dumps(payload) + b"\n\n"


HUGE_PIPELINES: dict[str, Pipeline] = {
    OPENCHAMBER_PARSE: openchamber_parse,
    OPENCHAMBER_DECODE: partial(openchamber_decode, use=len),
    DECODE_BASELINE: partial(httpx_sse, use=len),
    "ld-eventsource": partial(ld_eventsource, use=len),
}


def bench_huge_event() -> dict[str, Any]:
    """Time per byte of an 8 MiB event against a 1 MiB one, both in 1460-byte pieces."""
    small_size, big_size = HUGE_SIZES
    frames = {size: huge_frame(size) for size in HUGE_SIZES}
    pieces = {size: chunked(frame, PIECE) for size, frame in frames.items()}
    for size, frame in frames.items():  # the parser must really deliver the part, whole
        (event,) = StreamParser().feed(frame)
        if not isinstance(event, PartUpdated) or len(event.part["text"]) != size:
            raise AssertionError(f"the {size}-character event did not come out whole: {event}")
    cases = {
        (name, size): prepared(pipeline, pieces[size])
        for name, pipeline in HUGE_PIPELINES.items()
        for size in HUGE_SIZES
    }
    timings = best_of(cases, HUGE_REPEATS)
    rows: dict[str, dict[str, Any]] = {}
    for name in HUGE_PIPELINES:
        (small_s, small_n), (big_s, big_n) = timings[name, small_size], timings[name, big_size]
        if small_n != 1 or big_n != 1:
            raise AssertionError(f"{name} made {small_n} and {big_n} events, not one each")
        ratio = (big_s / len(frames[big_size])) / (small_s / len(frames[small_size]))
        rows[name] = {
            "small_s": small_s,
            "big_s": big_s,
            "per_byte_ratio": ratio,
            "openchamber": name.startswith("openchamber"),
            # The target is openchamber's; peers are measured for comparison only.
            "met": meets(ratio, TARGET_HUGE_PER_BYTE, at_most=True)
            if name.startswith("openchamber")
            else None,
        }
    return {
        "piece": PIECE,
        "small_bytes": len(frames[small_size]),
        "big_bytes": len(frames[big_size]),
        "goal": TARGET_HUGE_PER_BYTE,
        "rows": rows,
    }


def run() -> dict[str, Any]:
    """Run every measurement and return the numbers."""
    folder = captures_dir()
    corpora = {}
    for name in CAPTURES:
        path = folder / f"{name}.sse.gz"
        if not path.is_file():
            raise FileNotFoundError(f"capture {path} missing (set $OPENCHAMBER_CAPTURES)")
        corpora[name] = bench_corpus(gzip.decompress(path.read_bytes()))
    return {"corpora": corpora, "huge_event": bench_huge_event()}


# ---------------------------------------------------------------------- report


def report(numbers: dict[str, Any]) -> str:
    lines = ["Decoding: bytes of an event stream in, events out"]
    for corpus, info in numbers["corpora"].items():
        mix = ", ".join(f"{n} {kind}" for kind, n in info["event_mix"].items())
        lines += [
            "",
            f"{corpus}: capture of {info['capture_bytes'] / 1e6:.2f} MB repeated "
            f"{info['copies']}x = {info['bytes'] / 1e6:.1f} MB, {info['events']:,} events, "
            f"fed in {info['chunk'] // 1024} KiB chunks",
            f"  one copy makes: {mix}",
        ]
        for stage, title in (
            ("decode+parse", f"decode + parse (ratio: vs {PARSE_BASELINE} | vs {STRONGEST_PEER})"),
            ("decode", f"decode only (ratio: vs {DECODE_BASELINE} decode only)"),
        ):
            rows = []
            for name, row in info["rows"].items():
                if row["stage"] != stage:
                    continue
                ratio = f"{row['ratio']:.2f}x"
                if "ratio_vs_strongest" in row:
                    ratio += f" | {row['ratio_vs_strongest']:.2f}x"
                rows.append([name, f"{row['mb_per_s']:.0f}", f"{row['events_per_s']:,.0f}", ratio])
            lines += ["", f"  {title}", *table(["pipeline", "MB/s", "events/s", "ratio"], rows)]
        if info["differing_events"]:
            lines.append(
                f"  !! StreamParser's events differ from normalize_frame's on "
                f"{info['differing_events']} frames of two copies: its row is not comparable"
            )
        else:
            lines.append(
                "  checked: StreamParser gives normalize_frame's event for every frame"
                " (two copies, chunked)"
            )
        target = info["target"]
        lines.append(
            f"  => {OPENCHAMBER_PARSE} vs {PARSE_BASELINE}: {target['measured']:.2f}x; "
            + verdict(target["measured"], target["goal"])
        )
    huge = numbers["huge_event"]
    lines += [
        "",
        f"One huge event in {huge['piece']}-byte pieces: {huge['small_bytes'] / MiB:.0f} MiB "
        f"vs {huge['big_bytes'] / MiB:.0f} MiB (time per byte, big / small; linear = 1)",
    ]
    rows = []
    for name, row in huge["rows"].items():
        rows.append(
            [
                name,
                f"{row['small_s'] * 1e3:.1f}",
                f"{row['big_s'] * 1e3:.1f}",
                f"{row['per_byte_ratio']:.2f}",
                verdict(row["per_byte_ratio"], huge["goal"], at_most=True, unit="")
                if row["openchamber"]
                else "(peer)",
            ]
        )
    lines += table(["decoder", "1 MiB ms", "8 MiB ms", "per byte", ""], rows)
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(run()))
