"""`openchamber doctor`: check an OpenCode server the way the runtime will use it, and explain."""

from __future__ import annotations

import contextlib
import email.utils
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from openchamber.protocol import Heartbeat, ServerConnected, StreamParser
from openchamber.server import OpenCodeLaunchError, OpenCodeServer

OK, WARN, FAIL = "ok", "warn", "fail"
_MARK = {OK: "[green]✔[/]", WARN: "[yellow]![/]", FAIL: "[red]✘[/]"}


@dataclass
class Check:
    name: str
    verdict: str
    detail: str


def wire_generation(version: str) -> str:
    """How this server version streams a reply (see PROTOCOL.md)."""
    try:
        parts = tuple(int(p) for p in version.split(".")[:3])
    except ValueError:
        return "unknown (version not understood)"
    if parts < (1, 2, 0):
        return "1.0/1.1: cumulative message.part.updated + delta"
    if parts < (1, 3, 3):
        return "1.2–1.3.2: message.part.delta"
    return "1.3.3+: message.part.delta with sessionID, plus sync twins with seq"


def _auth() -> tuple[str, str] | None:
    password = os.environ.get("OPENCODE_SERVER_PASSWORD")
    if not password:
        return None
    return (os.environ.get("OPENCODE_SERVER_USERNAME", "opencode"), password)


def diagnose(url: str, auth: tuple[str, str] | None, seconds: float) -> list[Check]:
    checks: list[Check] = []
    with httpx.Client(base_url=url, auth=auth, timeout=10.0) as http:
        try:
            response = http.get("/path")
        except httpx.TransportError as exc:
            checks.append(
                Check(
                    "reachable",
                    FAIL,
                    f"cannot connect to {url} ({exc}); is `opencode serve` running?",
                )
            )
            return checks
        checks.append(Check("reachable", OK, url))
        if response.status_code in (401, 403):
            hint = (
                "set OPENCODE_SERVER_PASSWORD"
                if auth is None
                else "OPENCODE_SERVER_PASSWORD is wrong"
            )
            checks.append(Check("auth", FAIL, f"{response.status_code}: password refused; {hint}"))
            return checks
        if response.status_code != 200:
            checks.append(Check("auth", FAIL, f"GET /path answered {response.status_code}"))
            return checks
        checks.append(Check("auth", OK, "accepted" if auth else "no password needed"))
        version = _version(http)
        if version:
            checks.append(Check("version", OK, version))
            checks.append(Check("wire generation", OK, wire_generation(version)))
        else:
            checks.append(
                Check(
                    "version",
                    WARN,
                    "not reported: no /global/health (OpenCode 1.0.x) and no session to read "
                    "it from yet",
                )
            )
            checks.append(Check("wire generation", WARN, wire_generation("1.0.0")))
        checks += _check_clock(response)
        checks += _check_stream(http, seconds)
    return checks


def _version(http: httpx.Client) -> str:
    with contextlib.suppress(httpx.HTTPError, ValueError):
        health = http.get("/global/health")
        if health.status_code == 200 and isinstance(health.json().get("version"), str):
            return str(health.json()["version"])
    # 1.0.x has no /global/health; its sessions carry the version.
    with contextlib.suppress(httpx.HTTPError, ValueError):
        sessions = http.get("/session").json()
        if sessions and isinstance(sessions[0].get("version"), str):
            return str(sessions[0]["version"])
    return ""


def _check_clock(response: httpx.Response) -> list[Check]:
    date = response.headers.get("date")
    if not date:
        return [Check("clock", WARN, "server sent no Date header")]
    skew = time.time() - email.utils.parsedate_to_datetime(date).timestamp()
    verdict = OK if abs(skew) < 5 else WARN
    return [Check("clock", verdict, f"local clock {skew:+.1f}s from the server's")]


