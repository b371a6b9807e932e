"""One chaos run: a real server, `ChaosProxy` in front of it, a bridge in its own process
behind the proxy, a view following the bridge, another client prompting the server
directly, and one fault injected while two long replies stream.

What a run checks (any failure is a divergence, and says which):

- the bridge's final snapshot (`GET /api/snapshot`) equals `GET /session/{id}/message`
  for every session it holds messages of, and so does the view;
- the view's text never shrank and its cursor never went back;
- every prompt is on the server exactly once (no duplicate, none lost);
- the runtime recovered: a session created on the server directly at `t0` (the moment
  the fault ended, or happened, for instant faults) shows in the view within
  `RECOVERY_BOUND` seconds. That time is the run's recovery time.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
from anyio.abc import TaskGroup, TaskStatus

from openchamber import ids
from openchamber.server import OpenCodeServer
from openchamber.testing.model import ModelServer

from ..bridge.process import BridgeProcess
from ..bridge.view import Follower, View
from .proxy import ChaosProxy

RECOVERY_BOUND = 30.0  # seconds; the stream's backoff cap
SETTLE_TIMEOUT = 20.0
TURN_TIMEOUT = 30.0  # for the server's own turns to end (a reply takes a few seconds)
REPLY = "reply=long len=3000 chunk=6 delay=2"
MID_REPLY = 600  # characters of the bridge-sent reply the view shows before the fault
# The bridge-sent reply waits at this many deltas (6 characters each) until the fault is
# armed, so there is always reply left to damage, however fast the server streamed.
GATE_AT = MID_REPLY // 6
STALL_WATCHDOG = 3.0  # the stall cell's bridge calls 3 s of silence dead
SUSPEND_FOR = 7.0  # SIGSTOP this long (> the default 5 s wake threshold)
OUTAGE_FOR = 3.0
DRIP_BYTES = 2000

JSON = dict[str, Any]

# `OpenCodeServer.start()` sets PR_SET_PDEATHSIG, which fires when the *thread* that
# started the server exits: a server restarted from an anyio worker thread is SIGKILLed
# when that thread retires (~10 s idle). Restarts run on this thread, which never retires.
_KEEPER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chaos-server-keeper")


@dataclass(frozen=True)
class Fault:
    name: str
    what: str  # for the report
    t0: str  # what recovery is measured from
    cheap: bool = False  # in the `make test` subset
    driver_args: tuple[str, ...] = ()


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in [
        Fault(
            "reset-mid-event",
            "TCP reset in the middle of a text frame",
            "the reset",
            cheap=True,
        ),
        Fault(
            "reset-mid-utf8",
            "TCP reset after the first byte of a multi-byte UTF-8 sequence",
            "the reset",
        ),
        Fault(
            "stall",
            f"stream stops delivering, connection kept open (watchdog {STALL_WATCHDOG:g} s)",
            "the stall",
            driver_args=("--watchdog", str(STALL_WATCHDOG)),
        ),
        Fault("drip", f"{DRIP_BYTES} bytes one per HTTP chunk", "the last byte dripped"),
        Fault(
            "gzip",
            "stream cut, next 2 stream answers gzipped with Content-Encoding: gzip",
            "the first gzipped answer",
        ),
        Fault(
            "invalid-utf8",
            "0xFF in the text of 3 text frames",
            "the first corrupted frame",
            cheap=True,
        ),
        Fault(
            "malformed-json",
            "a garbage frame inserted and a text frame truncated mid-JSON",
            "the malformed frames",
            cheap=True,
        ),
        Fault("duplicate", "200 frames each sent twice", "the first duplicate"),
        Fault(
            "server-restart",
            "server killed (SIGTERM) mid-reply and started again on the same port",
            "the server listening again",
            cheap=True,
        ),
        Fault(
            "sigstop",
            f"bridge process SIGSTOP for {SUSPEND_FOR:g} s, then SIGCONT",
            "SIGCONT",
        ),
        Fault(
            "ws-drop",
            "view WebSocket dropped mid-reply, resumed with its old cursor later",
            "the view reconnecting",
            cheap=True,
        ),
        Fault(
            "outage-send",
            f"proxy resets everything for {OUTAGE_FOR:g} s; a prompt sent meanwhile",
            "the proxy accepting again",
        ),
    ]
}


@dataclass
class RunResult:
    fault: str
    version: str
    run: int
    problems: list[str] = field(default_factory=list)
    recovery: float | None = None
    settle: float | None = None
    seconds: float = 0.0
    snapshots: int = 0
    reconnects: int = 0
    # Parts whose text the view showed and the server then lost (REST holds less for good):
    # the view followed the server there, which is the one shrink allowed.
    server_lost: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> JSON:
        return {**asdict(self), "ok": self.ok}


# ---------------------------------------------------------------------- the bridge process


# ---------------------------------------------------------------------- the view


def chaos_bridge(
    url: str, password: str | None, args: tuple[str, ...] = (), log: Path | None = None
) -> BridgeProcess:
    """`tests.chaos.driver` (see there for `args`) over `url`."""
    return BridgeProcess("tests.chaos.driver", [url, *args], password, log)


class ChaosView(View):
    """A view that also notes when each session first showed up (for the recovery probe)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen_sessions: dict[str, float] = {}

    def load(self, snapshot: JSON) -> None:
        super().load(snapshot)
        now = time.monotonic()
        for info in snapshot.get("sessionList", []):
            self.seen_sessions.setdefault(info["id"], now)

    def apply(self, patch: JSON) -> None:
        super().apply(patch)
        if patch["op"] == "session.upsert":
            self.seen_sessions.setdefault(patch["sessionID"], time.monotonic())

    def reply_length(self, session_id: str) -> int:
        return sum(
            len(p.get("text") or "")
            for m in self.messages(session_id)
            if m["info"].get("role") == "assistant"
            for p in m["parts"]
            if p.get("type") == "text"
        )


