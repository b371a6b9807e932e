"""`openchamber chat PROMPT` across a cut connection: it says so on stderr, reconnects,
and what it prints is still exactly what the server stored."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import anyio
import httpx
import pytest
from anyio.abc import ByteReceiveStream

from openchamber.server import OpenCodeServer
from openchamber.testing.model import ModelServer

from ..proxy import FaultProxy
from ..support import Payload, stream_with_session
from ..test_cli import OPENCHAMBER, cli_env
from .test_cli_real import reply_texts, rest_messages

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Collected:
    """A process's output stream, read as it comes; lets a test wait for some text."""

    def __init__(self) -> None:
        self.data = b""
        self._changed = anyio.Event()

    async def read(self, stream: ByteReceiveStream) -> None:
        async for chunk in stream:
            self.data += chunk
            self._changed.set()
            self._changed = anyio.Event()

    async def wait_for(self, text: bytes) -> None:
        with anyio.fail_after(60):
            while text not in self.data:
                await self._changed.wait()


def _past(position: int) -> Callable[[Payload], bool]:
    """A delta of the reply showing a position marker at or past `position`."""

    def check(payload: Payload) -> bool:
        properties = payload.get("properties")  # `sync` twins have none
        delta = properties.get("delta") if isinstance(properties, dict) else None
        markers = re.findall(r"\[(\d+)\]", delta) if isinstance(delta, str) else []
        return any(int(m) >= position for m in markers)

    return check


async def test_chat_survives_a_cut_stream(opencode: OpenCodeServer, model: ModelServer) -> None:
    gate = f"cut-{opencode.version}-{uuid.uuid4().hex[:8]}"
    prompt = f"reply=long len=1500 chunk=10 delay=20 pause={gate} at=30"
    witness, session_id = await anyio.to_thread.run_sync(stream_with_session, opencode)
    port = httpx.URL(opencode.url).port
    assert port is not None
    stdout, stderr = Collected(), Collected()
    async with FaultProxy(port) as proxy, anyio.create_task_group() as tasks:
        process = await anyio.open_process(
            [*OPENCHAMBER, "chat", "--opencode", proxy.url, "--session", session_id, prompt],
            env=cli_env({"OPENCODE_SERVER_PASSWORD": opencode.password or ""}),
        )
        assert process.stdout is not None
        assert process.stderr is not None
        tasks.start_soon(stdout.read, process.stdout)
        tasks.start_soon(stderr.read, process.stderr)
        assert await anyio.to_thread.run_sync(model.reached, gate, 60)

        # Down while the reply goes on: deltas are lost, and then it streams again.
        proxy.refuse = True
        await proxy.cut()
        model.open_gate(gate)
        await anyio.to_thread.run_sync(witness.wait_for, _past(500))
        proxy.refuse = False
        await stderr.wait_for(b"reconnected")
        code = await process.wait()
        tasks.cancel_scope.cancel()
    witness.close()
    assert code == 0, stderr.data.decode()
    assert b"connection:" in stderr.data
    texts = reply_texts(await anyio.to_thread.run_sync(rest_messages, opencode, session_id), prompt)
    assert stdout.data.decode() == "\n".join(texts) + "\n"
