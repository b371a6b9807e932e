"""The bundled chat UI in real Chromium, over a real bridge and real OpenCode servers."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from openchamber.server import OpenCodeServer

from .conftest import UI, MakeUI, RunningBridge, running_bridge

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def routed(make_ui: MakeUI) -> tuple[UI, list[Any]]:
    """A view whose event sockets pass through Playwright, so the test can cut them."""
    ui = make_ui()
    sockets: list[Any] = []

    def handle(ws: Any) -> None:
        sockets.append(ws)
        ws.connect_to_server()

    ui.page.route_web_socket(re.compile(r"/api/events"), handle)
    return ui, sockets


def trace_lines(ui: UI) -> list[str]:
    """Turn on the UI's stream trace and collect its console lines."""
    lines: list[str] = []
    ui.page.on("console", lambda m: lines.append(m.text) if "[STREAM-TRACE]" in m.text else None)
    ui.page.add_init_script('localStorage.setItem("openchamber_stream_debug", "1")')
    return lines


def assistant_text(ui: UI) -> Any:
    return ui.page.locator("[data-role=assistant] [data-part-type=text] [data-testid=part-text]")


def test_a_markdown_reply_streams_into_a_new_session(ui: UI) -> None:
    ui.open()
    ui.screenshot("empty")
    session_id = ui.new_session()
    ui.send("reply=markdown please")
    # The user's message is on screen before the server has said anything about it.
    expect(ui.page.locator("[data-role=user]")).to_have_count(1)
    expect(ui.page.locator("[data-role=user] [data-testid=part-text]")).to_have_text(
        "reply=markdown please"
    )
    reply = assistant_text(ui)
    expect(reply.locator("h1")).to_have_text("Scripted document", timeout=60_000)
    ui.wait_idle(session_id)
    ui.wait_equal_to_server(session_id)
    expect(reply.locator("strong")).to_have_text("bold")
    expect(reply.locator("pre code.language-python .tok-keyword").first).to_have_text("def")
    expect(reply.locator("table td")).to_have_count(4)
    expect(reply.locator("blockquote")).to_contain_text("A quote to finish.")
    expect(ui.page.get_by_test_id("abort")).to_be_hidden()
    item = ui.page.locator(f"[data-testid=session-item][data-session-id='{session_id}']")
    expect(item).to_have_attribute("data-status", "idle")
    ui.screenshot("markdown-reply")
    ui.assert_no_shrink()
    assert ui.errors == []


def test_a_long_streamed_reply_never_shrinks_and_ends_equal_to_the_server(ui: UI) -> None:
    ui.open()
    session_id = ui.new_session()
    ui.send("reply=long len=20000 chunk=1")
    ui.wait_idle(session_id, timeout=240)
    ui.wait_equal_to_server(session_id)
    server_text = next(
        p["text"]
        for m in ui.bridge.truth(session_id)
        if m["info"]["role"] == "assistant"
        for p in m["parts"]
        if p["type"] == "text"
    )
    # The rendered part caught up with the whole text (lengths in UTF-16 units, as JS counts).
    length = len(server_text.encode("utf-16-le")) // 2
    expect(assistant_text(ui)).to_have_attribute("data-text-length", str(length))
    ui.assert_no_shrink()
    long_tasks = ui.page.evaluate("window.__longTasks")
    # One generous bound: a shared 2-core CI box stretches tasks; a per-delta re-render
    # of the whole list would take seconds here, not a few dozen milliseconds.
    assert max(long_tasks, default=0) < 250, long_tasks
    ui.screenshot("long-reply")
    assert ui.errors == []


def test_hostile_model_output_is_shown_as_text(ui: UI) -> None:
    ui.open()
    session_id = ui.new_session()
    attack = (
        "reply=echo <script>window.__pwned = 1</script> "
        '<img src=x onerror="window.__pwned = 2"> '
        "[click](javascript:window.__pwned=3) [fine](https://example.com/)"
    )
    ui.send(attack)
    ui.wait_idle(session_id)
    reply = assistant_text(ui)
    expect(reply).to_contain_text("<script>window.__pwned = 1</script>")
    expect(reply).to_contain_text('<img src=x onerror="window.__pwned = 2">')
    messages = ui.page.locator("#message-list")
    expect(messages.locator("script, img, iframe")).to_have_count(0)
    expect(messages.locator("a[href^='javascript']")).to_have_count(0)
    link = reply.locator("a", has_text="fine")
    expect(link).to_have_attribute("href", "https://example.com/")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    assert ui.page.evaluate("window.__pwned") is None
    ui.screenshot("hostile")
    ui.assert_no_shrink()