class Watch:
    """The follower as a task that can be dropped and resumed; errors are kept."""

    def __init__(self, follower: Follower) -> None:
        self.follower = follower
        self.errors: list[str] = []
        self._scope: anyio.CancelScope | None = None

    async def start(self, tasks: TaskGroup) -> None:
        await tasks.start(self._run)

    async def _run(self, *, task_status: TaskStatus[None]) -> None:
        with anyio.CancelScope() as scope:
            self._scope = scope
            started = False

            def started_once(_: object = None) -> None:
                nonlocal started
                started = True
                task_status.started()

            class Status:
                def started(self, value: object = None) -> None:
                    started_once(value)

            try:
                await self.follower.follow(task_status=Status())  # type: ignore[arg-type]
            except Exception as exc:
                self.errors.append(repr(exc)[:500])
            if not started:
                task_status.started()

    def drop(self) -> None:
        if self._scope is not None:
            self._scope.cancel()


async def until(condition: Callable[[], bool], limit: float, what: str) -> None:
    """Poll a condition on state this process does not get notified of (proxy, clock)."""
    with anyio.fail_after(limit):
        while not condition():  # noqa: ASYNC110 (nothing to wait on: polled state)
            await anyio.sleep(0.01)
    del what


# ---------------------------------------------------------------------- the run


def _user_texts(messages: list[JSON]) -> list[str]:
    return [
        "".join(p.get("text", "") for p in m["parts"] if p.get("type") == "text")
        for m in messages
        if m["info"].get("role") == "user"
    ]


async def _text_lengths(direct: httpx.AsyncClient, sessions: list[str]) -> dict[str, int]:
    """The length of every text part the server holds now, by part id."""
    lengths: dict[str, int] = {}
    for sid in sessions:
        for message in (await direct.get(f"/session/{sid}/message")).json():
            for part in message["parts"]:
                if isinstance(part.get("text"), str):
                    lengths[part["id"]] = len(part["text"])
    return lengths


def _turn_over(messages: list[JSON], prompts: list[str]) -> bool:
    if not messages or sorted(_user_texts(messages)) != sorted(prompts):
        return False
    last = messages[-1]["info"]
    return last.get("role") == "assistant" and bool(last.get("time", {}).get("completed"))


