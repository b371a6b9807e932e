"""Real Chromium on the bundled UI, served by a real bridge over a real `opencode serve`.

Each pinned OpenCode version gets one server and one bridge for the session; every test
opens its own browser context (own cookie, own page) and makes its own sessions.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from openchamber.bridge import Bridge
from openchamber.client import OpenCodeClient
from openchamber.server import PINNED_VERSIONS, OpenCodeServer, find_opencode
from openchamber.testing.model import ModelServer, opencode_config

from ..conftest import OFFLINE_ENV
from ..proxy import FaultProxy

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"]
POLL_MS = 50
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "browser"
REST_POLL_S = 0.5  # how often a wait re-reads OpenCode's own answer

# In every page from its first byte: each text-length change of each reply part is checked
# against the longest this tab has shown for that part (kept in sessionStorage, so a reload
# that shows less is caught too); long tasks are recorded; `__loadId` tells a reload.
WATCH_SCRIPT = """
(() => {
  window.__loadId = Math.random();
  window.__shrinks = [];
  window.__longTasks = [];
  let storage = null;
  try {
    storage = window.sessionStorage; // about:blank has none
  } catch {}
  const shown = JSON.parse(storage?.getItem("__shownLengths") || "{}");
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) window.__longTasks.push(entry.duration);
  }).observe({ type: "longtask", buffered: true });
  new MutationObserver((records) => {
    for (const r of records) {
      // The user's own message may be edited shorter while it waits in the outbox.
      if (r.target.closest("[data-testid=message]")?.dataset.role === "user") continue;
      const part = r.target.closest("[data-part-id]").dataset.partId;
      const after = Number(r.target.dataset.textLength);
      const before = shown[part] || 0;
      if (after < before) window.__shrinks.push([part, before, after]);
      shown[part] = Math.max(before, after);
    }
    storage?.setItem("__shownLengths", JSON.stringify(shown));
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-text-length"] });
})();
"""


@pytest.fixture(scope="session")
def ui_project(tmp_path_factory: pytest.TempPathFactory, model: ModelServer) -> Path:
    """The scripted model, and `bash` that asks first: permission prompts can be tested."""
    directory = tmp_path_factory.mktemp("ui-project")
    config = opencode_config(model.base_url)
    config["permission"] = {"bash": "ask"}
    (directory / "opencode.json").write_text(json.dumps(config, indent=2))
    return directory


@pytest.fixture(scope="session", params=PINNED_VERSIONS, ids=lambda v: f"opencode-{v}")
def ui_opencode(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, ui_project: Path
) -> Iterator[OpenCodeServer]:
    version: str = request.param
    server = OpenCodeServer(
        directory=ui_project,
        state_dir=tmp_path_factory.mktemp(f"ui-opencode-{version}"),
        binary=find_opencode(version),
        password=secrets.token_urlsafe(12),
        env=OFFLINE_ENV,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class RunningBridge:
    bridge: Bridge
    server: OpenCodeServer
    portal: BlockingPortal  # the bridge's event loop
    front: str | None = None  # where browsers reach it, when not straight at the bridge

    @property
    def url(self) -> str:
        return self.front or self.bridge.url

    @property
    def ui_url(self) -> str:
        return f"{self.url}/?token={self.bridge.token}"

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.bridge.token}"}
        url = f"{self.bridge.url}{path}"
        return httpx.request(method, url, headers=headers, timeout=60, **kwargs)

    def truth(self, session_id: str) -> list[dict[str, Any]]:
        """What OpenCode itself says the session holds."""
        response = httpx.get(
            f"{self.server.url}/session/{session_id}/message", auth=self.server.auth, timeout=60
        )
        messages: list[dict[str, Any]] = response.raise_for_status().json()
        return messages

    def prompt_directly(self, session_id: str, text: str) -> None:
        """Send a prompt as another client would: to OpenCode, not through the bridge."""
        response = httpx.post(
            f"{self.server.url}/session/{session_id}/prompt_async",
            auth=self.server.auth,
            json={"parts": [{"type": "text", "text": text}]},
            timeout=60,
        )
        response.raise_for_status()


@contextmanager
def running_bridge(server: OpenCodeServer, **options: Any) -> Iterator[RunningBridge]:
    """A bridge over `server` (`options` go to `Bridge`) on its own event loop thread."""
    with start_blocking_portal() as portal:
        client = OpenCodeClient(server.url, auth=server.auth)
        bridge = Bridge(client, **options)
        running, _ = portal.start_task(bridge.run)
        try:
            yield RunningBridge(bridge, server, portal)
        finally:
            portal.call(bridge.stop)
            running.result(timeout=30)
            portal.call(client.aclose)


class SamePortProxy(FaultProxy):
    """A FaultProxy on [::1] at the bridge's own port (the bridge is on 127.0.0.1): the
    browser's Host and Origin then name the bridge, which lets them through."""

    listen_host = "::1"

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port, listen_port=target_port)


