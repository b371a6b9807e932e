"""The chat UI through what real pages go through: sleep, a connection the server side
drops, a reload, another client on the same session, and pages that may not get in.

Every reply here stops at a model gate first, so the disruption lands mid-reply for sure;
every test ends with the page equal to OpenCode's REST truth, without a reload (unless it
is the reload test) and without a reply ever shown shorter than a moment before.
"""

from __future__ import annotations

import http.server
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from playwright.sync_api import expect

from openchamber.server import OpenCodeServer
from openchamber.testing.model import ModelServer

from .conftest import UI, MakeUI, RunningBridge, behind_proxy, running_bridge, turn_over

pytestmark = [pytest.mark.browser, pytest.mark.integration]

PING_S = 1.0  # the sleep tests' bridge: a WebSocket keepalive of a second
REST_POLL_S = 0.2


def assistant_text(ui: UI) -> Any:
    return ui.page.locator("[data-role=assistant] [data-part-type=text] [data-testid=part-text]")


def gated_reply(model: ModelServer, words: str = "") -> tuple[str, str]:
    """A long streamed reply that waits at a gate of its own after 40 deltas."""
    gate = f"gate-{secrets.token_hex(4)}"
    return gate, f"reply=long len=4000 chunk=8 delay=2 pause={gate} at=40 {words}".strip()


def wait_rest(server: RunningBridge, session_id: str, replies: int, timeout: float = 120) -> None:
    """Until OpenCode says `replies` assistant turns of the session are complete (read from
    REST, not the page: the page may be asleep)."""
    deadline = time.monotonic() + timeout
    while True:
        messages = server.truth(session_id)
        done = [
            m
            for m in messages
            if m["info"]["role"] == "assistant" and m["info"].get("time", {}).get("completed")
        ]
        if len(done) >= replies and turn_over(messages):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{replies} replies not complete within {timeout}s")
        time.sleep(REST_POLL_S)


def shows_partial_reply(ui: UI, model: ModelServer, gate: str) -> None:
    assert model.reached(gate, timeout=60)
    expect(assistant_text(ui)).not_to_have_attribute("data-text-length", "0", timeout=30_000)


# ------------------------------------------------------------------ sleep


@pytest.fixture(scope="module")
def quick_ping(ui_opencode: OpenCodeServer) -> Iterator[RunningBridge]:
    """A bridge that drops a view which has not answered its ping within about 2 s."""
    with running_bridge(ui_opencode, ws_ping_interval=PING_S) as running:
        yield running


def browser_pids(browser: Any, kind: str) -> set[int]:
    """The browser's processes of one type ("renderer", "network.mojom.NetworkService"...)."""
    cdp = browser.new_browser_cdp_session()
    try:
        info = cdp.send("SystemInfo.getProcessInfo")
    finally:
        cdp.detach()
    return {p["id"] for p in info["processInfo"] if p["type"] == kind}


@contextmanager
def stopped_processes(pids: set[int]) -> Iterator[None]:
    """SIGSTOP: the processes do nothing at all, timers included, until SIGCONT."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


@contextmanager
def debugger_paused(ui: UI) -> Iterator[None]:
    """The page's JavaScript halted in the debugger: no timer, no socket event runs."""
    cdp = ui.page.context.new_cdp_session(ui.page)
    paused: list[Any] = []
    cdp.on("Debugger.paused", lambda event: paused.append(event))
    cdp.send("Debugger.enable")
    cdp.send("Debugger.pause")  # takes hold at the next script to run (a timer: within 1 s)
    try:
        ui.until(lambda: paused, timeout=30, what="the debugger paused the page")
        yield
    finally:
        cdp.send("Debugger.resume")
        cdp.send("Debugger.disable")
        cdp.detach()