class Run:
    def __init__(self, fault: Fault, server: OpenCodeServer, model: ModelServer, run: int) -> None:
        self.fault = fault
        self.server = server
        self.model = model
        self.result = RunResult(fault.name, server.version, run)
        self.tag = f"{fault.name}-{run}-{uuid.uuid4().hex[:6]}"
        self.gate = f"chaos-{self.tag}"
        self.prompts: dict[str, list[str]] = {}
        self.phase = "starting"
        self.watch: Watch | None = None

    async def execute(self) -> RunResult:
        started = time.monotonic()
        port = httpx.URL(self.server.url).port
        assert port is not None
        try:
            async with (
                ChaosProxy(port) as proxy,
                httpx.AsyncClient(
                    base_url=self.server.url, auth=self.server.auth, timeout=60
                ) as direct,
            ):
                bridge = await anyio.to_thread.run_sync(
                    chaos_bridge, proxy.url, self.server.password, self.fault.driver_args
                )
                try:
                    async with bridge.http() as http:
                        await self._scenario(proxy, bridge, http, direct)
                finally:
                    self.model.open_gate(self.gate)  # never leave the model's stream waiting
                    await anyio.to_thread.run_sync(bridge.stop)
        except Exception as exc:  # the harness itself failed: a divergence too, say which
            errors = self.watch.errors if self.watch else []
            self.result.problems.append(
                f"run failed while {self.phase}: {_leaf(exc)!r}; view errors {errors}"[:800]
            )
        self.result.seconds = round(time.monotonic() - started, 2)
        return self.result

    async def _scenario(
        self,
        proxy: ChaosProxy,
        bridge: BridgeProcess,
        http: httpx.AsyncClient,
        direct: httpx.AsyncClient,
    ) -> None:
        view = ChaosView()
        follower = Follower(bridge.url, bridge.token, view)
        watch = self.watch = Watch(follower)
        async with anyio.create_task_group() as tasks:
            self.phase = "following the bridge"
            await watch.start(tasks)
            await follower.wait_until(lambda v: v.status.get("state") == "connected")
            self.phase = "sending the first prompts"
            created = await http.post("/api/sessions", json={"title": self.tag})
            a: str = created.raise_for_status().json()["id"]
            b: str = (await direct.post("/session", json={})).raise_for_status().json()["id"]
            await self._send_bridge(
                http, a, f"{REPLY} pause={self.gate} at={GATE_AT} {self.tag}-a1"
            )
            await self._send_direct(direct, b, f"{REPLY} {self.tag}-b1")
            self.phase = "waiting for the reply to reach the view"
            assert await anyio.to_thread.run_sync(self.model.reached, self.gate, 60)
            await follower.wait_until(lambda v: v.reply_length(a) >= MID_REPLY)
            self.phase = "injecting the fault"
            t0 = await self._inject(proxy, bridge, http, direct, watch, tasks, a, b)
            self.phase = "probing recovery"
            probe = (await direct.post("/session", json={"title": f"probe {self.tag}"})).json()
            with anyio.move_on_after(RECOVERY_BOUND * 2):
                while probe["id"] not in view.seen_sessions:
                    await follower.changed()
            if probe["id"] in view.seen_sessions:
                self.result.recovery = round(view.seen_sessions[probe["id"]] - t0, 3)
                if self.result.recovery > RECOVERY_BOUND:
                    self.result.problems.append(
                        f"recovered after {self.result.recovery:.1f}s > {RECOVERY_BOUND:g}s"
                    )
            else:
                self.result.problems.append("never recovered: the probe session never showed")

            self.phase = "converging"
            await self._converge(follower, http, direct, [a, b])
            tasks.cancel_scope.cancel()
        self.result.snapshots = view.snapshots
        self.result.reconnects = view.states.count("reconnecting")
        kept = await _text_lengths(direct, [a, b])
        shrinks = []
        for part, shown, then in view.shrinks:
            if kept.get(part, 0) < shown:  # the server itself no longer has that text
                self.result.server_lost.append(f"{part}: {shown} -> {then}")
            else:
                shrinks.append((part, shown, then))
        if shrinks:
            self.result.problems.append(f"view text shrank: {shrinks[:3]}")
        if view.cursor_regressions:
            self.result.problems.append(f"view cursor went back {view.cursor_regressions}x")
        if watch.errors:
            self.result.problems.append(f"view failed: {watch.errors[:2]}")

    def release(self) -> None:
        self.model.open_gate(self.gate)

    async def _send_bridge(self, http: httpx.AsyncClient, sid: str, text: str) -> JSON:
        self.prompts.setdefault(sid, []).append(text)
        body = {"text": text, "messageID": ids.message_id()}
        sent = await http.post(f"/api/sessions/{sid}/messages", json=body)
        assert sent.status_code == 202, sent.text
        answer: JSON = sent.json()
        return answer

    async def _send_direct(self, direct: httpx.AsyncClient, sid: str, text: str) -> None:
        self.prompts.setdefault(sid, []).append(text)
        body = {"parts": [{"type": "text", "text": text}]}
        (await direct.post(f"/session/{sid}/prompt_async", json=body)).raise_for_status()

    async def _inject(
        self,
        proxy: ChaosProxy,
        bridge: BridgeProcess,
        http: httpx.AsyncClient,
        direct: httpx.AsyncClient,
        watch: Watch,
        tasks: TaskGroup,
        a: str,
        b: str,
    ) -> float:
        """Inject the fault; returns t0, the moment recovery is measured from."""
        name = self.fault.name
        spent: str | None = {
            "reset-mid-event": "reset-event",
            "reset-mid-utf8": "reset-utf8",
            "drip": "drip",
            "gzip": "gzip",
            "invalid-utf8": "invalid-utf8",
            "malformed-json": "malformed",
            "duplicate": "duplicate",
        }.get(name)
        release = self.release
        if name == "reset-mid-event":
            proxy.reset("event")
        elif name == "reset-mid-utf8":
            proxy.reset("utf8")
        elif name == "drip":
            proxy.drip(DRIP_BYTES)
        elif name == "gzip":
            proxy.gzip(2)
            await proxy.cut_streams()
        elif name == "invalid-utf8":
            proxy.corrupt_utf8(3)
        elif name == "malformed-json":
            proxy.malformed(1)
        elif name == "duplicate":
            proxy.duplicate(200)
        elif name == "stall":
            proxy.stall()
            t0 = time.monotonic()
            release()
            return t0
        elif name == "server-restart":
            await anyio.to_thread.run_sync(lambda: _KEEPER.submit(self.server.restart).result())
            release()
            t0 = time.monotonic()
            # The killed turns never finish: each session gets a follow-up that does.
            await self._send_bridge(http, a, f"{REPLY} {self.tag}-a2")
            await self._send_direct(direct, b, f"{REPLY} {self.tag}-b2")
            return t0
        elif name == "sigstop":
            os.kill(bridge.pid, signal.SIGSTOP)
            release()  # the reply streams on while the bridge stands still
            try:
                await anyio.sleep(SUSPEND_FOR)  # the fault itself: time passing while stopped
            finally:
                os.kill(bridge.pid, signal.SIGCONT)
            return time.monotonic()
        elif name == "ws-drop":
            watch.drop()
            release()
            # Away while the bridge moves on: a few hundred patches, then back.
            away = watch.follower.view.cursor or 0
            async with bridge.http() as peek:

                async def moved_on() -> bool:
                    return int((await peek.get("/api/snapshot")).json()["cursor"]) > away + 200

                await _until_async(moved_on, 60)
            t0 = time.monotonic()
            await watch.start(tasks)
            return t0
        elif name == "outage-send":
            proxy.refuse = True
            await proxy.cut_all()
            release()
            answer = await self._send_bridge(http, a, f"{REPLY} {self.tag}-a2")
            if answer.get("state") not in ("queued", "sending"):
                self.result.problems.append(f"send during outage answered {answer}")
            await self._send_direct(direct, b, f"{REPLY} {self.tag}-b2")
            await anyio.sleep(OUTAGE_FOR)  # the outage's length
            proxy.refuse = False
            return time.monotonic()
        assert spent is not None
        release()  # armed: the rest of the reply goes through the fault
        await until(lambda: proxy.spent(spent) is not None, 60, f"{name} spent")
        if name == "drip":
            await until(lambda: proxy.armed.drip <= 0, 60, "drip over")
            return time.monotonic()
        hit = proxy.spent(spent)
        assert hit is not None
        return hit

    async def _converge(
        self,
        follower: Follower,
        http: httpx.AsyncClient,
        direct: httpx.AsyncClient,
        sessions: list[str],
    ) -> None:
        """Wait for the server's turns to end, then for the bridge to equal the server."""

        async def truth(sid: str) -> list[JSON]:
            messages: list[JSON] = (await direct.get(f"/session/{sid}/message")).json()
            return messages

        with anyio.move_on_after(TURN_TIMEOUT):
            while not await self._turns_over(truth, sessions):  # noqa: ASYNC110 (REST is polled)
                await anyio.sleep(0.2)
        done = time.monotonic()
        for sid in sessions:
            messages = await truth(sid)
            if not _turn_over(messages, self.prompts.get(sid, [])):
                self.result.problems.append(
                    f"server turn of {sid} not over in {TURN_TIMEOUT:g} s: "
                    f"users {_user_texts(messages)}"
                )
        last: list[str] = []
        with anyio.move_on_after(SETTLE_TIMEOUT):
            while True:
                last = await self._differences(follower, http, truth, sessions)
                if not last:
                    self.result.settle = round(time.monotonic() - done, 3)
                    break
                with anyio.move_on_after(0.5):
                    await follower.changed()
        self.result.problems += last
        for sid in sessions:
            counts = Counter(_user_texts(await truth(sid)))
            duplicates = [t for t, n in counts.items() if n > 1]
            missing = [t for t in self.prompts.get(sid, []) if t not in counts]
            if duplicates:
                self.result.problems.append(f"duplicate user message in {sid}: {duplicates}")
            if missing:
                self.result.problems.append(f"prompt lost in {sid}: {missing}")

    async def _turns_over(
        self, truth: Callable[[str], Awaitable[list[JSON]]], sessions: list[str]
    ) -> bool:
        return all([_turn_over(await truth(s), self.prompts.get(s, [])) for s in sessions])

    async def _differences(
        self,
        follower: Follower,
        http: httpx.AsyncClient,
        truth: Callable[[str], Awaitable[list[JSON]]],
        sessions: list[str],
    ) -> list[str]:
        snapshot = (await http.get("/api/snapshot")).json()
        # Sessions listed but never opened hold no messages (they load on demand).
        held = {sid for sid, messages in snapshot["sessions"].items() if messages}
        held |= set(sessions)
        out = []
        for sid in sorted(held):
            expected = await truth(sid)
            shown = snapshot["sessions"].get(sid)
            if shown != expected:
                out.append(f"snapshot != REST for {sid}: {_diff(shown or [], expected)}")
            mine = follower.view.messages(sid)
            if sid in sessions and mine != expected:
                out.append(f"view != REST for {sid}: {_diff(mine, expected)}")
        return out


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


