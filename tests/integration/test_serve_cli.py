"""`openchamber serve`, `demo` and `cache` as a user runs them: real processes, real
servers, the UI's URL read from stdout."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx
import pytest

from openchamber.server import OpenCodeServer

from ..bridge.harness import settle
from ..bridge.view import Follower

pytestmark = [pytest.mark.integration]

OPENCHAMBER = [sys.executable, "-m", "openchamber"]
_URL = re.compile(r"the chat UI is at (http://\S+)/\?token=(\S+)")


class Running:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        assert process.stdout is not None
        line = process.stdout.readline()
        found = _URL.search(line)
        assert found, f"no URL in {line!r}; stderr: {self._stderr()}"
        self.url, self.token = found.groups()

    def _stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return ""
        return self.process.stderr.read()

    def http(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)


@contextmanager
def openchamber(*args: str, env: dict[str, str]) -> Iterator[Running]:
    process = subprocess.Popen(
        [*OPENCHAMBER, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    try:
        yield Running(process)
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C: the way a user stops it
        code = process.wait(timeout=30)
        assert code in (0, 130), process.stderr.read() if process.stderr else code


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """A home of its own: the cache and config land there, not in the user's."""
    return {
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }


async def answer_a_prompt(running: Running, server: OpenCodeServer) -> str:
    """Send a prompt through the bridge; the view ends equal to the server's truth."""
    async with running.http() as http:
        session = (await http.post("/api/sessions", json={})).json()
        sid: str = session["id"]
        sent = await http.post(f"/api/sessions/{sid}/messages", json={"text": "reply=markdown"})
        assert sent.status_code == 202
    follower = Follower(running.url, running.token)
    async with anyio.create_task_group() as tasks:
        await tasks.start(follower.follow)
        await settle(follower, server, sid)
        tasks.cancel_scope.cancel()
    return sid


def test_serve_runs_the_bridge_over_a_server_and_caches_what_it_saw(
    opencode: OpenCodeServer, home: dict[str, str]
) -> None:
    env = {**home, "OPENCODE_SERVER_PASSWORD": opencode.password or ""}
    with openchamber("serve", "--opencode", opencode.url, "--no-browser", env=env) as running:
        anyio.run(answer_a_prompt, running, opencode)
        page = httpx.get(f"{running.url}/?token={running.token}", follow_redirects=True)
        assert page.status_code == 200
        assert "<html" in page.text.lower()
    info = subprocess.run(
        [*OPENCHAMBER, "cache", "--info", "--json", "--opencode", opencode.url],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=True,
    )
    cached = json.loads(info.stdout)
    assert cached["sessions"] >= 1
    assert cached["messages"] >= 2


def test_demo_comes_up_offline_and_answers(home: dict[str, str]) -> None:
    with openchamber("demo", "--no-browser", env=home) as running:

        async def check() -> None:
            async with running.http() as http:
                status = (await http.get("/api/snapshot")).json()["status"]
            assert status["state"] in ("connecting", "connected")

        anyio.run(check)
        # The demo's server is its own; the bridge's snapshot is the truth we can reach.
        sid = anyio.run(_demo_turn, running)
        assert sid.startswith("ses")


async def _demo_turn(running: Running) -> str:
    async with running.http() as http:
        sid: str = (await http.post("/api/sessions", json={})).json()["id"]
        await http.post(f"/api/sessions/{sid}/messages", json={"text": "hello"})
    follower = Follower(running.url, running.token)
    async with anyio.create_task_group() as tasks:
        await tasks.start(follower.follow)
        await follower.wait_until(
            lambda v: any(
                m["info"].get("role") == "assistant"
                and m["info"].get("time", {}).get("completed")
                and "Scripted reply" in "".join(p.get("text", "") for p in m["parts"])
                for m in v.messages(sid)
            )
        )
        tasks.cancel_scope.cancel()
    return sid


def test_a_port_in_use_is_one_line_and_a_failure(
    opencode: OpenCodeServer, home: dict[str, str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                *OPENCHAMBER,
                "serve",
                "--opencode",
                opencode.url,
                "--no-browser",
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, **home, "OPENCODE_SERVER_PASSWORD": opencode.password or ""},
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert f"cannot listen on 127.0.0.1:{port}" in line
