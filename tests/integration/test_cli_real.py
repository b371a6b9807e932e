"""The command line against real servers: doctor, chat with a prompt, events, capture."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import pytest

from openchamber.client import JSON, OpenCodeClient
from openchamber.replay import capture_header
from openchamber.server import OpenCodeServer, find_opencode, free_port

from ..conftest import OFFLINE_ENV
from ..support import session_idle, stream_with_session
from ..test_cli import OPENCHAMBER, assert_one_line_error, cli_env, openchamber
from .gzip_proxy import GzipProxy

pytestmark = pytest.mark.integration


def password_env(password: str | None) -> dict[str, str]:
    return {"OPENCODE_SERVER_PASSWORD": password} if password is not None else {}


def doctor(url: str, password: str | None) -> subprocess.CompletedProcess[str]:
    return openchamber("doctor", "--opencode", url, "--seconds", "1", env=password_env(password))


def new_session(server: OpenCodeServer) -> str:
    created = httpx.post(f"{server.url}/session", json={}, auth=server.auth)
    return str(created.raise_for_status().json()["id"])


def rest_messages(server: OpenCodeServer, session_id: str) -> list[JSON]:
    async def fetch() -> list[JSON]:
        async with OpenCodeClient(server.url, auth=server.auth) as client:
            return await client.messages(session_id)

    return anyio.run(fetch)


def wait_until(condition: Callable[[], bool], timeout: float = 60) -> None:
    """Poll `condition` (a file another process writes) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(0.05)  # polling interval, not a synchronization


# ---------------------------------------------------------------------------- doctor


def test_doctor_passes_on_a_healthy_server(opencode: OpenCodeServer) -> None:
    # 1.0.x reports its version only on sessions, so make sure there is one.
    new_session(opencode)
    result = doctor(opencode.url, opencode.password)
    assert result.returncode == 0, result.stdout + result.stderr
    assert opencode.version in result.stdout
    assert "All checks passed." in result.stdout


def _line(output: str, check: str) -> str:
    return next(line for line in output.splitlines() if f" {check} " in line)


def test_doctor_names_a_wrong_password(opencode: OpenCodeServer) -> None:
    result = doctor(opencode.url, "wrong")
    assert "Traceback" not in result.stderr
    if opencode.version.startswith("1.0."):
        # 1.0.x has no authentication: any password is accepted.
        assert result.returncode == 0, result.stdout
        return
    assert result.returncode == 4
    assert "✘" in _line(result.stdout, "auth")
    assert "password refused" in _line(result.stdout, "auth")


def test_doctor_names_a_dead_port() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = doctor(url, None)
    assert result.returncode == 3
    assert f"cannot connect to {url}" in _line(result.stdout, "reachable")
    assert "Traceback" not in result.stderr


def test_doctor_names_a_proxy_that_compresses_the_stream(opencode: OpenCodeServer) -> None:
    with GzipProxy(opencode.url) as proxy:
        result = doctor(proxy.url, opencode.password)
    assert "Traceback" not in result.stderr
    assert result.returncode == 1, result.stdout
    line = _line(result.stdout, "content encoding")
    assert "✘" in line
    assert "gzip: must be absent or identity" in line


# ---------------------------------------------------------------------------- chat


