"""`openchamber chat` in a real terminal (a pty, through pexpect): a reply streams in,
Ctrl-C aborts it and the chat goes on, a second Ctrl-C quits."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pexpect
import pytest

from openchamber.client import JSON, OpenCodeClient
from openchamber.server import OpenCodeServer, find_opencode
from openchamber.testing.model import ModelServer, opencode_config

from ..conftest import OFFLINE_ENV
from ..test_cli import OPENCHAMBER, cli_env
from .test_cli_real import new_session

pytestmark = pytest.mark.integration


def spawn_chat(server: OpenCodeServer, session_id: str) -> pexpect.spawn:
    env = {"OPENCODE_SERVER_PASSWORD": server.password or "", "TERM": "xterm"}
    child = pexpect.spawn(
        OPENCHAMBER[0],
        [*OPENCHAMBER[1:], "chat", "--opencode", server.url, "--session", session_id],
        env=cli_env(env),
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 200),
    )
    child.expect_exact("› ")
    return child


async def _state(server: OpenCodeServer, session_id: str) -> tuple[list[JSON], JSON | None]:
    async with OpenCodeClient(server.url, auth=server.auth) as client:
        return await client.messages(session_id), await client.session_status()


def test_ctrl_c_aborts_the_reply_and_a_second_one_quits(
    opencode: OpenCodeServer, model: ModelServer
) -> None:
    gate = f"terminal-{opencode.version}-{uuid.uuid4().hex[:8]}"
    session_id = new_session(opencode)
    child = spawn_chat(opencode, session_id)
    try:
        child.sendline(f"reply=long len=3000 chunk=10 pause={gate} at=20")
        assert model.reached(gate, 60)
        # The model holds the rest back: what the terminal shows has streamed in.
        child.expect_exact("[47]A café")
        child.sendintr()
        child.expect_exact("aborted")
        child.expect_exact("› ")
        assert child.isalive()

        messages, statuses = anyio.run(_state, opencode, session_id)
        reply = messages[-1]["info"]
        assert reply["role"] == "assistant"
        assert reply["error"]["name"] == "MessageAbortedError"
        if statuses is not None:  # 1.0.x has no status route; idle means not listed
            assert statuses.get(session_id, {"type": "idle"})["type"] == "idle"
    finally:
        model.open_gate(gate)  # whatever happened, release the model's stream

    child.sendline("reply=short")
    child.expect_exact("the model heard you.")
    child.expect_exact("› ")
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


@pytest.fixture
def asking_server(
    opencode_version: str, model: ModelServer, tmp_path: Path
) -> Iterator[OpenCodeServer]:
    """A server of its own whose project asks before every bash command."""
    project = tmp_path / "project"
    project.mkdir()
    config = opencode_config(model.base_url) | {"permission": {"bash": "ask"}}
    (project / "opencode.json").write_text(json.dumps(config))
    with OpenCodeServer(
        directory=project,
        state_dir=tmp_path / "state",
        binary=find_opencode(opencode_version),
        password=uuid.uuid4().hex,
        env=OFFLINE_ENV,
    ) as server:
        yield server


def test_permissions_are_asked_inline(asking_server: OpenCodeServer) -> None:
    server = asking_server
    child = spawn_chat(server, new_session(server))
    child.sendline("tool=bash cmd='echo allowed-once'")
    child.expect_exact("? allow")
    child.expect_exact("[r]eject:")
    child.sendline("o")
    child.expect_exact("Tool said: allowed-once")
    child.expect_exact("› ")
    child.sendline("tool=bash cmd='echo never'")
    child.expect_exact("[r]eject:")
    child.sendline("r")
    child.expect_exact("rejected")
    child.expect_exact("› ")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0

    # Without a terminal to ask in, the turn ends and says why.
    result = subprocess.run(
        [*OPENCHAMBER, "chat", "--opencode", server.url, "tool=bash cmd='echo x'"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=cli_env({"OPENCODE_SERVER_PASSWORD": server.password or ""}),
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    # 1.0.x's request names the command only, later ones the tool too.
    assert re.search(
        r"asked for permission \((bash )?echo x\); answer it in a terminal", result.stderr
    )


def test_a_refused_password_is_asked_for_in_a_terminal(opencode: OpenCodeServer) -> None:
    child = pexpect.spawn(
        OPENCHAMBER[0],
        [*OPENCHAMBER[1:], "chat", "--opencode", opencode.url, "reply=short"],
        env=cli_env({"OPENCODE_SERVER_PASSWORD": "wrong", "TERM": "xterm"}),
        encoding="utf-8",
        timeout=60,
    )
    if not opencode.version.startswith("1.0."):  # 1.0.x has no authentication: no prompt
        child.expect_exact(f"Password for {opencode.url}")
        child.sendline(opencode.password or "")
    child.expect_exact("the model heard you.")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