def test_a_tool_call_asks_permission_and_shows_its_result(ui: UI) -> None:
    ui.open()
    session_id = ui.new_session()
    ui.send('tool=bash cmd="echo tool-output-marker"')
    prompt = ui.page.get_by_test_id("permission")
    expect(prompt).to_be_visible(timeout=60_000)
    item = ui.page.locator(f"[data-testid=session-item][data-session-id='{session_id}']")
    expect(item).to_have_attribute("data-attention", "true")
    expect(ui.page.get_by_test_id("abort")).to_be_visible()
    ui.screenshot("permission")
    ui.page.get_by_test_id("permission-once").click()
    expect(prompt).to_have_count(0, timeout=30_000)
    tool = ui.page.locator("[data-part-type=tool]")
    expect(tool).to_have_attribute("data-status", "completed", timeout=60_000)
    expect(tool.locator(".tool-name")).to_have_text("bash")
    tool.locator("summary").click()
    expect(tool.locator(".tool-body")).to_contain_text("tool-output-marker")
    ui.wait_idle(session_id)
    expect(assistant_text(ui).last).to_contain_text("Tool said:")
    ui.screenshot("tool")
    ui.assert_no_shrink()


def test_stop_ends_a_running_turn(ui: UI, bridge: RunningBridge) -> None:
    ui.open()
    session_id = ui.new_session()
    ui.send("reply=long len=200000 delay=20")
    abort = ui.page.get_by_test_id("abort")
    expect(abort).to_be_visible(timeout=60_000)
    expect(assistant_text(ui)).not_to_have_attribute("data-text-length", "0", timeout=60_000)
    abort.click()
    ui.wait_idle(session_id)
    expect(abort).to_be_hidden()
    ui.screenshot("stopped")
    ui.assert_no_shrink()


def test_a_dropped_socket_resumes_from_its_cursor_mid_reply(routed: tuple[UI, list[Any]]) -> None:
    ui, sockets = routed
    frames = trace_lines(ui)
    ui.open()
    session_id = ui.new_session()
    ui.send("reply=long len=6000 chunk=4 delay=5")
    expect(assistant_text(ui)).not_to_have_attribute("data-text-length", "0", timeout=60_000)
    sockets[0].close(code=1011, reason="test drops the view")
    # The view reconnects on its own, naming the cursor it had, and goes on from there.
    ui.until(lambda: len(sockets) > 1, what="a second socket")
    assert "cursor=" not in sockets[0].url
    resumed = re.search(r"[?&]cursor=(\d+)", sockets[1].url)
    assert resumed, sockets[1].url
    ui.wait_for("(n) => window.openchamber.cursor() > n", int(resumed[1]))
    ui.wait_idle(session_id, timeout=120)
    ui.wait_equal_to_server(session_id)
    ui.assert_no_shrink()
    # Resumed by patches: the only snapshot is the first socket's.
    assert sum("type=snapshot" in line for line in frames) == 1, frames[:3]
    assert ui.errors == []


def test_a_refused_cookie_shows_auth_failed(routed: tuple[UI, list[Any]]) -> None:
    ui, sockets = routed
    ui.open()
    ui.page.context.clear_cookies()
    sockets[-1].close(code=1011, reason="test drops the view")
    badge = ui.page.get_by_test_id("connection")
    expect(badge).to_have_attribute("data-state", "auth-failed", timeout=30_000)
    expect(badge).to_have_text("auth failed")
    ui.screenshot("auth-failed")


