"""A bridge in a process of its own, for chaos and soak runs (SIGSTOP, RSS, open files):

    python -m tests.chaos.driver URL [--watchdog S] [--wake-threshold S] [--stats S]

Prints one JSON line `{"url", "token", "pid"}` once the bridge listens. The OpenCode
password comes from the environment. `--watchdog S` makes silence of S seconds a dead
connection whatever heartbeat the server sends; with `--stats S` it prints a JSON line
every S seconds: asyncio tasks, ring length, the store's bounded buffers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import anyio

from openchamber.bridge import Bridge
from openchamber.client import OpenCodeClient
from openchamber.stream import Watchdog


def runtime_options(watchdog: float | None, wake_threshold: float | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if watchdog is not None:
        # A learned period can only shrink (`Watchdog.beat` keeps the shortest gap), so a
        # preset period of S/2 with factor 2 declares S seconds of silence dead.
        options["watchdog"] = Watchdog(assumed_period=watchdog / 2, factor=2.0, period=watchdog / 2)
    if wake_threshold is not None:
        options["wake_threshold"] = wake_threshold
    return options


def stats(bridge: Bridge) -> dict[str, Any]:
    store = bridge.feed.store
    buffers = {
        name: len(value)
        for name, value in vars(store).items()
        if hasattr(value, "__len__") and name.startswith("_")
    }
    return {
        "stats": True,
        "tasks": len(asyncio.all_tasks()),
        "ring": len(bridge.feed.hub._ring),
        "cursor": bridge.feed.cursor,
        "state": bridge.runtime.status.state.value,
        "store": buffers,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--watchdog", type=float)
    parser.add_argument("--wake-threshold", type=float)
    parser.add_argument("--ring", type=int)
    parser.add_argument("--stats", type=float)
    args = parser.parse_args()

    async def report(bridge: Bridge, every: float) -> None:
        while True:
            print(json.dumps(stats(bridge)), flush=True)
            await anyio.sleep(every)

    async def run() -> None:
        async with OpenCodeClient(args.url) as client:  # password from the environment
            extra: dict[str, Any] = {} if args.ring is None else {"ring_capacity": args.ring}
            bridge = Bridge(
                client,
                runtime_options=runtime_options(args.watchdog, args.wake_threshold),
                **extra,
            )
            async with anyio.create_task_group() as tasks:
                await tasks.start(bridge.run)
                hello = {"url": bridge.url, "token": bridge.token, "pid": os.getpid()}
                print(json.dumps(hello), flush=True)
                if args.stats:
                    tasks.start_soon(report, bridge, args.stats)

    anyio.run(run)
    sys.exit(0)


if __name__ == "__main__":
    main()
