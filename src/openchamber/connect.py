"""What the commands that talk to OpenCode share: exit codes, one-line errors, the server
to talk to (the one configured, or an embedded `opencode serve`) and a client the server
has accepted."""

from __future__ import annotations

import contextlib
import enum
import getpass
import secrets
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
from rich.console import Console

from openchamber.client import (
    AuthRefused,
    OpenCodeClient,
    OpenCodeError,
    RequestTimeout,
    Unreachable,
)
from openchamber.config import Settings
from openchamber.server import OpenCodeLaunchError, OpenCodeServer


class Exit(enum.IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    UNREACHABLE = 3
    AUTH = 4
    INTERRUPTED = 130


EXIT_CODES = """exit codes:
  0    success
  1    the command or check failed
  2    wrong usage or bad input (flag, environment, config file)
  3    the OpenCode server is unreachable or could not be started
  4    the server refused the password
  130  interrupted (Ctrl-C)"""


# How the commands ask for an event stream they read raw: never compressed (a compressed
# stream holds events back until a block fills).
STREAM_HEADERS = {"Accept": "text/event-stream", "Accept-Encoding": "identity"}


class CommandError(Exception):
    """Ends a command with a one-line message (what failed, what to try) and an exit code."""

    def __init__(self, message: str, code: Exit = Exit.FAILED) -> None:
        super().__init__(message)
        self.code = code


def command_error(exc: OpenCodeError) -> CommandError:
    """A client failure as the command's error, with the exit code its kind calls for."""
    if isinstance(exc, AuthRefused):
        return CommandError(str(exc), Exit.AUTH)
    if isinstance(exc, Unreachable | RequestTimeout):
        return CommandError(str(exc), Exit.UNREACHABLE)
    return CommandError(str(exc))


def stderr() -> Console:
    # soft_wrap: an error stays one line however narrow the terminal (or 80 without one).
    return Console(stderr=True, soft_wrap=True, highlight=False)


@contextlib.contextmanager
def progress(message: str) -> Iterator[None]:
    """A spinner on stderr while something slow runs, when stderr is a terminal."""
    console = stderr()
    if not console.is_terminal:
        yield
        return
    with console.status(message):
        yield


@dataclass(frozen=True)
class Endpoint:
    url: str
    auth: tuple[str, str] | None
    directory: str | None
    embedded: bool = False


@contextlib.contextmanager
def opencode_endpoint(settings: Settings) -> Iterator[Endpoint]:
    """The configured server, or an embedded `opencode serve` for as long as this lasts."""
    directory = settings.directory.value
    if settings.opencode.value is not None:
        yield Endpoint(
            settings.opencode.value, settings.auth, str(directory) if directory else None
        )
        return
    directory = directory or Path.cwd()
    host, port = settings.host.value, settings.port.value
    if port is not None:
        _check_port_free(host, port, settings.port.source)
    password = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="openchamber-") as state:
        try:
            with progress(f"Starting an embedded opencode serve in {directory} …"):
                server = OpenCodeServer(
                    directory=directory,
                    state_dir=Path(state),
                    password=password,
                    host=host,
                    port=port,
                    env={"OPENCODE_SERVER_USERNAME": settings.username.value},
                    isolated=False,
                ).start()
        except OpenCodeLaunchError as exc:
            raise CommandError(_launch_failure(exc), Exit.UNREACHABLE) from exc
        try:
            yield Endpoint(server.url, (settings.username.value, password), str(directory), True)
        finally:
            server.stop()


def _check_port_free(host: str, port: int, source: str) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CommandError(
                f"cannot start the embedded server on {host}:{port} ({source}): "
                f"{exc.strerror}; pick another port with --port or OPENCHAMBER_PORT",
                Exit.UNREACHABLE,
            ) from exc


def _launch_failure(exc: OpenCodeLaunchError) -> str:
    """The launch error's first line and the log's last, not the whole log."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    first = lines[0].removesuffix("; last log lines:") if lines else "opencode serve failed"
    last = f" (last log line: {lines[-1]})" if len(lines) > 1 else ""
    return f"embedded server: {first}{last}"


async def connect(endpoint: Endpoint, settings: Settings) -> OpenCodeClient:
    """A client the server at `endpoint` answers and accepts.

    On a refused password, in a terminal, asks for it (never a flag: it would show in `ps`).
    """
    auth = endpoint.auth
    while True:
        client = OpenCodeClient(endpoint.url, auth=auth, directory=endpoint.directory)
        try:
            await client.health()
        except AuthRefused as exc:
            await client.aclose()
            if not sys.stdin.isatty():
                raise command_error(exc) from exc
            prompt = f"Password for {endpoint.url} (user {settings.username.value}): "
            # Blocking is fine here (nothing else runs yet), and Ctrl-C interrupts it.
            password = getpass.getpass(prompt)
            if not password:
                raise command_error(exc) from exc
            auth = (settings.username.value, password)
            continue
        except OpenCodeError as exc:
            await client.aclose()
            raise command_error(exc) from exc
        return client


async def cancel_on_ctrl_c(scope: anyio.CancelScope) -> None:
    """Cancel `scope` at the first Ctrl-C (for commands that run until stopped)."""
    with anyio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return
