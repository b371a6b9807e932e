"""The runtime against real servers through a fault-injecting proxy: it reconnects, reports
its states, repairs the gap, and ends equal to REST truth."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import anyio
import httpx
import pytest

from openchamber.client import OpenCodeClient
from openchamber.runtime import Runtime
from openchamber.server import OpenCodeServer
from openchamber.store import Patch
from openchamber.stream import Watchdog
from openchamber.testing.model import ModelServer

from ..conftest import LaunchOpenCode
from ..proxy import FaultProxy
from ..support import RawStream, session_idle, stream_with_session

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Recorder:
    """The runtime's patch sink: keeps states and lets a test wait for a condition."""

    def __init__(self) -> None:
        self.states: list[str] = []
        self.patches = 0
        self._changed = anyio.Event()

    async def __call__(self, patches: list[Patch]) -> None:
        for patch in patches:
            if patch["op"] == "connection":
                self.states.append(patch["status"]["state"])
        self.patches += len(patches)
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait (bounded) until `condition()` holds after some patch."""
        with anyio.fail_after(60):
            while not condition():
                await self._changed.wait()


async def test_gap_while_disconnected_is_repaired(
    opencode: OpenCodeServer, model: ModelServer
) -> None:
    gate = f"gap-{opencode.version}-{uuid.uuid4().hex[:8]}"
    prompt = f"reply=long len=3000 chunk=10 pause={gate} at=100"
    port = httpx.URL(opencode.url).port
    assert port is not None
    recorder = Recorder()
    async with FaultProxy(port) as proxy, anyio.create_task_group() as tasks:
        client = OpenCodeClient(proxy.url, auth=opencode.auth)
        runtime = Runtime(client, recorder)
        tasks.start_soon(runtime.run)
        session = await client.create_session()
        sid = session["id"]
        await recorder.wait_until(lambda: "connected" in recorder.states)
        await client.send(sid, [{"type": "text", "text": prompt}])
        assert await anyio.to_thread.run_sync(model.reached, gate, 60)
        await recorder.wait_until(
            lambda: max(runtime.store.text_lengths().values(), default=0) >= 1000
        )

        # Cut the stream, keep it down while the rest of the reply is produced.
        proxy.refuse = True
        await proxy.cut()
        witness = RawStream(opencode)
        await anyio.to_thread.run_sync(
            witness.open_with,
            lambda: httpx.post(f"{opencode.url}/session", json={}, auth=opencode.auth),
        )
        model.open_gate(gate)
        await anyio.to_thread.run_sync(witness.wait_for, session_idle(sid))
        witness.close()
        proxy.refuse = False

        async with httpx.AsyncClient(base_url=opencode.url, auth=opencode.auth) as direct:
            truth = (await direct.get(f"/session/{sid}/message")).json()
        await recorder.wait_until(
            lambda: (
                runtime.store.messages(sid) == truth
                and runtime.store.sessions[sid].status["type"] == "idle"
            )
        )
        tasks.cancel_scope.cancel()
        await client.aclose()
    assert "reconnecting" in recorder.states
    assert recorder.states.count("connected") >= 2


def _longest(runtime: Runtime) -> int:
    return max(runtime.store.text_lengths().values(), default=0)


async def test_wrong_password_stops_with_auth_failed(opencode: OpenCodeServer) -> None:
    recorder = Recorder()
    async with OpenCodeClient(opencode.url, auth=("opencode", "wrong")) as client:
        runtime = Runtime(client, recorder)
        if opencode.version.startswith("1.0."):
            # 1.0.x has no authentication: any password connects.
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(runtime.run)
                await recorder.wait_until(lambda: "connected" in recorder.states)
                tasks.cancel_scope.cancel()
            return
        with anyio.fail_after(30):
            await runtime.run()  # returns: no reconnect loop against a refused password
    assert recorder.states[-1] == "auth-failed"
    assert "reconnecting" not in recorder.states


async def test_a_send_cut_before_its_answer_makes_one_message(
    opencode: OpenCodeServer, model: ModelServer
) -> None:
    port = httpx.URL(opencode.url).port
    assert port is not None
    witness, sid = await anyio.to_thread.run_sync(stream_with_session, opencode)
    async with FaultProxy(port) as proxy, OpenCodeClient(proxy.url, auth=opencode.auth) as client:
        proxy.cut_next_response = True  # the server gets the prompt; we never hear back
        message_id = await client.send(sid, [{"type": "text", "text": "once only"}])
        assert not proxy.cut_next_response, "the answer to the send was cut"
    await anyio.to_thread.run_sync(witness.wait_for, session_idle(sid))
    witness.close()
    async with httpx.AsyncClient(base_url=opencode.url, auth=opencode.auth) as direct:
        user = (await direct.get(f"/session/{sid}/message/{message_id}")).json()
        messages = (await direct.get(f"/session/{sid}/message")).json()
    assert [p["text"] for p in user["parts"] if p["type"] == "text"] == ["once only"]
    assert sum(1 for m in messages if m["info"]["role"] == "user") == 1


async def test_a_silent_connection_is_declared_stale_and_replaced(
    opencode: OpenCodeServer,
) -> None:
    port = httpx.URL(opencode.url).port
    assert port is not None
    recorder = Recorder()
    async with FaultProxy(port) as proxy, anyio.create_task_group() as tasks:
        client = OpenCodeClient(proxy.url, auth=opencode.auth)
        runtime = Runtime(client, recorder)
        runtime.stream.watchdog = Watchdog(assumed_period=1.0, factor=2.0)
        tasks.start_soon(runtime.run)
        await recorder.wait_until(lambda: "connected" in recorder.states)
        proxy.stall()
        await recorder.wait_until(lambda: recorder.states.count("connected") >= 2)
        tasks.cancel_scope.cancel()
        await client.aclose()
    assert recorder.states.index("stale") < len(recorder.states) - 1
    assert proxy.connections >= 2


async def test_a_password_change_ends_in_auth_failed(
    launch_opencode: LaunchOpenCode, opencode_version: str
) -> None:
    server = launch_opencode(opencode_version)
    recorder = Recorder()
    async with OpenCodeClient(server.url, auth=server.auth) as client:
        runtime = Runtime(client, recorder)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(runtime.run)
            await recorder.wait_until(lambda: "connected" in recorder.states)
            server.password = "changed-" + (server.password or "")
            await anyio.to_thread.run_sync(server.restart)
            if opencode_version.startswith("1.0."):
                # No authentication on 1.0.x: the runtime simply reconnects.
                await recorder.wait_until(lambda: recorder.states.count("connected") >= 2)
                tasks.cancel_scope.cancel()
            else:
                await recorder.wait_until(lambda: "auth-failed" in recorder.states)
    server.stop()
    if not opencode_version.startswith("1.0."):
        assert recorder.states[-1] == "auth-failed"  # and run() returned: no hot loop
