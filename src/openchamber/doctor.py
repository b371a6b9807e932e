"""`openchamber doctor`: check an OpenCode server the way the runtime will use it, and explain."""

from __future__ import annotations

import contextlib
import email.utils
import time
from dataclasses import dataclass, field

import anyio
import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from openchamber.config import Settings
from openchamber.connect import STREAM_HEADERS, CommandError, Exit, opencode_endpoint, progress
from openchamber.protocol import Heartbeat, ServerConnected, StreamParser

OK, WARN, FAIL = "ok", "warn", "fail"
_STYLE = {
    OK: ("[green]✔[/]", "green"),
    WARN: ("[yellow]![/]", "yellow"),
    FAIL: ("[red]✘[/]", "red"),
}
_IDENTITY = ("", "identity")


@dataclass
class Check:
    name: str
    verdict: str
    detail: str
    code: Exit = Exit.FAILED  # the exit code when this check fails


def _version_tuple(version: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(p) for p in version.split(".")[:3])
    except ValueError:
        return None


def wire_generation(version: str) -> str:
    """How this server version streams a reply (see PROTOCOL.md)."""
    parts = _version_tuple(version)
    if parts is None:
        return "unknown (version not understood)"
    if parts < (1, 2, 0):
        return "1.0/1.1: cumulative message.part.updated + delta"
    if parts < (1, 3, 3):
        return "1.2–1.3.2: message.part.delta"
    return "1.3.3+: message.part.delta with sessionID, plus sync twins with seq"


def heartbeat_period(version: str) -> float | None:
    """Seconds between the heartbeats this version sends; None if it sends none."""
    parts = _version_tuple(version) or (0,)
    if parts >= (1, 2, 7):
        return 10.0
    if parts >= (1, 0, 164):
        return 30.0
    return None


async def diagnose(
    url: str, auth: tuple[str, str] | None, seconds: float, password_source: str
) -> list[Check]:
    checks: list[Check] = []
    async with httpx.AsyncClient(base_url=url, auth=auth, timeout=10.0) as http:
        try:
            response = await http.get("/path")
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            detail = f"cannot connect to {url} ({reason}); is `opencode serve` running there?"
            return [Check("reachable", FAIL, detail, Exit.UNREACHABLE)]
        checks.append(Check("reachable", OK, url))
        if response.status_code in (401, 403):
            hint = (
                "set OPENCODE_SERVER_PASSWORD"
                if auth is None
                else f"the password from {password_source} is wrong"
            )
            detail = f"{response.status_code}: password refused; {hint}"
            return [*checks, Check("auth", FAIL, detail, Exit.AUTH)]
        if response.status_code != 200:
            return [*checks, Check("auth", FAIL, f"GET /path answered {response.status_code}")]
        checks.append(Check("auth", OK, "accepted" if auth else "no password needed"))
        version, has_health = await _version(http)
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
        checks.append(_check_clock(response))
        # 1.0.x answers /global/event only with its first event; its /event answers at once.
        path, params = "/global/event", {}
        if not has_health:
            path, params = "/event", {"directory": str(response.json().get("directory", ""))}
        with progress(f"Watching {path} for {seconds:.0f} s …"):
            checks += await _check_stream(http, path, params, seconds, version)
    return checks


async def _version(http: httpx.AsyncClient) -> tuple[str, bool]:
    """The server's version ("" if unknown) and whether it has /global/health."""
    with contextlib.suppress(httpx.HTTPError, ValueError):
        health = await http.get("/global/health")
        if health.status_code == 200 and isinstance(health.json().get("version"), str):
            return str(health.json()["version"]), True
    # 1.0.x has no /global/health; its sessions carry the version.
    with contextlib.suppress(httpx.HTTPError, ValueError):
        sessions = (await http.get("/session")).json()
        if sessions and isinstance(sessions[0].get("version"), str):
            return str(sessions[0]["version"]), False
    return "", False


def _check_clock(response: httpx.Response) -> Check:
    date = response.headers.get("date")
    if not date:
        return Check("clock", WARN, "server sent no Date header")
    skew = time.time() - email.utils.parsedate_to_datetime(date).timestamp()
    # The Date header has one-second resolution.
    verdict = OK if abs(skew) < 5 else WARN
    return Check("clock", verdict, f"local clock {skew:+.1f} s from the server's")


@dataclass
class _Watch:
    """What one look at the event stream saw, in seconds since the request."""

    response: httpx.Response | None = None
    connected: float | None = None
    beats: list[float] = field(default_factory=list)
    error: str = ""


