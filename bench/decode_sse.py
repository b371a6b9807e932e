"""Decoder benchmark: openchamber's SSEDecoder against httpx-sse and launchdarkly-eventsource.

Each real OpenCode capture is repeated to at least 32 MB and fed in 16 KiB chunks to
every decoder, decode only and decode plus ``orjson.loads`` of each payload; then one
8 MiB event fed in 1460-byte pieces is timed against a 1 MiB one, to show the cost per
byte does not grow with the event.

    python bench/decode_sse.py

``run()`` returns the numbers as a dict. Captures are read from ``../shared/captures``
beside the repository, or from ``$OPENCHAMBER_CAPTURES``.
"""

from __future__ import annotations

import gc
import gzip
import os
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import orjson
from httpx._decoders import TextDecoder
from httpx_sse._decoders import SSEDecoder as HttpxSSEDecoder
from httpx_sse._decoders import SSELineDecoder
from ld_eventsource.actions import Event as LDEvent  # type: ignore[import-untyped]
from ld_eventsource.reader import _BufferedLineReader, _SSEReader  # type: ignore[import-untyped]

from openchamber.sse import SSEDecoder

CAPTURES = ["opencode-1.18.33", "opencode-1.0.152"]
CORPUS_BYTES = 32 * 1000 * 1000
CHUNK = 16 * 1024
REPEATS = 3
PIECE = 1460  # one TCP segment's payload
MiB = 1024 * 1024

# A pipeline takes the chunks and a function to call on each payload; returns the count.
Pipeline = Callable[[list[bytes], Callable[[str], object]], int]


def captures_dir() -> Path:
    default = Path(__file__).resolve().parent.parent.parent / "shared" / "captures"
    return Path(os.environ.get("OPENCHAMBER_CAPTURES", default))


def openchamber(chunks: list[bytes], use: Callable[[str], object]) -> int:
    decoder = SSEDecoder()
    n = 0
    for chunk in chunks:
        for event in decoder.feed(chunk):
            use(event.data)
            n += 1
    return n


def httpx_sse(chunks: list[bytes], use: Callable[[str], object]) -> int:
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


def ld_eventsource(chunks: list[bytes], use: Callable[[str], object]) -> int:
    """launchdarkly-eventsource's parser, wired as its SSEClient wires it to a stream."""
    n = 0
    reader = _SSEReader(_BufferedLineReader.lines_from(chunks))
    for item in reader.events_and_comments():
        if isinstance(item, LDEvent):
            use(item.data)
            n += 1
    return n


PIPELINES: dict[str, Pipeline] = {
    "openchamber": openchamber,
    "httpx-sse": httpx_sse,
    "ld-eventsource": ld_eventsource,
}
MODES: dict[str, Callable[[str], object]] = {"decode": len, "decode+json": orjson.loads}


def best_time(func: Callable[[], int], repeats: int = REPEATS) -> tuple[float, int]:
    """Fastest of ``repeats`` runs, in seconds, and what the function returned."""
    best = float("inf")
    result = 0
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - start)
    return best, result


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def bench_corpus(raw: bytes) -> dict[str, Any]:
    body = raw * -(-CORPUS_BYTES // len(raw))
    chunks = chunked(body, CHUNK)
    results: dict[str, dict[str, dict[str, float]]] = {}
    counts = set()
    for name, pipeline in PIPELINES.items():
        results[name] = {}
        for mode, use in MODES.items():
            seconds, events = best_time(partial(pipeline, chunks, use))
            counts.add(events)
            results[name][mode] = {
                "seconds": seconds,
                "mb_per_s": len(body) / seconds / 1e6,
                "events_per_s": events / seconds,
            }
    if len(counts) != 1:
        raise AssertionError(f"the decoders disagree on the number of events: {counts}")
    ratios = {
        name: {
            mode: results["httpx-sse"][mode]["seconds"] / timing["seconds"]
            for mode, timing in modes.items()
        }
        for name, modes in results.items()
    }
    return {
        "bytes": len(body),
        "events": counts.pop(),
        "chunk": CHUNK,
        "results": results,
        "ratio_vs_httpx_sse": ratios,
    }


def feed_all(pieces: Iterable[bytes]) -> int:
    decoder = SSEDecoder()
    return sum(len(decoder.feed(piece)) for piece in pieces)


def bench_huge_event() -> dict[str, float]:
    """Time per byte of an 8 MiB event against a 1 MiB one, both in 1460-byte pieces."""

    def event(size: int) -> list[bytes]:
        return chunked(b'data: {"text": "' + b"x" * size + b'"}\n\n', PIECE)

    small, big = event(MiB), event(8 * MiB)
    small_s, _ = best_time(lambda: feed_all(small))
    big_s, _ = best_time(lambda: feed_all(big))
    return {
        "piece": PIECE,
        "small_bytes": MiB,
        "big_bytes": 8 * MiB,
        "small_s": small_s,
        "big_s": big_s,
        "per_byte_ratio": (big_s / 8) / small_s,
    }


def run() -> dict[str, Any]:
    """Run every measurement and return the numbers."""
    folder = captures_dir()
    corpora = {
        name: bench_corpus(gzip.decompress((folder / f"{name}.sse.gz").read_bytes()))
        for name in CAPTURES
    }
    return {"corpora": corpora, "huge_event": bench_huge_event()}


def report(numbers: dict[str, Any]) -> str:
    lines = []
    for corpus, info in numbers["corpora"].items():
        lines.append(
            f"{corpus}: {info['bytes'] / 1e6:.1f} MB, {info['events']} events, "
            f"{info['chunk'] // 1024} KiB chunks"
        )
        lines.append(
            f"  {'decoder':<16}{'mode':<13}{'MB/s':>8}{'events/s':>12}{'vs httpx-sse':>14}"
        )
        for name, modes in info["results"].items():
            for mode, timing in modes.items():
                ratio = info["ratio_vs_httpx_sse"][name][mode]
                lines.append(
                    f"  {name:<16}{mode:<13}{timing['mb_per_s']:>8.0f}"
                    f"{timing['events_per_s']:>12,.0f}{ratio:>13.2f}x"
                )
    huge = numbers["huge_event"]
    lines.append(
        f"one event in {huge['piece']}-byte pieces: 1 MiB {huge['small_s'] * 1e3:.1f} ms, "
        f"8 MiB {huge['big_s'] * 1e3:.1f} ms; time per byte 8 MiB / 1 MiB = "
        f"{huge['per_byte_ratio']:.2f}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(run()))
