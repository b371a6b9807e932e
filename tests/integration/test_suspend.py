"""A runtime whose process is suspended (SIGSTOP) while a reply streams notices it woke,
reconnects at once, repairs the gap and ends equal to REST truth.

The runtime runs in a process of its own (`runtime_driver.py`), so that stopping it does
not stop the test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import orjson
import pytest

from openchamber.server import OpenCodeServer
from openchamber.testing.model import ModelServer

from ..support import session_idle, stream_with_session

pytestmark = pytest.mark.integration

DRIVER = Path(__file__).with_name("runtime_driver.py")
# A watchdog that calls 4 s of silence dead, a wake detector that calls a 2 s late tick a
# suspension, and a suspension longer than both.
WATCHDOG = ["--heartbeat", "2", "--factor", "2", "--wake", "2"]
SUSPENDED_FOR = 6.0

Line = dict[str, Any]


class Driver:
    """The driver process and what it has printed so far."""

    def __init__(self, server: OpenCodeServer) -> None:
        env = {**os.environ, "OPENCODE_SERVER_PASSWORD": server.password or ""}
        self.process = subprocess.Popen(
            [sys.executable, str(DRIVER), server.url, *WATCHDOG],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.lines: list[Line] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def __enter__(self) -> Driver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.process.send_signal(signal.SIGCONT)  # in case the test failed while it stood
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            with self._changed:
                self.lines.append(orjson.loads(raw))
                self._changed.notify_all()

    def wait_for(self, predicate: Callable[[Line], bool], after: int = 0) -> Line:
        """The first line from index `after` on (printed or still to come) that matches."""
        found: list[Line] = []

        def match() -> bool:
            found[:] = [line for line in self.lines[after:] if predicate(line)][:1]
            return bool(found) or self.process.poll() is not None

        with self._changed:
            if not self._changed.wait_for(match, 60) or not found:
                raise TimeoutError(f"driver printed no matching line (exit {self.process.poll()})")
        return found[0]

    def snapshot(self) -> Line:
        assert self.process.stdin is not None
        with self._changed:
            asked = len(self.lines)
        self.process.stdin.write(b"snapshot\n")
        self.process.stdin.flush()
        return self.wait_for(lambda line: "snapshot" in line, asked)

    def suspend(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)


def test_a_suspended_runtime_wakes_reconnects_and_repairs(
    opencode: OpenCodeServer, model: ModelServer
) -> None:
    gate = f"suspend-{opencode.version}-{uuid.uuid4().hex[:8]}"
    prompt = f"reply=long len=3000 chunk=10 pause={gate} at=100"
    witness, sid = stream_with_session(opencode)
    with (
        httpx.Client(base_url=opencode.url, auth=opencode.auth, timeout=30) as http,
        Driver(opencode) as driver,
    ):
        driver.wait_for(lambda line: line.get("status", {}).get("state") == "connected")
        body = {"parts": [{"type": "text", "text": prompt}]}
        http.post(f"/session/{sid}/prompt_async", json=body).raise_for_status()
        assert model.reached(gate, 60)
        driver.wait_for(lambda line: line.get("longest", 0) >= 1000)  # all before the gate

        driver.suspend()
        stopped = time.monotonic()
        try:
            model.open_gate(gate)  # the rest of the reply streams while the runtime stands
            witness.wait_for(session_idle(sid))
            # The fault itself, not a wait for something: stand still past the watchdog.
            time.sleep(max(0.0, SUSPENDED_FOR - (time.monotonic() - stopped)))
        finally:
            driver.resume()
        resumed = len(driver.lines)

        woke = driver.wait_for(lambda line: "status" in line, resumed)["status"]
        assert woke["state"] == "reconnecting"
        assert "suspended" in woke["hint"]
        assert woke["delay"] == 0.0
        driver.wait_for(lambda line: line.get("status", {}).get("state") == "connected", resumed)
        while True:
            seen = len(driver.lines)
            truth = http.get(f"/session/{sid}/message").raise_for_status().json()
            state = driver.snapshot()["snapshot"]
            if state["sessions"].get(sid) == truth and state["sessionStatus"][sid] == {
                "type": "idle"
            }:
                break
            driver.wait_for(lambda line: "patches" in line, seen)  # something changed
    witness.close()
    text = [p["text"] for m in truth for p in m["parts"] if p["type"] == "text"]
    assert len(text[-1]) == 3000
