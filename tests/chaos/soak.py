"""Soak: a bridge (in its own process) under a steady stream of replies for a long time,
its RSS, open file descriptors, asyncio tasks and ring sampled throughout.

    python -m tests.chaos.soak --minutes 30 [--version 1.18.33] [--out .chaos/soak.json]

One session at a time gets a long reply sent through the bridge while another client
prompts a second session directly; a view follows the bridge all along. Finished sessions
are deleted (through the bridge), so what the store legitimately holds stays the same
size and any growth that remains is a leak. Growth is reported per hour as the
least-squares slope of the samples after a warm-up (the first 10% of the run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import psutil

from openchamber import ids
from openchamber.server import OpenCodeServer, find_opencode
from openchamber.testing.model import ModelServer, opencode_config

from ..bridge.view import Follower
from ..conftest import OFFLINE_ENV
from .scenario import ChaosView, Watch, chaos_bridge

REPO = Path(__file__).resolve().parents[2]
REPLY = "reply=long len=2000 chunk=8 delay=1"
SAMPLE_EVERY = 2.0
JSON = dict[str, Any]


def slope_per_hour(times: list[float], values: list[float]) -> float:
    """Least-squares slope of values over times (seconds), per hour, after a warm-up."""
    if len(times) < 3:
        return 0.0
    start = times[0] + (times[-1] - times[0]) * 0.1
    pairs = [(t, v) for t, v in zip(times, values, strict=True) if t >= start]
    if len(pairs) < 3:
        return 0.0
    mean_t = sum(t for t, _ in pairs) / len(pairs)
    mean_v = sum(v for _, v in pairs) / len(pairs)
    num = sum((t - mean_t) * (v - mean_v) for t, v in pairs)
    den = sum((t - mean_t) ** 2 for t, _ in pairs)
    return 0.0 if den == 0 else num / den * 3600


async def _turn_over(direct: httpx.AsyncClient, sid: str, prompts: int) -> bool:
    messages = (await direct.get(f"/session/{sid}/message")).json()
    users = [m for m in messages if m["info"].get("role") == "user"]
    last = messages[-1]["info"] if messages else {}
    return (
        len(users) == prompts
        and last.get("role") == "assistant"
        and bool(last.get("time", {}).get("completed"))
    )


async def soak_bridge(server: OpenCodeServer, seconds: float, log: Path) -> JSON:
    """Run the soak against `server` for `seconds`; the samples and what they show.
    The bridge's log goes to `log`."""
    bridge = await anyio.to_thread.run_sync(
        lambda: chaos_bridge(server.url, server.password, ("--stats", str(SAMPLE_EVERY)), log)
    )
    process = psutil.Process(bridge.pid)
    samples: list[JSON] = []
    replies = 0
    view = ChaosView()
    follower = Follower(bridge.url, bridge.token, view)
    watch = Watch(follower)
    started = time.monotonic()

    async def sample() -> None:
        while True:
            stats = bridge.stats[-1] if bridge.stats else {}
            samples.append(
                {
                    "t": time.monotonic() - started,
                    "rss_mb": process.memory_info().rss / 1e6,
                    "fds": process.num_fds(),
                    "tasks": stats.get("tasks", 0),
                    "ring": stats.get("ring", 0),
                    "store": stats.get("store", {}),
                }
            )
            await anyio.sleep(SAMPLE_EVERY)

    try:
        async with (
            bridge.http() as http,
            httpx.AsyncClient(base_url=server.url, auth=server.auth, timeout=60) as direct,
            anyio.create_task_group() as tasks,
        ):
            await watch.start(tasks)
            await follower.wait_until(lambda v: v.status.get("state") == "connected")
            tasks.start_soon(sample)
            while time.monotonic() - started < seconds:
                mine = (await http.post("/api/sessions", json={})).json()["id"]
                theirs = (await direct.post("/session", json={})).json()["id"]
                body = {"text": f"{REPLY} soak {replies}", "messageID": ids.message_id()}
                await http.post(f"/api/sessions/{mine}/messages", json=body)
                prompt = {"parts": [{"type": "text", "text": f"{REPLY} direct {replies}"}]}
                await direct.post(f"/session/{theirs}/prompt_async", json=prompt)
                with anyio.fail_after(120):
                    while not (  # noqa: ASYNC110 (the server is polled over REST)
                        await _turn_over(direct, mine, 1) and await _turn_over(direct, theirs, 1)
                    ):
                        await anyio.sleep(0.2)
                replies += 2
                await http.delete(f"/api/sessions/{mine}")
                await http.delete(f"/api/sessions/{theirs}")
            tasks.cancel_scope.cancel()
    finally:
        await anyio.to_thread.run_sync(bridge.stop)
    elapsed = time.monotonic() - started
    times = [s["t"] for s in samples]
    series = {
        key: [round(s[key], 2) for s in samples] for key in ("rss_mb", "fds", "tasks", "ring")
    }
    store_max: dict[str, int] = {}
    for s in samples:
        for name, value in s["store"].items():
            store_max[name] = max(store_max.get(name, 0), value)
    slopes = {key: slope_per_hour(times, values) for key, values in series.items()}
    text = await anyio.Path(log).read_text(errors="replace")
    lines = text.splitlines()
    failures = [line for line in lines if "failed" in line]
    return {
        "log_lines": len(lines),
        "log_failures": len(failures),
        "log_failure_sample": failures[:3],
        "seconds": elapsed,
        "replies": replies,
        "reply_chars": 2000,
        "patches": view.patches,
        "view_shrinks": view.shrinks,
        "view_errors": watch.errors,
        "times": times,
        "series": series,
        "slopes": slopes,
        "store_max": store_max,
    }


