"""Launching a real `opencode serve`: find the binary, start it isolated, wait until it answers.

Used by the embedded mode of the CLI and by the tests' real-server harness, so both run
OpenCode the same way.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Self

import httpx

from openchamber.lifecycle import Service

PINNED_VERSIONS = ("1.18.33", "1.0.152")
# For a server that must not reach the network (tests, the demo): no plugin installs,
# model lists or downloads.
OFFLINE_ENV = {
    "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
    "OPENCODE_DISABLE_MODELS_FETCH": "1",
    "OPENCODE_DISABLE_AUTOUPDATE": "1",
    "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
}
_LISTENING = re.compile(r"opencode server listening on (http://\S+)")
_PR_SET_PDEATHSIG = 1


class OpenCodeLaunchError(RuntimeError):
    """The server could not be started or did not become ready; the message has its log."""


def find_opencode(version: str | None = None) -> Path:
    """The `opencode` binary: $OPENCHAMBER_OPENCODE_BIN, a project-local pinned install, or PATH.

    Project-local installs live in `.opencode/<version>/bin/opencode` (made by `make setup`),
    looked up from the working directory and from this package's source checkout.
    """
    explicit = os.environ.get("OPENCHAMBER_OPENCODE_BIN")
    if explicit:
        return Path(explicit)
    versions = [version] if version else list(PINNED_VERSIONS)
    roots = [Path.cwd(), *Path.cwd().parents, Path(__file__).resolve().parents[2]]
    for root in roots:
        for wanted in versions:
            candidate = root / ".opencode" / wanted / "bin" / "opencode"
            if candidate.exists():
                return candidate
    on_path = shutil.which("opencode")
    if on_path and version is None:
        return Path(on_path)
    wanted_text = f"OpenCode {version}" if version else "OpenCode"
    raise OpenCodeLaunchError(
        f"{wanted_text} not found: run `make setup`, put `opencode` on PATH, "
        "or set OPENCHAMBER_OPENCODE_BIN"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (OpenCode 1.18 maps --port 0 to 4096, so we pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: the kernel kills it if we die, so a crashed
    # test run or CLI never leaves an orphan server behind.
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class OpenCodeServer(Service):
    """One `opencode serve` process serving `directory`; its log goes to `state_dir`.

    With `isolated`, OpenCode's XDG data/config/cache/state dirs live in `state_dir` too
    (tests); without, it uses the user's own configuration (the embedded mode).
    Use as a context manager, or call `start()` and `stop()`.
    """

    directory: Path
    state_dir: Path
    binary: Path = field(default_factory=find_opencode)
    password: str | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    ready_timeout: float = 30.0
    isolated: bool = True
    url: str = ""
    version: str = ""
    process: subprocess.Popen[bytes] | None = None
    _log: deque[str] = field(default_factory=lambda: deque(maxlen=400))
    _log_file: Path | None = None

    @property
    def auth(self) -> tuple[str, str] | None:
        if self.password is None:
            return None
        return (os.environ.get("OPENCODE_SERVER_USERNAME", "opencode"), self.password)

    @property
    def log_text(self) -> str:
        return "".join(self._log)

    def start(self) -> Self:
        if self.process is not None:
            raise OpenCodeLaunchError("server already started")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._log_file = self.state_dir / "opencode.log"
        port = self.port or free_port(self.host)
        command = [
            str(self.binary),
            "serve",
            "--hostname",
            self.host,
            "--port",
            str(port),
            "--print-logs",
        ]
        self.process = subprocess.Popen(
            command,
            cwd=self.directory,
            env=self._environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # The kernel ties the child to the *thread* that forks it: one started from a
            # worker thread would die when that thread retires, so only the main thread's
            # children get the guard (stop() ends the others).
            preexec_fn=_die_with_parent
            if threading.current_thread() is threading.main_thread()
            else None,
        )
        listening = threading.Event()
        threading.Thread(
            target=self._pump_log,
            args=(self.process.stdout, self._log_file, listening),
            name="opencode-log",
            daemon=True,
        ).start()
        try:
            self._wait_ready(listening)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL after a grace period."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def restart(self) -> None:
        """Stop and start again on the same port (clients see the same URL come back)."""
        port = self.port
        if self.url:
            self.port = httpx.URL(self.url).port
        self.stop()
        self.url = ""
        try:
            self.start()
        finally:
            self.port = port

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        for name in ("DATA", "CONFIG", "CACHE", "STATE") if self.isolated else ():
            path = self.state_dir / name.lower()
            path.mkdir(exist_ok=True)
            env[f"XDG_{name}_HOME"] = str(path)
        env.pop("OPENCODE_SERVER_PASSWORD", None)
        if self.password is not None:
            env["OPENCODE_SERVER_PASSWORD"] = self.password
        # Offline by design: no update checks or downloads from the server side.
        env.setdefault("OPENCODE_DISABLE_AUTOUPDATE", "1")
        env.setdefault("OPENCODE_DISABLE_LSP_DOWNLOAD", "1")
        env.update(self.env)
        return env

    def _pump_log(
        self, output: IO[bytes] | None, log_file: Path, listening: threading.Event
    ) -> None:
        if output is None:
            return
        with log_file.open("a", encoding="utf-8", errors="replace") as sink:
            for raw in output:
                line = raw.decode("utf-8", "replace")
                self._log.append(line)
                sink.write(line)
                sink.flush()
                match = _LISTENING.search(line)
                if match and not listening.is_set():
                    self.url = match.group(1)
                    listening.set()
        listening.set()  # EOF: the process is gone; the waiter reports it

    def _wait_ready(self, listening: threading.Event) -> None:
        deadline = time.monotonic() + self.ready_timeout
        if not listening.wait(self.ready_timeout) or not self.url:
            self._fail("did not print its listening address")
        # `/path` exists on every version (1.0.x has no /global/health), needs auth when set.
        with httpx.Client(base_url=self.url, auth=self.auth, timeout=5.0) as http:
            while True:
                if self.process is None or self.process.poll() is not None:
                    self._fail("exited during start-up")
                try:
                    response = http.get("/path")
                    if response.status_code == 200:
                        break
                    problem = f"GET /path answered {response.status_code}"
                except httpx.TransportError as exc:
                    problem = f"GET /path failed: {exc!r}"
                if time.monotonic() > deadline:
                    self._fail(f"not ready after {self.ready_timeout:.0f}s ({problem})")
                time.sleep(0.05)  # polling interval while the server boots
            self.version = self._read_version(http)

    def _read_version(self, http: httpx.Client) -> str:
        # 1.0.x has no /global/health: it forwards the route to a hosted app and fails.
        response = http.get("/global/health")
        with contextlib.suppress(ValueError):
            version = response.json().get("version") if response.status_code == 200 else None
            if isinstance(version, str) and version:
                return version
        completed = subprocess.run(
            [str(self.binary), "--version"], capture_output=True, text=True, check=False
        )
        return completed.stdout.strip()

    def _fail(self, what: str) -> None:
        code = self.process.poll() if self.process else None
        status = f" (exit code {code})" if code is not None else ""
        raise OpenCodeLaunchError(
            f"opencode serve {what}{status}; binary {self.binary}; last log lines:\n"
            + "".join(list(self._log)[-60:])
        )