@pytest.mark.parametrize("how", ["sigstop", "debugger"])
def test_a_page_asleep_through_replies_shows_them_whole_on_waking(
    how: str, chromium: Any, open_ui: MakeUI, quick_ping: RunningBridge, model: ModelServer
) -> None:
    ui = open_ui(quick_ping)
    sockets: list[Any] = []
    ui.page.on("websocket", lambda ws: sockets.append(ws))
    ui.open()
    load_id = ui.page.evaluate("window.__loadId")
    # Every renderer (CDP does not say which is the page's; this test is alone in the
    # browser) and, as when the machine sleeps, the network process too: it, not the page,
    # answers the bridge's pings, which now go unanswered, so the bridge drops the view.
    asleep = browser_pids(chromium, "renderer") | browser_pids(
        chromium, "network.mojom.NetworkService"
    )
    session_id = ui.new_session()
    gate, prompt = gated_reply(model)
    ui.send(prompt)
    shows_partial_reply(ui, model, gate)

    # The debugger halts only the page's script: its socket stays up, news waits in it.
    suspend = stopped_processes(asleep) if how == "sigstop" else debugger_paused(ui)
    with suspend:
        since = time.monotonic()
        model.open_gate(gate)  # the rest of the reply streams while the page sleeps
        wait_rest(quick_ping, session_id, replies=1)
        # A whole turn that starts and ends during the sleep (sent by another client).
        quick_ping.api(
            "POST", f"/api/sessions/{session_id}/messages", json={"text": "reply=mixed len=500"}
        ).raise_for_status()
        wait_rest(quick_ping, session_id, replies=2)
        # Asleep well past the keepalive: ping, unanswered timeout, and then some.
        while time.monotonic() - since < 4 * PING_S:
            time.sleep(REST_POLL_S)

    ui.wait_equal_to_server(session_id)
    # Stopped, the view was dropped (maybe after all the news was in its socket's buffers,
    # so it may show everything first) and connects again; halted, it kept its socket.
    if how == "sigstop":
        ui.until(lambda: len(sockets) == 2, what="the dropped view connected again")
    assert len(sockets) == (2 if how == "sigstop" else 1), sockets
    assert ui.page.evaluate("window.__loadId") == load_id  # woke up, was not reloaded
    expect(assistant_text(ui)).to_have_count(2)
    ui.assert_no_shrink()
    ui.screenshot(f"woke-{how}")
    assert ui.errors == []


# ------------------------------------------------------------------ dropped, reloaded


def test_a_connection_cut_on_the_server_side_mid_reply_resumes(
    open_ui: MakeUI, bridge: RunningBridge, model: ModelServer
) -> None:
    with behind_proxy(bridge) as (front, proxy):
        ui = open_ui(front)
        sockets: list[Any] = []
        ui.page.on("websocket", lambda ws: sockets.append(ws))
        ui.open()
        load_id = ui.page.evaluate("window.__loadId")
        session_id = ui.new_session()
        gate, prompt = gated_reply(model)
        ui.send(prompt)
        shows_partial_reply(ui, model, gate)
        bridge.portal.call(proxy.cut)  # every connection, both sides, as a network failure
        model.open_gate(gate)
        ui.until(lambda: len(sockets) > 1, what="the view connected again")
        ui.wait_idle(session_id, timeout=120)
        ui.wait_equal_to_server(session_id)
        assert ui.page.evaluate("window.__loadId") == load_id
        ui.assert_no_shrink()
        ui.screenshot("cut-resumed")
        assert ui.errors == []


def test_a_reload_mid_reply_shows_the_whole_reply(ui: UI, model: ModelServer) -> None:
    ui.open()
    session_id = ui.new_session()
    gate, prompt = gated_reply(model)
    ui.send(prompt)
    shows_partial_reply(ui, model, gate)
    load_id = ui.page.evaluate("window.__loadId")
    ui.page.reload()
    model.open_gate(gate)  # the reply goes on while the page loads again
    ui.wait_connected()
    assert ui.page.evaluate("window.__loadId") != load_id
    ui.wait_idle(session_id, timeout=120)
    ui.wait_equal_to_server(session_id)
    ui.assert_no_shrink()  # across the reload too: the lengths shown live in sessionStorage
    ui.screenshot("reloaded")
    assert ui.errors == []