def verdict(result: JSON) -> str:
    rss = result["slopes"]["rss_mb"]
    fds = result["series"]["fds"]
    tasks = result["series"]["tasks"]
    notes = [
        f"RSS {rss:+.1f} MB/h",
        f"fds {min(fds)}–{max(fds)}" if fds else "fds not sampled",
        f"tasks {min(tasks)}–{max(tasks)}" if tasks else "tasks not sampled",
    ]
    flat = abs(rss) < 20 and (max(fds) - min(fds) <= 8 if fds else True)
    return ("flat: " if flat else "**growing**: ") + ", ".join(notes)


def plot(result: JSON, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [t / 60 for t in result["times"]]
    figure, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    axes[0].plot(minutes, result["series"]["rss_mb"])
    axes[0].set_ylabel("RSS MB")
    axes[1].plot(minutes, result["series"]["fds"], label="open fds")
    axes[1].plot(minutes, result["series"]["tasks"], label="asyncio tasks")
    axes[1].legend()
    axes[2].plot(minutes, result["series"]["ring"])
    axes[2].set_ylabel("ring patches")
    axes[2].set_xlabel("minutes")
    figure.suptitle("bridge process during the soak")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--version", default="1.18.33")
    parser.add_argument("--out", type=Path, default=REPO / ".chaos" / "soak.json")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "soak.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ModelServer() as model:
        project = Path(tmp) / "project"
        project.mkdir()
        (project / "opencode.json").write_text(json.dumps(opencode_config(model.base_url)))
        server = OpenCodeServer(
            directory=project,
            state_dir=Path(tmp) / "state",
            binary=find_opencode(args.version),
            password=secrets.token_urlsafe(12),
            env=OFFLINE_ENV,
        )
        with server:
            log = args.out.with_suffix(".bridge.log")
            log.parent.mkdir(parents=True, exist_ok=True)
            result = anyio.run(soak_bridge, server, args.minutes * 60, log)
    from .report import _source

    result.update(
        {
            "minutes": args.minutes,
            "version": args.version,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
            f"Python {platform.python_version()}",
            "source": _source(),
            "verdict": verdict(result),
        }
    )
    plot(result, args.plot)
    result["plot"] = os.path.relpath(args.plot, REPO / "docs")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(result["verdict"])


if __name__ == "__main__":
    main()
