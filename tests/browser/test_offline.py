"""Offline and restart, as the user sees it: the cached history at once, marked offline and
not yet confirmed; messages written meanwhile queued (editable, cancellable); and, once
OpenCode is back, each delivered once, in order, with its reply streaming in."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from openchamber.cache import Cache

from ..conftest import LaunchOpenCode
from .conftest import SAME_AS_SERVER, UI, MakeUI, normalize, running_bridge

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def user_texts(messages: list[dict[str, Any]]) -> list[str]:
    """The text of each user message (the server writes a message before its parts)."""
    return [
        "".join(p.get("text", "") for p in m["parts"] if p["type"] == "text")
        for m in messages
        if m["info"]["role"] == "user"
    ]


def edit(ui: UI, message: Any, text: str) -> None:
    message.get_by_test_id("edit-queued").click()
    ui.page.get_by_test_id("edit-text").fill(text)
    ui.page.get_by_test_id("edit-save").click()


def test_a_restart_while_offline_shows_the_cache_and_delivers_the_queue_once(
    opencode_version: str, launch_opencode: LaunchOpenCode, open_ui: MakeUI, tmp_path: Path
) -> None:
    server = launch_opencode(opencode_version)
    cache_path = tmp_path / "cache.db"

    # A first run makes a history, which the cache keeps.
    cache = Cache(cache_path, server.url)
    with running_bridge(server, cache=cache) as first:
        ui = open_ui(first)
        ui.open()
        session_id = ui.new_session()
        ui.send("reply=short history")
        ui.wait_idle(session_id)
        ui.wait_equal_to_server(session_id)
        history = first.truth(session_id)
        ui.page.close()
    cache.close()
    server.stop()

    # openchamber starts again while OpenCode is down.
    cache = Cache(cache_path, server.url)
    with running_bridge(server, cache=cache) as second:
        ui = open_ui(second)
        ui.open(connected=False)
        page = ui.page
        expect(page.get_by_test_id("offline")).to_be_visible()
        expect(page.get_by_test_id("unconfirmed")).to_be_visible()
        expect(page.locator(".app")).to_have_attribute("data-confirmed", "false")
        assert ui.poll(SAME_AS_SERVER, [session_id, normalize(history)])  # the cache, at once
        ui.screenshot("offline-cached")

        users = page.locator("[data-role=user]")
        for text in ("reply=short one", "reply=short two", "reply=short three"):
            ui.send(text)
        expect(users).to_have_count(4)
        # The oldest is tried again and again (sending, then queued); the others wait.
        expect(users.nth(1)).to_have_attribute("data-local", re.compile("^(queued|sending)$"))
        for waiting in (users.nth(2), users.nth(3)):
            expect(waiting).to_have_attribute("data-local", "queued")
            expect(waiting.locator(".local-queued")).to_have_text("queued")
        ui.screenshot("queued")

        edit(ui, users.nth(2), "reply=short two, edited")
        expect(users.nth(2).get_by_test_id("part-text")).to_have_text("reply=short two, edited")
        users.nth(3).get_by_test_id("cancel-queued").click()
        expect(users).to_have_count(3)

        # One more, whose edit is held back until it has gone out: the bridge says 409.
        ui.send("reply=short four")
        expect(users.nth(3)).to_have_attribute("data-local", "queued")
        held: list[Any] = []
        page.route("**/api/outbox/*", lambda route: held.append(route))
        users.nth(3).get_by_test_id("edit-queued").click()
        page.get_by_test_id("edit-text").fill("reply=short four, too late")
        ui.screenshot("editing")
        page.get_by_test_id("edit-save").click()
        ui.until(lambda: held, what="the edit on its way")

        server.restart()  # back on the same address
        ui.wait_connected(timeout=90_000)
        expect(page.get_by_test_id("offline")).to_be_hidden()
        expect(page.get_by_test_id("unconfirmed")).to_be_hidden(timeout=30_000)
        expected = ["reply=short history", "reply=short one", "reply=short two, edited"]
        expected.append("reply=short four")
        ui.until(lambda: user_texts(second.truth(session_id)) == expected, timeout=120)
        held[0].continue_()
        expect(page.locator("#toast")).to_contain_text("already on its way")
        ui.wait_equal_to_server(session_id, timeout=120)
        expect(page.locator("[data-local]")).to_have_count(0)
        ui.assert_no_shrink()
        ui.screenshot("delivered")
        # The browser logs the refused edit's 409; nothing else went wrong.
        assert [e for e in ui.errors if "409" not in e] == []
    cache.close()

    # Delivered once each, in order (those that waited under new ids, see Outbox._rekey).
    messages = second.truth(session_id)
    assert user_texts(messages) == expected
    assert len({m["info"]["id"] for m in messages}) == len(messages)
    replies = [m for m in messages if m["info"]["role"] == "assistant"]
    assert len(replies) == len(expected)


def test_the_oldest_queued_message_can_be_edited_between_attempts(
    opencode_version: str, launch_opencode: LaunchOpenCode, open_ui: MakeUI
) -> None:
    server = launch_opencode(opencode_version)
    with running_bridge(server) as running:
        ui = open_ui(running)
        ui.open()
        ui.new_session()
        server.stop()
        ui.send("reply=short first")
        message = ui.page.locator("[data-role=user]")
        # Tried once and failed: it shows queued again, with why, and offers an edit.
        expect(message.locator(".local-queued")).to_have_text("queued", timeout=60_000)
        edit(ui, message, "reply=short first, edited")
        expect(message.get_by_test_id("part-text")).to_have_text("reply=short first, edited")