def test_a_prompt_from_another_client_appears_live(
    ui: UI, bridge: RunningBridge, model: ModelServer
) -> None:
    ui.open()
    session_id = ui.new_session()
    gate, prompt = gated_reply(model, "from another client")
    bridge.prompt_directly(session_id, prompt)
    expect(ui.page.locator("[data-role=user] [data-testid=part-text]")).to_have_text(
        prompt, timeout=60_000
    )
    # Live: part of the reply is on screen while the turn is held mid-way.
    shows_partial_reply(ui, model, gate)
    expect(ui.page.get_by_test_id("abort")).to_be_visible()
    ui.screenshot("another-client")
    model.open_gate(gate)
    ui.wait_idle(session_id, timeout=120)
    ui.wait_equal_to_server(session_id)
    ui.assert_no_shrink()
    assert ui.errors == []


# ------------------------------------------------------------------ who gets in


def test_a_wrong_token_or_host_gets_403_in_the_browser(ui: UI, bridge: RunningBridge) -> None:
    port, token = bridge.bridge.port, bridge.bridge.token
    response = ui.page.goto(f"{bridge.url}/?token=wrong-{token}")
    assert response is not None
    assert response.status == 403
    expect(ui.page.locator("body")).to_contain_text("missing or wrong token")
    ui.screenshot("403-token")
    # A name that resolves to loopback but is not the bridge's (as a DNS-rebinding page's).
    response = ui.page.goto(f"http://rebound.localhost:{port}/?token={token}")
    assert response is not None
    assert response.status == 403
    expect(ui.page.locator("body")).to_contain_text("is not this bridge")
    ui.screenshot("403-host")


@contextmanager
def foreign_page_server() -> Iterator[str]:
    """Another web server on the loopback host (its pages are another origin)."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><title>foreign</title><p>another site</p>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_page_of_another_origin_cannot_use_the_bridge(ui: UI, bridge: RunningBridge) -> None:
    ui.open()  # this browser holds the bridge's cookie, which goes to any port of the host
    cdp = ui.page.context.new_cdp_session(ui.page)
    answers: dict[str, int] = {}  # what reached the bridge and what it said, as CDP sees it
    cdp.on(
        "Network.responseReceived",
        lambda e: answers.setdefault(e["response"]["url"], e["response"]["status"]),
    )
    cdp.send("Network.enable")
    sessions_before = bridge.api("GET", "/api/sessions").json()
    with foreign_page_server() as foreign:
        ui.page.goto(foreign)
        outcome = ui.page.evaluate(
            """async (bridge) => {
                const outcome = (r) => `${r.type} ${r.status}`;
                const refused = (e) => `refused: ${e.name}`;
                const read = await fetch(`${bridge}/api/snapshot`, { credentials: "include" })
                    .then(outcome, refused);
                // Writing blind, as a form would: no preflight, and the cookie goes along.
                const write = await fetch(`${bridge}/api/sessions`, {
                    method: "POST", mode: "no-cors", credentials: "include",
                    headers: { "Content-Type": "text/plain" }, body: '{"title": "forged"}',
                }).then(outcome, refused);
                const socket = await new Promise((resolve) => {
                    const ws = new WebSocket(`${bridge.replace("http", "ws")}/api/events`);
                    ws.onopen = () => resolve("open");
                    ws.onclose = (event) => resolve(`closed ${event.code}`);
                });
                return [read, write, socket];
            }""",
            bridge.url,
        )
        ui.screenshot("foreign-origin")
    # Read: CORS keeps the answer away; written: the bridge refused it (the page cannot
    # tell, CDP can); the socket's handshake was refused.
    assert outcome == ["refused: TypeError", "opaque 0", "closed 1006"]
    assert answers[f"{bridge.url}/api/sessions"] == 403
    assert bridge.api("GET", "/api/sessions").json() == sessions_before