def _check_stream(http: httpx.Client, seconds: float) -> list[Check]:
    checks: list[Check] = []
    headers = {"Accept": "text/event-stream", "Accept-Encoding": "identity"}
    started = time.monotonic()
    first_frame: float | None = None
    heartbeats: list[float] = []
    try:
        with http.stream("GET", "/global/event", headers=headers, timeout=seconds + 5) as response:
            content_type = response.headers.get("content-type", "")
            encoding = response.headers.get("content-encoding", "identity")
            transfer = response.headers.get("transfer-encoding", "(none)")
            checks.append(
                Check(
                    "event stream",
                    OK if response.status_code == 200 else FAIL,
                    f"GET /global/event answered {response.status_code}",
                )
            )
            checks.append(
                Check(
                    "content type",
                    OK if content_type.startswith("text/event-stream") else FAIL,
                    content_type or "(none)",
                )
            )
            checks.append(
                Check(
                    "content encoding",
                    OK if encoding in ("", "identity") else FAIL,
                    f"{encoding}: must be absent or identity (a proxy compressing the stream "
                    "holds events back)"
                    if encoding not in ("", "identity")
                    else "identity",
                )
            )
            checks.append(Check("transfer encoding", OK, transfer))
            if response.status_code != 200 or encoding not in ("", "identity"):
                return checks
            parser = StreamParser()
            for event in _events_until(response, parser, started + seconds):
                now = time.monotonic()
                if isinstance(event, ServerConnected) and first_frame is None:
                    first_frame = now - started
                if isinstance(event, Heartbeat):
                    heartbeats.append(now)
    except httpx.ReadTimeout:
        if not checks:  # no response headers at all
            checks.append(
                Check(
                    "event stream",
                    WARN,
                    f"no response within {seconds + 5:.0f}s: OpenCode 1.0.x sends its "
                    "headers only with the first event",
                )
            )
            return checks
    except httpx.TransportError as exc:
        checks.append(Check("event stream", FAIL, f"stream broke: {exc}"))
        return checks
    checks.append(
        Check(
            "server.connected",
            OK if first_frame is not None else WARN,
            f"after {first_frame * 1000:.0f} ms"
            if first_frame is not None
            else "not received (servers before 1.0.164 do not send it)",
        )
    )
    checks.append(_heartbeat_check(heartbeats, seconds))
    return checks


def _events_until(
    response: httpx.Response, parser: StreamParser, deadline: float
) -> Iterator[object]:
    for chunk in response.iter_raw():
        yield from parser.feed(chunk)
        if time.monotonic() >= deadline:
            return


def _heartbeat_check(beats: list[float], seconds: float) -> Check:
    if len(beats) >= 2:
        period = (beats[-1] - beats[0]) / (len(beats) - 1)
        return Check("heartbeat", OK, f"every {period:.1f}s")
    if beats:
        return Check("heartbeat", OK, f"seen once in {seconds:.0f}s (10s or 30s cadence)")
    return Check(
        "heartbeat",
        WARN,
        f"none in {seconds:.0f}s: servers before 1.0.164 send none; the watchdog then relies "
        "on reconnects",
    )


def render(checks: list[Check], out: Console) -> None:
    table = Table(show_header=False, box=None)
    for check in checks:
        table.add_row(_MARK[check.verdict], check.name, check.detail)
    out.print(table)


def run_doctor(url: str | None, seconds: float, out: Console) -> int:
    if url is None:
        with tempfile.TemporaryDirectory(prefix="openchamber-") as state:
            password = secrets.token_urlsafe(16)
            out.print(f"Starting an embedded opencode serve in {Path.cwd()} …")
            try:
                with OpenCodeServer(
                    directory=Path.cwd(), state_dir=Path(state), password=password, isolated=False
                ) as server:
                    checks = diagnose(server.url, server.auth, seconds)
            except OpenCodeLaunchError as exc:
                checks = [Check("embedded server", FAIL, str(exc))]
    else:
        checks = diagnose(url, _auth(), seconds)
    render(checks, out)
    failed = [c for c in checks if c.verdict == FAIL]
    out.print("[red]Problems found.[/]" if failed else "[green]All checks passed.[/]")
    return 1 if failed else 0
