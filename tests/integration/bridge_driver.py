"""Run a bridge in a process of its own, for tests that kill it: `python -m
tests.integration.bridge_driver URL CACHE [--crash-at STEP]`.

Prints one JSON line `{"url", "token"}` once the bridge listens. With `--crash-at STEP`
it kills itself with SIGKILL (no cleanup, like a power cut) when the outbox reaches
STEP ("queued", "sending", "sent", "delivered") for the first time.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import anyio

from openchamber.bridge import Bridge
from openchamber.cache import Cache
from openchamber.client import OpenCodeClient


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("cache", type=Path)
    parser.add_argument("--crash-at")
    args = parser.parse_args()

    def on_step(step: str, message_id: str) -> None:
        if step == args.crash_at:
            os.kill(os.getpid(), signal.SIGKILL)

    async def run() -> None:
        async with OpenCodeClient(args.url) as client:  # password from the environment
            cache = Cache(args.cache, args.url)
            bridge = Bridge(client, cache=cache, on_outbox_step=on_step)
            async with anyio.create_task_group() as tasks:
                await tasks.start(bridge.run)
                print(json.dumps({"url": bridge.url, "token": bridge.token}), flush=True)

    anyio.run(run)
    sys.exit(0)


if __name__ == "__main__":
    main()
