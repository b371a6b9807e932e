"""The command line: replay output, exit codes, and one-line errors instead of tracebacks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from openchamber.server import free_port

from .support import CAPTURES

OPENCHAMBER = [sys.executable, "-m", "openchamber"]


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A user's environment, minus any config file of the machine's user."""
    base = {"PATH": "/usr/bin:/bin", "COLUMNS": "200", "OPENCHAMBER_CONFIG": os.devnull}
    return base | (extra or {})


def openchamber(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, with no terminal."""
    return subprocess.run(
        [*OPENCHAMBER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
        env=cli_env(env),
    )


def assert_one_line_error(
    result: subprocess.CompletedProcess[str], code: int, message: str
) -> None:
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]


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
    assert_one_line_error(openchamber("replay", str(capture)), 1, message)


def test_usage_error_exits_2() -> None:
    result = openchamber("replay")
    assert result.returncode == 2
    assert "usage:" in result.stderr


COMMANDS = ["chat", "doctor", "events", "capture", "replay", "config"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples_and_exit_codes(command: str) -> None:
    result = openchamber(command, "--help")
    assert result.returncode == 0
    assert f"openchamber {command}" in result.stdout
    assert "examples:" in result.stdout
    assert "exit codes:" in result.stdout
    assert "4    the server refused the password" in result.stdout


def test_top_level_help_lists_every_command() -> None:
    result = openchamber("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


DEAD = f"http://127.0.0.1:{free_port()}"


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (["chat", "--opencode", "localhost:4096", "hi"], {}, 2, "not a valid server URL"),
        (["doctor", "--opencode", "http://"], {}, 2, "--opencode: not a valid server URL"),
        (["events"], {}, 2, "events needs a server"),
        (["capture", "out.sse"], {}, 2, "capture needs a server"),
        (["chat", "--directory", "/no/such/dir", "hi"], {}, 2, "no such directory"),
        (["chat", "--port", "http", "hi"], {}, 2, "--port: not a port number"),
        (["chat", "hi"], {"OPENCHAMBER_PORT": "0"}, 2, "OPENCHAMBER_PORT: not a port number"),
        (["config"], {"OPENCHAMBER_CONFIG": "/no/such.toml"}, 2, "does not exist"),
        (["chat", "--opencode", DEAD, " "], {}, 2, "the prompt is empty"),
        (["chat", "--opencode", DEAD, "hi"], {}, 3, f"cannot reach {DEAD}"),
        (["events", "--opencode", DEAD], {}, 3, f"cannot reach {DEAD}"),
        (["capture", "x.sse", "--opencode", DEAD], {}, 3, f"cannot reach {DEAD}"),
        (["capture", "/no/such/dir/x.sse", "--opencode", DEAD], {}, 1, "cannot write"),
        (["capture", "x.sse", "--seconds", "0", "--opencode", DEAD], {}, 2, "--seconds"),
    ],
)
def test_bad_input_is_one_line_and_the_right_exit_code(
    tmp_path: Path, args: list[str], env: dict[str, str], code: int, message: str
) -> None:
    args = [str(tmp_path / a) if a == "x.sse" else a for a in args]
    assert_one_line_error(openchamber(*args, env=env), code, message)


def test_a_broken_config_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("port = [\n")
    result = openchamber("chat", "hi", env={"OPENCHAMBER_CONFIG": str(config)})
    assert_one_line_error(result, 2, f"config file {config} is not valid TOML")


def test_a_port_in_use_is_one_line_and_exit_3() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = openchamber("chat", "--port", str(port), "hi")
    assert_one_line_error(result, 3, f"127.0.0.1:{port} (--port)")
    assert "pick another port" in result.stderr


def test_config_shows_values_and_sources_but_never_the_password(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('opencode = "http://from-file:4096"\n')
    env = {
        "OPENCHAMBER_CONFIG": str(config),
        "OPENCHAMBER_PORT": "4100",
        "OPENCODE_SERVER_PASSWORD": "hunter2",
    }
    table = openchamber("config", "--directory", str(tmp_path), env=env)
    assert table.returncode == 0, table.stderr
    assert "hunter2" not in table.stdout
    shown = json.loads(openchamber("config", "--json", env=env).stdout)
    assert shown["opencode"] == {
        "value": "http://from-file:4096",
        "source": f"config file {config}",
    }
    assert shown["port"] == {"value": "4100", "source": "OPENCHAMBER_PORT"}
    assert shown["password"] == {"value": "set", "source": "OPENCODE_SERVER_PASSWORD"}
    assert shown["host"] == {"value": "127.0.0.1", "source": "default"}
    assert shown["config file"]["value"] == str(config)