async def _check_stream(
    http: httpx.AsyncClient, path: str, params: dict[str, str], seconds: float, version: str
) -> list[Check]:
    watch = _Watch()
    with anyio.move_on_after(seconds):
        await _watch_stream(http, path, params, watch)
    if watch.response is None:
        if watch.error:
            return [Check("event stream", FAIL, watch.error)]
        return [
            Check(
                "event stream",
                WARN,
                f"no response to GET {path} within {seconds:.0f} s: OpenCode 1.0.x sends its "
                "headers only with the first event",
            )
        ]
    response = watch.response
    checks = [_headers_check(path, response)]
    content_type = response.headers.get("content-type", "")
    encoding = response.headers.get("content-encoding", "identity")
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
            OK if encoding in _IDENTITY else FAIL,
            "identity"
            if encoding in _IDENTITY
            else f"{encoding}: must be absent or identity (something between compresses the "
            "stream and holds events back; turn that off)",
        )
    )
    transfer = response.headers.get("transfer-encoding")
    length = response.headers.get("content-length")
    checks.append(
        Check(
            "transfer encoding",
            WARN if length else OK,
            f"Content-Length {length}: a stream should not have one"
            if length
            else transfer or "(none: the connection's end ends the stream)",
        )
    )
    if response.status_code != 200 or encoding not in _IDENTITY:
        return checks
    if watch.error:
        checks.append(Check("event stream", FAIL, watch.error))
    checks.append(
        Check(
            "server.connected",
            OK if watch.connected is not None else WARN,
            f"after {watch.connected * 1000:.0f} ms"
            if watch.connected is not None
            else "not received (servers before 1.0.164 do not send it on /global/event)",
        )
    )
    checks.append(_heartbeat_check(watch, seconds, version))
    return checks


def _headers_check(path: str, response: httpx.Response) -> Check:
    shown = path if path == "/global/event" else f"{path}?directory=…"
    return Check(
        "event stream",
        OK if response.status_code == 200 else FAIL,
        f"GET {shown} answered {response.status_code}",
    )


async def _watch_stream(
    http: httpx.AsyncClient, path: str, params: dict[str, str], watch: _Watch
) -> None:
    started = time.monotonic()
    try:
        async with http.stream(
            "GET",
            path,
            params=params,
            headers=STREAM_HEADERS,
            timeout=httpx.Timeout(10.0, read=None),
        ) as response:
            watch.response = response
            if response.status_code != 200:
                return
            if response.headers.get("content-encoding", "identity") not in _IDENTITY:
                return
            parser = StreamParser()
            async for chunk in response.aiter_raw():
                now = time.monotonic() - started
                for event in parser.feed(chunk):
                    if isinstance(event, ServerConnected) and watch.connected is None:
                        watch.connected = now
                    elif isinstance(event, Heartbeat):
                        watch.beats.append(now)
    except httpx.TransportError as exc:
        watch.error = f"the stream broke: {exc or type(exc).__name__}"


def _heartbeat_check(watch: _Watch, seconds: float, version: str) -> Check:
    beats = watch.beats
    expected = heartbeat_period(version) if version else None
    if len(beats) >= 2:
        period = (beats[-1] - beats[0]) / (len(beats) - 1)
        return Check("heartbeat", OK, f"every {period:.1f} s")
    if beats:
        # The server starts its heartbeat timer when the stream opens.
        since = beats[0] - (watch.connected or 0.0)
        return Check("heartbeat", OK, f"first after {since:.1f} s (one seen in {seconds:.0f} s)")
    if not version or expected is None:
        return Check(
            "heartbeat",
            WARN,
            f"none in {seconds:.0f} s: servers before 1.0.164 send none; the watchdog then "
            "relies on reconnects",
        )
    if seconds < expected * 1.1:
        return Check(
            "heartbeat",
            WARN,
            f"not measured: {version} beats every {expected:.0f} s, the window was "
            f"{seconds:.0f} s (try --seconds {expected * 1.2:.0f})",
        )
    return Check(
        "heartbeat",
        FAIL,
        f"none in {seconds:.0f} s although {version} beats every {expected:.0f} s: something "
        "between holds the stream back",
    )


def render(checks: list[Check], out: Console) -> None:
    table = Table(show_header=True, box=None, pad_edge=False)
    for column in ("", "check", "result"):
        table.add_column(column)
    for check in checks:
        mark, color = _STYLE[check.verdict]
        table.add_row(mark, check.name, f"[{color}]{escape(check.detail)}[/]")
    out.print(table)


def run_doctor(settings: Settings, seconds: float, out: Console) -> int:
    try:
        with opencode_endpoint(settings) as endpoint:
            checks = anyio.run(
                diagnose, endpoint.url, endpoint.auth, seconds, settings.password.source
            )
    except CommandError as exc:
        checks = [Check("server", FAIL, str(exc), exc.code)]
    render(checks, out)
    failed = [c for c in checks if c.verdict == FAIL]
    out.print("[red]Problems found.[/]" if failed else "[green]All checks passed.[/]")
    return failed[0].code if failed else Exit.OK
