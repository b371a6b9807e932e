"""The command line: replay output, exit codes, and one-line errors instead of tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .support import CAPTURES


def openchamber(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openchamber", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )


@pytest.mark.parametrize("version", ["1.0.152", "1.18.33"])
def test_replay_json_equals_truth(version: str) -> None:
    result = openchamber("replay", str(CAPTURES / f"opencode-{version}.sse.gz"), "--json")
    assert result.returncode == 0, result.stderr
    truth = json.loads((CAPTURES / f"opencode-{version}.truth.json").read_text())
    assert json.loads(result.stdout) == {"sessions": truth}


def test_replay_summary_reports_sessions_and_anomalies() -> None:
    result = openchamber("replay", str(CAPTURES / "opencode-1.18.33.sse.gz"))
    assert result.returncode == 0
    assert "events replayed" in result.stdout
    assert "anomalies" in result.stdout


def test_replay_reports_malformed_frames(tmp_path: Path) -> None:
    capture = tmp_path / "broken.sse"
    capture.write_bytes(
        b'data: {"payload": {"type": "session.status", "properties": {"sessionID": "ses_1",'
        b' "status": {"type": "busy"}}}}\n\n'
        b'data: {"payload": {"type": "message.updated", "token": "s3cret"\n\n'
    )
    result = openchamber("replay", str(capture))
    assert result.returncode == 0
    assert "malformed frame (json)" in result.stdout
    assert "s3cret" not in result.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "No such file"), (b"\x1f\x8bnot gzip", "not valid gzip")],
)
def test_unreadable_capture_is_one_line_and_exit_1(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    capture = tmp_path / "capture.sse.gz"
    if content is not None:
        capture.write_bytes(content)
    result = openchamber("replay", str(capture))
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_usage_error_exits_2() -> None:
    result = openchamber("replay")
    assert result.returncode == 2
    assert "usage:" in result.stderr
