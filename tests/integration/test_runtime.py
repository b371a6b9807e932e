"""The runtime against real servers through a fault-injecting proxy: it reconnects, reports
its states, repairs the gap, and ends equal to REST truth."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable

import anyio
import httpx
import pytest

from openchamber.backoff import Backoff
from openchamber.client import JSON, OpenCodeClient
from openchamber.protocol import Durable, Event
from openchamber.runtime import Runtime
from openchamber.server import OpenCodeServer
from openchamber.store import Patch, Store
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

    async def wait_beyond(self, patches: int) -> None:
        """Wait (bounded) until more than `patches` patches have come."""
        await self.wait_until(lambda: self.patches > patches)


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


class CountingStore(Store):
    """A store that counts, per event id, the applications that changed something."""

    def __init__(self) -> None:
        super().__init__()
        self.applied: Counter[str] = Counter()

    def apply(self, event: Event) -> list[Patch]:
        patches = super().apply(event)
        # A durable event is counted as its inner event, which `apply` is called with too.
        if patches and event.event_id is not None and not isinstance(event, Durable):
            self.applied[event.event_id] += 1
        return patches


async def wait_for_truth(
    runtime: Runtime, recorder: Recorder, direct: OpenCodeClient, turns: dict[str, int]
) -> dict[str, list[JSON]]:
    """Wait until `turns[sid]` prompts are answered in each of those sessions, the store
    holds their messages as REST has them and every session's info as REST lists it, and
    all are idle; returns the messages of the sessions in `turns`."""

    def idle(session_id: str) -> bool:
        session = runtime.store.sessions.get(session_id)
        return session is not None and session.status.get("type") == "idle"

    def known(info: JSON) -> bool:
        session = runtime.store.sessions.get(info["id"])
        return session is not None and session.info == info and idle(info["id"])

    # Cheap first: the store itself shows the answers; then compare with the server.
    await recorder.wait_until(
        lambda: all(
            _answered(runtime.store.messages(sid)) >= n and idle(sid) for sid, n in turns.items()
        )
    )
    while True:
        seen = recorder.patches
        infos = await direct.list_sessions()
        truth = {sid: await direct.messages(sid) for sid in turns}
        if (
            all(_answered(truth[sid]) == n for sid, n in turns.items())
            and all(runtime.store.messages(sid) == truth[sid] for sid in turns)
            and all(known(i) for i in infos)
        ):
            return truth
        await recorder.wait_beyond(seen)


def _answered(messages: list[JSON]) -> int:
    """Finished replies (a scripted reply without tools is one message ending in "stop")."""
    return sum(
        1
        for m in messages
        if m["info"]["role"] == "assistant"
        and m["info"].get("finish") == "stop"
        and m["info"]["time"].get("completed")
    )


async def test_a_restarted_server_is_followed(
    launch_opencode: LaunchOpenCode, model: ModelServer, opencode_version: str
) -> None:
    server = launch_opencode(opencode_version)
    recorder = Recorder()
    store = CountingStore()
    prompt = [{"type": "text", "text": "reply=mixed len=600 chunk=var"}]
    replied: list[str] = []
    async with (
        OpenCodeClient(server.url, auth=server.auth) as client,
        OpenCodeClient(server.url, auth=server.auth) as direct,
        anyio.create_task_group() as tasks,
    ):
        runtime = Runtime(client, recorder, store)
        runtime.stream.backoff = Backoff(base=0.05, cap=0.5)  # back soon after the restart
        tasks.start_soon(runtime.run)
        await recorder.wait_until(lambda: "connected" in recorder.states)
        replied.append((await direct.create_session())["id"])
        await direct.send(replied[0], prompt)
        await wait_for_truth(runtime, recorder, direct, {replied[0]: 1})
        restart = len(recorder.states)

        async def new_session_with_a_reply() -> None:
            replied.append((await direct.create_session())["id"])
            await direct.send(replied[-1], prompt)

        def reconnected() -> bool:
            return "connected" in recorder.states[restart:]

        created: list[str] = []
        back = threading.Event()

        def sessions_back_to_back() -> None:
            """Sessions one after another, from before the runtime reconnects until well
            after, in a thread of their own so that the runtime's work does not space them
            out: 1.18 loses what is published in the moment after `server.connected`, and
            a lost `session.created` is never made good by later events."""
            after = 0
            with httpx.Client(base_url=server.url, auth=server.auth) as http:
                while after < SESSIONS_AFTER_CONNECT:
                    # A slow reconnect: do not make sessions without end (nor wait so).
                    if len(created) == SESSIONS_BEFORE_CONNECT and not back.wait(60):
                        return
                    after += back.is_set()
                    created.append(http.post("/session", json={}).raise_for_status().json()["id"])

        await anyio.to_thread.run_sync(server.restart)
        async with anyio.create_task_group() as burst:
            burst.start_soon(anyio.to_thread.run_sync, sessions_back_to_back)
            # Before the runtime is back (it waits out its backoff): a gap to repair.
            await new_session_with_a_reply()
            # And while it reconnects and repairs.
            await recorder.wait_until(reconnected)
            back.set()
            burst.start_soon(new_session_with_a_reply)
            burst.start_soon(direct.send, replied[0], prompt)
        turns = {replied[0]: 2, replied[1]: 1, replied[2]: 1}
        truth = await wait_for_truth(runtime, recorder, direct, turns)
        for sid in created:  # and every other session, once
            assert runtime.store.messages(sid) == await direct.messages(sid)
        tasks.cancel_scope.cancel()
    server.stop()
    states = recorder.states[restart:]
    assert "connected" in states[states.index("reconnecting") :]
    assert [len(truth[sid]) for sid in replied] == [4, 2, 2]
    assert {s["id"] for s in runtime.store.session_infos()} == {*replied, *created}
    if not opencode_version.startswith("1.0."):  # 1.0.x events carry no ids to count by
        assert len(store.applied) > 100
    assert max(store.applied.values(), default=1) == 1, store.applied.most_common(3)


# Made back to back after the runtime reconnected, these outlast the moment after
# `server.connected` in which 1.18 loses events (up to ~30 ms, measured). All of them stay
# below the 100 sessions 1.18 lists.
SESSIONS_AFTER_CONNECT = 20
SESSIONS_BEFORE_CONNECT = 60