@contextmanager
def behind_proxy(running: RunningBridge) -> Iterator[tuple[RunningBridge, SamePortProxy]]:
    """The bridge as browsers reach it through a proxy that can cut every connection."""
    with running.portal.wrap_async_context_manager(SamePortProxy(running.bridge.port)) as proxy:
        yield RunningBridge(running.bridge, running.server, running.portal, proxy.url), proxy


@pytest.fixture(scope="session")
def bridge(ui_opencode: OpenCodeServer) -> Iterator[RunningBridge]:
    with running_bridge(ui_opencode) as running:
        yield running


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    # Module, not session: Playwright's sync API keeps an asyncio loop marked running in
    # this thread while it lives, and the anyio tests that follow need the thread free.
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing (make setup installs Debian's chromium)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class UI:
    """One browser page on the bridge, with the waits the tests share."""

    def __init__(self, page: Any, bridge: RunningBridge, name: str) -> None:
        self.page = page
        self.bridge = bridge
        self.name = name
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on(
            "console",
            lambda message: self.errors.append(message.text) if message.type == "error" else None,
        )

    def open(self, *, connected: bool = True) -> None:
        self.page.goto(self.bridge.ui_url)
        if connected:
            self.wait_connected()

    def wait_for(self, predicate: str, arg: Any = None, timeout: float = 60) -> Any:
        """Poll a JS function of `arg` in the page until it returns something truthy.

        Not `page.wait_for_function`: that re-runs its predicate through eval() inside the
        page, which the UI's CSP (no 'unsafe-eval') refuses. `evaluate` goes through the
        DevTools protocol, which CSP does not govern.
        """
        return self.until(lambda: self.page.evaluate(predicate, arg), timeout, predicate)

    def until(self, condition: Callable[[], Any], timeout: float = 60, what: str = "") -> Any:
        """Poll `condition` (while Playwright keeps dispatching the page's events)."""
        deadline = time.monotonic() + timeout
        while not (value := condition()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"not true within {timeout}s: {what or condition}")
            self.page.wait_for_timeout(POLL_MS)
        return value

    def assert_no_shrink(self) -> None:
        """No reply part was ever shown shorter than before (WATCH_SCRIPT)."""
        assert self.page.evaluate("window.__shrinks") == []

    def wait_connected(self, timeout: float = 30_000) -> None:
        badge = self.page.get_by_test_id("connection")
        expect(badge).to_have_attribute("data-state", "connected", timeout=timeout)

    def new_session(self) -> str:
        before = set(self.session_ids())
        self.page.get_by_test_id("new-session").click()
        session_id: str = self.wait_for(
            """(before) => {
                const ids = [...document.querySelectorAll('[data-testid=session-item]')]
                    .map((item) => item.dataset.sessionId).filter((id) => !before.includes(id));
                return ids.length ? ids[0] : null;
            }""",
            sorted(before),
        )
        return session_id

    def session_ids(self) -> list[str]:
        ids: list[str] = self.page.eval_on_selector_all(
            "[data-testid=session-item]", "items => items.map(i => i.dataset.sessionId)"
        )
        return ids

    def send(self, text: str) -> None:
        composer = self.page.get_by_test_id("composer")
        composer.fill(text)
        composer.press("Enter")

    def wait_idle(self, session_id: str, timeout: float = 90) -> None:
        """The session's turn is over, as the UI's state says."""
        self.wait_for(
            """(sid) => {
                const status = window.openchamber.state.sessionStatus[sid];
                return status !== undefined && status.type === 'idle';
            }""",
            session_id,
            timeout,
        )

    def wait_equal_to_server(self, session_id: str, timeout: float = 60) -> None:
        """The UI's state holds exactly what OpenCode's REST says (no optimistic leftovers)
        once the server's last turn is over. REST is read again while waiting: a queued
        prompt may start after the session looked idle, and the server still writes to a
        message after its turn ended."""
        deadline = time.monotonic() + timeout
        while True:
            expected = normalize(self.bridge.truth(session_id))
            if turn_over(expected) and self.poll(SAME_AS_SERVER, [session_id, expected]):
                return
            if time.monotonic() > deadline:
                shown = self.page.evaluate(
                    "(sid) => window.openchamber.state.sessions[sid]", session_id
                )
                raise TimeoutError(
                    f"not equal to the server within {timeout}s:\n{shown}\n{expected}"
                )

    def poll(self, predicate: str, arg: Any, seconds: float = REST_POLL_S) -> bool:
        """Whether `predicate(arg)` comes true in the page within `seconds`."""
        deadline = time.monotonic() + seconds
        while not self.page.evaluate(predicate, arg):
            if time.monotonic() > deadline:
                return False
            self.page.wait_for_timeout(POLL_MS)
        return True

    def screenshot(self, state: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{state}.png"
        self.page.screenshot(path=str(path), animations="disabled")
        return path


SAME_AS_SERVER = """([sid, expected]) => {
    // Key order differs between a merged store entry and REST: compare sorted.
    const canon = (v) => {
        if (Array.isArray(v)) return `[${v.map(canon).join(",")}]`;
        if (!v || typeof v !== "object") return JSON.stringify(v);
        const keys = Object.keys(v).sort();
        return `{${keys.map((k) => `${JSON.stringify(k)}:${canon(v[k])}`).join(",")}}`;
    };
    const mine = window.openchamber.state.sessions[sid] || [];
    return canon(mine) === canon(expected);
}"""


def normalize(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """REST's shape as the store keeps it: no `local` key on confirmed messages."""
    return [{"info": m["info"], "parts": m["parts"]} for m in messages]


def turn_over(messages: list[dict[str, Any]]) -> bool:
    last = messages[-1]["info"] if messages else {}
    return last.get("role") == "assistant" and bool(last.get("time", {}).get("completed"))


MakeUI = Callable[..., UI]


@pytest.fixture
def open_ui(chromium: Any, request: pytest.FixtureRequest) -> Iterator[MakeUI]:
    """Open a fresh browser context (own cookie, own page) on the bridge `on`."""
    contexts: list[Any] = []
    name = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")

    def make(on: RunningBridge, **context_options: Any) -> UI:
        options = {"viewport": {"width": 1200, "height": 800}, **context_options}
        context = chromium.new_context(**options)
        context.add_init_script(WATCH_SCRIPT)
        contexts.append(context)
        return UI(context.new_page(), on, name)

    try:
        yield make
    finally:
        for context in contexts:
            context.close()


@pytest.fixture
def make_ui(open_ui: MakeUI, bridge: RunningBridge) -> MakeUI:
    """`open_ui` on the session's bridge unless told otherwise."""

    def make(on: RunningBridge = bridge, **context_options: Any) -> UI:
        return open_ui(on, **context_options)

    return make


@pytest.fixture
def ui(make_ui: MakeUI) -> UI:
    return make_ui()