def chat(
    server: OpenCodeServer, *args: str, password: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    """`chat` with the output as bytes: a reply's \\r\\n must reach the test as sent."""
    return subprocess.run(
        [*OPENCHAMBER, "chat", "--opencode", server.url, *args],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        env=cli_env(password_env(password or server.password)),
        timeout=120,
        check=False,
    )


def reply_texts(messages: list[JSON], user_text: str) -> list[str]:
    """The text parts the server stored for the reply to the prompt `user_text`."""
    user = next(
        m
        for m in messages
        if m["info"]["role"] == "user"
        and any(p.get("text") == user_text for p in m["parts"] if p["type"] == "text")
    )
    return [
        part["text"]
        for message in messages
        if message["info"]["role"] == "assistant"
        and message["info"].get("parentID") == user["info"]["id"]
        for part in message["parts"]
        if part["type"] == "text" and part.get("text") and not part.get("synthetic")
    ]


@pytest.mark.parametrize(
    "prompt",
    ["reply=short", "reply=mixed len=700 chunk=var", "tool=bash cmd='echo from-a-tool'"],
    ids=["short", "mixed", "tool"],
)
def test_chat_prompt_prints_the_reply_as_the_server_stored_it(
    opencode: OpenCodeServer, prompt: str
) -> None:
    session_id = new_session(opencode)
    result = chat(opencode, "--session", session_id, prompt)
    assert result.returncode == 0, result.stderr.decode()
    texts = reply_texts(rest_messages(opencode, session_id), prompt)
    assert texts
    assert result.stdout.decode() == "\n".join(texts) + "\n"
    if prompt.startswith("tool="):
        assert b"bash" in result.stderr  # the tool call is shown, beside the reply


def test_chat_without_session_starts_one(opencode: OpenCodeServer) -> None:
    result = chat(opencode, "reply=short")
    assert result.returncode == 0, result.stderr.decode()
    assert b"the model heard you" in result.stdout


def test_chat_without_a_server_starts_an_embedded_one(
    opencode_version: str, project_dir: Path, tmp_path: Path
) -> None:
    # The embedded server uses the user's OpenCode dirs: point them somewhere harmless.
    dirs = ("DATA", "CONFIG", "CACHE", "STATE")
    home = {f"XDG_{d}_HOME": str(tmp_path / d.lower()) for d in dirs}
    env = OFFLINE_ENV | home | {"OPENCHAMBER_OPENCODE_BIN": str(find_opencode(opencode_version))}
    result = subprocess.run(
        [*OPENCHAMBER, "chat", "reply=short"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd=project_dir,  # its opencode.json points at the scripted model
        env=cli_env(env),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "the model heard you" in result.stdout


def test_chat_exits_non_zero_when_the_turn_fails(opencode: OpenCodeServer) -> None:
    result = chat(opencode, "--session", new_session(opencode), "error=chunk at=1")
    assert result.returncode == 1, result.stderr.decode()
    assert b"scripted failure" in result.stderr
    assert b"Traceback" not in result.stderr


def test_chat_names_an_unknown_session(opencode: OpenCodeServer) -> None:
    result = chat(opencode, "--session", "ses_doesnotexist", "hi")
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert "unknown session 'ses_doesnotexist'" in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert "Traceback" not in stderr


def test_chat_with_a_wrong_password_exits_4(opencode: OpenCodeServer) -> None:
    result = chat(opencode, "hi", password="wrong")
    if opencode.version.startswith("1.0."):
        assert result.returncode == 0, result.stderr  # 1.0.x has no authentication at all
        return
    assert_one_line_error(
        subprocess.CompletedProcess(result.args, result.returncode, "", result.stderr.decode()),
        4,
        "refused the credentials",
    )


# ---------------------------------------------------------------------------- events


class Running:
    """A CLI process whose stdout lines are collected as they come."""

    def __init__(self, *args: str, password: str | None) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [*OPENCHAMBER, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli_env(password_env(password)),
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            with self._changed:
                self.lines.append(raw.decode())
                self._changed.notify_all()

    def has(self, text: str) -> bool:
        with self._changed:
            return any(text in line for line in self.lines)

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C; the exit code and stderr."""
        self.process.send_signal(signal.SIGINT)
        _, stderr = self.process.communicate(timeout=30)
        return self.process.returncode, stderr.decode()


def trigger_until(server: OpenCodeServer, seen: Callable[[str], bool], timeout: int = 30) -> str:
    """Make sessions until one shows up in `seen`: proof the reader's stream is live."""
    for _ in range(timeout):
        session_id = new_session(server)
        try:
            wait_until(lambda sid=session_id: seen(sid), timeout=1)
        except TimeoutError:
            continue
        return session_id
    raise TimeoutError("the stream never showed a new session")


@pytest.mark.parametrize("raw", [False, True], ids=["normalized", "raw"])
def test_events_prints_json_lines_and_stops_cleanly_on_ctrl_c(
    opencode: OpenCodeServer, raw: bool
) -> None:
    wire = {"session.created", "session.updated"}
    kind = ["--raw", *(f"--type={t}" for t in wire)] if raw else ["--type", "SessionUpdated"]
    events = Running("events", "--opencode", opencode.url, *kind, password=opencode.password)
    session_id = trigger_until(opencode, events.has)
    code, stderr = events.interrupt()
    assert code == 0, stderr
    assert "Traceback" not in stderr
    documents = [json.loads(line) for line in events.lines]
    assert documents
    if raw:
        assert {_payload(d)["type"] for d in documents} <= wire
    else:
        assert {d["event"] for d in documents} == {"SessionUpdated"}
        assert any(d["session_id"] == session_id for d in documents)


def _payload(document: JSON) -> JSON:
    payload: JSON = document.get("payload", document)
    return payload


# ---------------------------------------------------------------------------- capture


def test_capture_then_replay_round_trips(opencode: OpenCodeServer, tmp_path: Path) -> None:
    out = tmp_path / "capture.sse.gz"
    capture = Running("capture", str(out), "--opencode", opencode.url, password=opencode.password)

    def captured() -> bytes:
        # Flushed per chunk: what is there so far decompresses (zcat warns of the rest).
        return subprocess.run(["zcat", "-f", str(out)], capture_output=True, check=False).stdout

    session_id = trigger_until(opencode, lambda sid: out.exists() and sid.encode() in captured())
    prompt = "reply=mixed len=400 chunk=var"
    witness, _ = stream_with_session(opencode)
    httpx.post(
        f"{opencode.url}/session/{session_id}/prompt_async",
        json={"parts": [{"type": "text", "text": prompt}]},
        auth=opencode.auth,
    ).raise_for_status()
    witness.wait_for(session_idle(session_id))
    witness.close()
    idle = f'"type":"session.idle","properties":{{"sessionID":"{session_id}"'.encode()
    wait_until(lambda: idle in captured().replace(b" ", b""))
    code, stderr = capture.interrupt()
    assert code == 0, stderr
    assert "captured" in stderr

    data = captured()
    assert opencode.password is not None
    assert opencode.password.encode() not in data
    replayed = openchamber("replay", str(out), "--json")
    assert replayed.returncode == 0, replayed.stderr
    sessions = json.loads(replayed.stdout)["sessions"]
    assert sessions[session_id] == rest_messages(opencode, session_id)

    header = capture_header(data)
    assert header is not None, data[:200]
    assert header["url"] == f"{opencode.url}/global/event"
    assert header["request_headers"]["authorization"] == "***"
    assert header["response_headers"]["content-type"].startswith("text/event-stream")
    summary = openchamber("replay", str(out))
    assert "text/event-stream" in summary.stdout
