"""Render docs/RELIABILITY.md from what a chaos run and a soak run wrote:

    python -m tests.chaos.report [--chaos .chaos/results.jsonl] [--soak .chaos/soak.json]
                                 [--out docs/RELIABILITY.md]

`make chaos` and `make soak` call it after their runs; every number in the page comes
from those files. A section whose file is missing says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.__main__ import source

from .scenario import FAULTS, RECOVERY_BOUND, SETTLE_TIMEOUT

REPO = Path(__file__).resolve().parents[2]
FINDINGS = Path(__file__).with_name("FINDINGS.md")
JSON = dict[str, Any]


def _source() -> str:
    return f"`{source()}`"


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def chaos_section(results: list[JSON], meta: JSON) -> list[str]:
    cells: dict[tuple[str, str], list[JSON]] = defaultdict(list)
    for result in results:
        cells[(result["fault"], result["version"])].append(result)
    order = {name: index for index, name in enumerate(FAULTS)}
    lines = [
        "## Chaos matrix",
        "",
        f"Run finished {meta['date']} on {meta['machine']}; source at rendering: {meta['source']}.",
        f"{len(results)} runs in {sum(r['seconds'] for r in results) / 60:.0f} min.",
        "",
        "| fault | version | runs | divergences | worst recovery s | median recovery s "
        "| worst settle s | runs where the server lost shown text |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for fault, version in sorted(cells, key=lambda c: (order.get(c[0], 99), c[1])):
        runs = cells[(fault, version)]
        recoveries = [r["recovery"] for r in runs if r["recovery"] is not None]
        settles = [r["settle"] for r in runs if r["settle"] is not None]
        diverged = sum(1 for r in runs if not r["ok"])
        harness = sum(1 for r in runs if _harness_only(r))
        never = sum(1 for r in runs if r["recovery"] is None and not _harness_only(r))
        worst = _seconds(max(recoveries) if recoveries else None)
        if never:
            worst += f" ({never} never)"
        lines.append(
            f"| {fault} | {version} | {len(runs)} | {'**' if diverged > harness else ''}{diverged}"
            f"{'**' if diverged > harness else ''}"
            f"{f' ({harness} not injected)' if harness else ''} | {worst} "
            f"| {_seconds(statistics.median(recoveries) if recoveries else None)} "
            f"| {_seconds(max(settles) if settles else None)} "
            f"| {sum(1 for r in runs if r.get('server_lost'))} |"
        )
    lost = [r for r in results if r.get("server_lost")]
    lines += [
        "",
        "### Text the server lost",
        "",
        "A view's text may shrink in one case only: the server itself no longer has text it "
        "streamed (its own messages hold less for good). The view then follows the server, "
        "and the run counts it here, not as a divergence.",
        "",
    ]
    if not lost:
        lines.append("None.")
    for result in lost[:4]:
        lines.append(
            f"- {result['fault']}, {result['version']}, run {result['run']}: "
            f"part text length shown -> now {', '.join(result['server_lost'][:3])}"
        )
    lines += ["", "### Divergences", ""]
    failed = [r for r in results if not r["ok"]]
    if not failed:
        lines.append("None.")
    shown: dict[tuple[str, str], int] = defaultdict(int)
    for result in sorted(failed, key=lambda r: (order.get(r["fault"], 99), r["version"])):
        cell = (result["fault"], result["version"])
        shown[cell] += 1
        if shown[cell] > 2:  # two examples per cell; the count is in the table
            continue
        lines.append(f"- **{result['fault']}**, {result['version']}, run {result['run']}:")
        lines += [f"  - {_brief_problem(problem)}" for problem in result["problems"]]
    return lines


def _harness_only(result: JSON) -> bool:
    """The run failed before its fault was in place: the harness's failure, not the bridge's."""
    problems = result["problems"]
    return bool(problems) and all(p.startswith("run failed while injecting") for p in problems)


def _brief_problem(problem: str) -> str:
    """The difference first, the message outlines after, at most 400 characters."""
    head, found, rest = problem.partition(": shown ")
    if found and "; " in rest:
        outlines, _, difference = rest.partition("; ")
        problem = f"{head}: {difference} (messages shown {outlines})"
    return problem[:400].replace("|", "\\|")


def soak_section(soak: JSON | None) -> list[str]:
    lines = ["## Soak", ""]
    if soak is None:
        return [*lines, "No soak result was found (run `make soak MINUTES=30`)."]
    lines += [
        f"Measured {soak['date']} on {soak['machine']}; source {soak['source']}.",
        f"**{soak['seconds'] / 60:.1f} minutes** against OpenCode {soak['version']}"
        + (
            f" (asked for {soak['minutes']:g}; "
            "a run of 30 minutes or more is `make soak MINUTES=30`)."
            if soak["minutes"] < 30
            else "."
        ),
        f"{soak['replies']} replies of {soak['reply_chars']} characters streamed one after "
        f"another, every session deleted once its turn was over; a view followed throughout "
        f"({soak['patches']:,} patches after coalescing).",
        "",
        "Growth is a least-squares slope over the samples after the first 10% of the run "
        "(warm-up), per hour.",
        "",
        "| bridge process | first | last | max | growth per hour |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label, unit in [
        ("rss_mb", "RSS", "MB"),
        ("fds", "open file descriptors", ""),
        ("tasks", "asyncio tasks", ""),
        ("ring", "ring buffer (patches)", ""),
    ]:
        values = soak["series"][key]
        if not values:
            continue
        slope = soak["slopes"][key]
        lines.append(
            f"| {label} | {values[0]:g} | {values[-1]:g} | {max(values):g} | {slope:+.2f} {unit} |"
        )
    lines += ["", "| store buffer | max length |", "|---|---:|"]
    for name, value in sorted(soak["store_max"].items()):
        lines.append(f"| `Store.{name}` | {value:,} |")
    if "log_lines" in soak:
        lines += [
            "",
            f"The bridge logged {soak['log_lines']:,} lines, {soak['log_failures']:,} of them "
            "failures"
            + (f", e.g. `{soak['log_failure_sample'][0][:200]}`" if soak["log_failures"] else "")
            + ".",
        ]
    lines += ["", f"Verdict: {soak['verdict']}"]
    if soak.get("plot"):
        lines += ["", f"![soak]({soak['plot']})"]
    return lines


def render(results: list[JSON] | None, soak: JSON | None, finished: datetime | None = None) -> str:
    meta = {
        "date": (finished or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
        f"Python {platform.python_version()}",
        "source": _source(),
    }
    lines = [
        "# Reliability",
        "",
        "Written by `python -m tests.chaos.report` from the results of a real run: "
        "`make chaos` (every fault × both pinned OpenCode versions × 10 runs) and "
        "`make soak MINUTES=30`. Do not edit the numbers by hand; run them again.",
        "",
        "## How a chaos run works",
        "",
        "A real `opencode serve` (1.18.33 or 1.0.152) answers with the scripted model. "
        "Between it and the bridge sits `tests/chaos/proxy.py`, an HTTP/1.1 proxy that cuts "
        "the event stream into SSE frames and can damage them. The bridge runs in a process "
        "of its own (`tests/chaos/driver.py`); a view (`tests/bridge/view.py`) follows its "
        "WebSocket. Each run: a session made through the bridge and one made directly on "
        "the server by another client; a 3000-character mixed-script reply streams in "
        "each (6 characters a delta); once the view shows 600 characters the fault is "
        "injected. Then:",
        "",
        "- **recovery**: at `t0` (below) another client creates a session directly on the "
        f"server; the time until the view shows it. Bound: {RECOVERY_BOUND:g} s.",
        "- **settle**: once the server's turns are over, the time until the bridge's "
        f"`GET /api/snapshot` and the view equal `GET /session/{{id}}/message` (bound "
        f"{SETTLE_TIMEOUT:g} s).",
        "- a run **diverges** if any of these fail: snapshot = REST truth for every "
        "session the bridge holds; the view = REST truth; the view's text never shrank and "
        "its cursor never went back; every prompt on the server exactly once; recovered "
        "within the bound.",
        "",
        "| fault | what is done | `t0` |",
        "|---|---|---|",
        *[f"| {f.name} | {f.what} | {f.t0} |" for f in FAULTS.values()],
        "",
    ]
    if results:
        lines += chaos_section(results, meta)
    else:
        lines += ["## Chaos matrix", "", "No chaos results were found (run `make chaos`)."]
    lines += ["", *soak_section(soak), ""]
    if FINDINGS.exists():
        lines += ["## Findings", "", FINDINGS.read_text().strip(), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chaos", type=Path, default=REPO / ".chaos" / "results.jsonl")
    parser.add_argument("--soak", type=Path, default=REPO / ".chaos" / "soak.json")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "RELIABILITY.md")
    args = parser.parse_args()
    results = None
    finished = None
    if args.chaos.exists():
        results = [json.loads(line) for line in args.chaos.read_text().splitlines() if line]
        finished = datetime.fromtimestamp(args.chaos.stat().st_mtime, UTC)
    soak = json.loads(args.soak.read_text()) if args.soak.exists() else None
    args.out.write_text(render(results, soak, finished))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