async def _until_async(condition: Callable[[], Awaitable[bool]], limit: float) -> None:
    with anyio.fail_after(limit):
        while not await condition():  # noqa: ASYNC110 (polled over HTTP)
            await anyio.sleep(0.05)


def _diff(shown: list[JSON], expected: list[JSON]) -> str:
    """Where two sessions part, briefly: outlines, then the first differing field."""

    def outline(messages: list[JSON]) -> list[str]:
        return [
            f"{m['info']['id'][-6:]}/{m['info'].get('role')}"
            + (f"[local {m['local']}]" if m.get("local") else "")
            for m in messages
        ]

    text = f"shown {outline(shown)} vs REST {outline(expected)}"
    for mine, theirs in zip(shown, expected, strict=False):
        if mine == theirs:
            continue
        if mine.get("info") != theirs.get("info"):
            keys = _keys(mine.get("info", {}), theirs.get("info", {}))
            return text + f"; message {theirs['info']['id'][-6:]} info differs in {keys}"
        mine_parts = {p["id"]: p for p in mine.get("parts", [])}
        their_parts = {p["id"]: p for p in theirs.get("parts", [])}
        if mine_parts.keys() != their_parts.keys():
            return text + (
                f"; message {theirs['info']['id'][-6:]} parts shown "
                f"{[p[-6:] for p in mine_parts]} vs REST {[p[-6:] for p in their_parts]}"
            )
        for pid, part in their_parts.items():
            if mine_parts[pid] != part:
                ours = mine_parts[pid]
                keys = _keys(ours, part)
                detail = ", ".join(
                    f"{k}: {_brief(ours.get(k))} vs REST {_brief(part.get(k))}" for k in keys
                )
                return text + f"; part {pid[-6:]} ({part.get('type')}) differs: {detail}"
        return text + f"; message {theirs['info']['id'][-6:]} local {mine.get('local')}"
    return text


def _keys(mine: JSON, theirs: JSON) -> list[str]:
    return sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))


def _brief(value: object) -> str:
    if isinstance(value, str):
        return f"{len(value)} chars"
    return str(value)[:120]


async def run_cell(
    fault: str, server: OpenCodeServer, model: ModelServer, runs: int
) -> list[RunResult]:
    results = []
    for number in range(runs):
        results.append(await Run(FAULTS[fault], server, model, number).execute())
    return results