def test_older_messages_load_when_scrolled_to_the_top(
    make_ui: MakeUI, ui_opencode: OpenCodeServer
) -> None:
    # A history made before the bridge starts: its store knows the session, not its messages.
    auth = ui_opencode.auth
    session = httpx.post(f"{ui_opencode.url}/session", auth=auth, json={}).json()
    for n in range(45):
        response = httpx.post(  # noReply: a message without a turn, so history is quick
            f"{ui_opencode.url}/session/{session['id']}/message",
            auth=auth,
            json={"noReply": True, "parts": [{"type": "text", "text": f"history {n}"}]},
            timeout=60,
        )
        response.raise_for_status()
    with running_bridge(ui_opencode) as fresh:
        ui = make_ui(on=fresh)
        ui.open()
        ui.page.locator(f"[data-session-id='{session['id']}'] .session-open").click()
        older_messages_load(ui)


def older_messages_load(ui: UI) -> None:
    messages = ui.page.locator("[data-testid=message]")
    expect(messages).to_have_count(30, timeout=30_000)
    expect(messages.last).to_contain_text("history 44")
    ui.page.locator("#messages").evaluate("el => { el.scrollTop = 0; }")
    expect(messages).to_have_count(45, timeout=30_000)
    expect(messages.first).to_contain_text("history 0")
    expect(ui.page.get_by_test_id("older-status")).to_have_text("Beginning of the conversation")
    ui.screenshot("older")


def test_keyboard_and_a_narrow_window(ui: UI) -> None:
    ui.page.set_viewport_size({"width": 420, "height": 760})
    ui.open()
    sidebar = ui.page.locator("#sidebar")
    expect(sidebar).to_be_hidden()
    toggle = ui.page.get_by_role("button", name="Sessions")
    toggle.click()
    expect(sidebar).to_be_visible()
    ui.screenshot("narrow-sessions")
    ui.page.get_by_test_id("new-session").click()
    expect(sidebar).to_be_hidden()  # picking a session closes the list
    composer = ui.page.get_by_test_id("composer")
    expect(composer).to_be_focused()
    composer.press_sequentially("first line")
    composer.press("Shift+Enter")
    composer.press_sequentially("second line")
    expect(composer).to_have_value("first line\nsecond line")
    composer.press("Tab")
    expect(ui.page.get_by_test_id("send")).to_be_focused()
    ui.page.keyboard.press("Enter")
    expect(ui.page.locator("[data-role=user] [data-testid=part-text]")).to_have_text(
        "first line\nsecond line"
    )
    expect(composer).to_have_value("")
    expect(assistant_text(ui)).not_to_have_attribute("data-text-length", "0", timeout=60_000)
    ui.screenshot("narrow-thread")
    ui.assert_no_shrink()


def test_a_reply_finished_while_hidden_notifies(ui: UI) -> None:
    ui.page.add_init_script(
        """
        window.__notifications = [];
        Object.defineProperty(document, "hidden", { get: () => window.__hidden === true });
        window.Notification = class {
            static permission = "default";
            static async requestPermission() {
                return (window.Notification.permission = "granted");
            }
            constructor(title, options) { window.__notifications.push([title, options.body]); }
        };
        """
    )
    ui.open()
    notify = ui.page.get_by_test_id("notify")
    expect(notify).to_be_visible()
    assert ui.page.evaluate("window.Notification.permission") == "default"  # never asked on load
    notify.click()
    expect(notify).to_be_hidden()
    session_id = ui.new_session()
    ui.page.evaluate("window.__hidden = true")
    ui.send("reply=short")
    ui.wait_idle(session_id)
    ui.wait_for("() => window.__notifications.length === 1")
    assert ui.page.evaluate("window.__notifications")[0][0] == "Reply finished"
    ui.assert_no_shrink()


def test_stream_trace_logs_every_socket_message(ui: UI) -> None:
    lines = trace_lines(ui)
    ui.open()
    session_id = ui.new_session()
    ui.send("reply=short")
    ui.wait_idle(session_id)
    assert lines[0].startswith("[STREAM-TRACE] type=snapshot cursor=")
    assert any(re.search(r"type=patches cursor=\d+ patches=\d+ prt_\w+:text=\d+", x) for x in lines)
    ui.assert_no_shrink()
