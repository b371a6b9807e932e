"""`openchamber capture`: record a server's raw `/global/event` body for `replay`.

The file is a header line (see `replay.format_header`) and the body's bytes as they came,
both with credentials masked: headers by name (Authorization, cookies…), the body line by
line through `redact`, so a capture can be attached to a bug report.
"""

from __future__ import annotations

import datetime
import gzip
import time
from pathlib import Path
from typing import BinaryIO

import anyio
import httpx
import orjson

from openchamber import __version__
from openchamber.client import OpenCodeClient
from openchamber.config import Settings
from openchamber.connect import (
    STREAM_HEADERS,
    CommandError,
    Exit,
    cancel_on_ctrl_c,
    connect,
    opencode_endpoint,
    stderr,
)
from openchamber.redact import redact
from openchamber.replay import format_header

PATH = "/global/event"


def redact_headers(headers: httpx.Headers) -> dict[str, str]:
    """The headers as a JSON object, masked by `redact`'s rules for secret-looking keys."""
    shown: dict[str, str] = orjson.loads(redact(orjson.dumps(dict(headers.items())).decode()))
    return shown


class CaptureWriter:
    """Writes a capture: header line, then the body, masked line by line."""

    def __init__(self, path: Path) -> None:
        # Closed by `close()`, which must also flush the last partial line.
        try:
            self._file: gzip.GzipFile | BinaryIO = (
                gzip.open(path, "wb")  # noqa: SIM115
                if path.name.endswith(".gz")
                else path.open("wb")
            )
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from exc
        self._pending = b""
        self.bytes = 0
        self.answered = False  # the server's response headers came

    def header(self, response: httpx.Response) -> None:
        self.answered = True
        request = response.request
        self._file.write(
            format_header(
                {
                    "url": redact(str(request.url.copy_with(query=None))),
                    "status": response.status_code,
                    "started": datetime.datetime.now(datetime.UTC).isoformat(),
                    "request_headers": redact_headers(request.headers),
                    "response_headers": redact_headers(response.headers),
                    "openchamber": __version__,
                }
            )
        )
        self._file.flush()

    def body(self, chunk: bytes) -> None:
        self.bytes += len(chunk)
        data = self._pending + chunk
        end = data.rfind(b"\n") + 1
        self._pending = data[end:]
        if end:
            self._write(data[:end])
            self._file.flush()  # a capture cut short by a kill still holds what came

    def close(self) -> None:
        self._write(self._pending)
        self._file.close()

    def _write(self, data: bytes) -> None:
        # surrogateescape: bytes that are not UTF-8 come back out unchanged.
        text = data.decode("utf-8", "surrogateescape")
        self._file.write(redact(text).encode("utf-8", "surrogateescape"))


async def _record(client: OpenCodeClient, writer: CaptureWriter, seconds: float | None) -> None:
    """Record until the deadline or the stream ends."""
    try:
        await _read(client, writer, seconds)
    except httpx.TransportError as exc:
        raise CommandError(
            f"the stream from {client.base_url} broke: {exc or type(exc).__name__}",
            Exit.UNREACHABLE,
        ) from exc


async def _read(client: OpenCodeClient, writer: CaptureWriter, seconds: float | None) -> None:
    with anyio.move_on_after(seconds if seconds is not None else float("inf")):
        async with client.http.stream(
            "GET", PATH, headers=STREAM_HEADERS, timeout=httpx.Timeout(10.0, read=None)
        ) as response:
            encoding = response.headers.get("content-encoding", "identity")
            if response.status_code != 200:
                raise CommandError(f"GET {PATH} answered {response.status_code}")
            if encoding not in ("", "identity"):
                raise CommandError(
                    f"GET {PATH} came compressed ({encoding}); see `openchamber doctor`"
                )
            writer.header(response)
            async for chunk in response.aiter_raw():
                writer.body(chunk)


async def _capture(settings: Settings, out: Path, seconds: float | None) -> int:
    writer = CaptureWriter(out)
    started = time.monotonic()
    try:
        with opencode_endpoint(settings) as endpoint:
            client = await connect(endpoint, settings)
            async with client, anyio.create_task_group() as tasks:
                tasks.start_soon(cancel_on_ctrl_c, tasks.cancel_scope)
                await _record(client, writer, seconds)
                tasks.cancel_scope.cancel()
    finally:
        writer.close()
    elapsed = time.monotonic() - started
    if not writer.answered and seconds is not None:
        raise CommandError(
            f"no answer from {PATH} in {seconds:.0f} s (OpenCode 1.0.x answers only with its "
            "first event): make something happen on the server, or capture longer"
        )
    stderr().print(f"captured {writer.bytes} bytes in {elapsed:.1f} s to {out}")
    return Exit.OK


def run_capture(settings: Settings, out: Path, seconds: float | None) -> int:
    if settings.opencode.value is None:
        raise CommandError(
            "capture needs a server: pass --opencode URL or set OPENCHAMBER_OPENCODE_URL",
            Exit.USAGE,
        )
    if seconds is not None and seconds <= 0:
        raise CommandError(f"--seconds must be positive, not {seconds}", Exit.USAGE)
    return anyio.run(_capture, settings, out, seconds)
