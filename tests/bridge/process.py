"""A bridge in a process of its own (SIGSTOP, SIGKILL, RSS, open files), and the JSON lines
it prints: the first one `{"url", "token"}` once it listens, then `{"stats": true, ...}`
samples if its driver prints them."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
JSON = dict[str, Any]


class BridgeProcess:
    def __init__(
        self, module: str, args: list[str], password: str | None, log: Path | None = None
    ) -> None:
        """Run `python -m module *args` with the OpenCode password in its environment; its
        log (stderr) goes to `log`, or to ours."""
        env = {**os.environ, "OPENCODE_SERVER_PASSWORD": password or ""}
        stderr = None if log is None else log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        if stderr is not None:
            stderr.close()
        self.pid = self.process.pid
        self.stats: list[JSON] = []
        self._hello: queue.Queue[JSON] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        try:
            hello = self._hello.get(timeout=60)
        except queue.Empty:
            self.stop()
            raise RuntimeError(f"the bridge process ({module}) did not start") from None
        self.url: str = hello["url"]
        self.token: str = hello["token"]

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line_json = json.loads(line)
            if line_json.get("stats"):
                line_json["at"] = time.monotonic()
                self.stats.append(line_json)
            else:
                self._hello.put(line_json)

    def http(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a stopped process cannot handle TERM
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait()
