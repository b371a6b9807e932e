"""A `Runtime` in a process of its own, for tests that suspend it (SIGSTOP) or kill it.

    python tests/integration/runtime_driver.py URL [--heartbeat S] [--factor F] [--wake S]

Credentials come from `OPENCODE_SERVER_PASSWORD`, as for any client. stdout carries one
JSON object per line:

- `{"status": {...}}` on each change of the connection's state;
- `{"patches": N, "longest": L}` after each batch of patches (L: the longest streamed text
  in the store), so a test can wait for progress without asking;
- `{"snapshot": store.snapshot(), "statuses": [...every status so far]}` for each line
  `snapshot` read on stdin.

It runs until stdin closes.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio
import orjson

from openchamber.client import OpenCodeClient
from openchamber.runtime import Runtime
from openchamber.store import Patch
from openchamber.stream import Watchdog


def emit(line: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(line) + b"\n")
    sys.stdout.buffer.flush()


async def drive(url: str, watchdog: Watchdog, wake_threshold: float) -> None:
    statuses: list[dict[str, Any]] = []
    async with OpenCodeClient(url) as client:

        async def on_patches(patches: list[Patch]) -> None:
            for patch in patches:
                if patch["op"] == "connection":
                    statuses.append(patch["status"])
                    emit({"status": patch["status"]})
            longest = max(runtime.store.text_lengths().values(), default=0)
            emit({"patches": len(patches), "longest": longest})

        runtime = Runtime(client, on_patches, watchdog=watchdog, wake_threshold=wake_threshold)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(runtime.run)
            stdin = sys.stdin.readline
            while line := await anyio.to_thread.run_sync(stdin, abandon_on_cancel=True):
                if line.strip() == "snapshot":
                    emit({"snapshot": runtime.store.snapshot(), "statuses": statuses})
            tasks.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--heartbeat", type=float, default=30.0, help="assumed period (s)")
    parser.add_argument("--factor", type=float, default=2.5, help="silent periods = dead")
    parser.add_argument("--wake", type=float, default=5.0, help="a tick this late = woke (s)")
    args = parser.parse_args()
    watchdog = Watchdog(assumed_period=args.heartbeat, factor=args.factor)
    anyio.run(drive, args.url, watchdog, args.wake)


if __name__ == "__main__":
    main()
