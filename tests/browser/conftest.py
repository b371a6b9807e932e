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
from anyio.from_thread import start_blocking_portal

from openchamber.bridge import Bridge
from openchamber.client import OpenCodeClient
from openchamber.server import PINNED_VERSIONS, OpenCodeServer, find_opencode
from openchamber.testing.model import ModelServer, opencode_config

from ..conftest import OFFLINE_ENV

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"]
POLL_MS = 50
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "browser"


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

    @property
    def url(self) -> str:
        return self.bridge.url

    @property
    def ui_url(self) -> str:
        return self.bridge.ui_url

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.bridge.token}"}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=60, **kwargs)

    def truth(self, session_id: str) -> list[dict[str, Any]]:
        """What OpenCode itself says the session holds."""
        response = httpx.get(
            f"{self.server.url}/session/{session_id}/message", auth=self.server.auth, timeout=60
        )
        messages: list[dict[str, Any]] = response.raise_for_status().json()
        return messages


@contextmanager
def running_bridge(server: OpenCodeServer) -> Iterator[RunningBridge]:
    """A bridge over `server` on its own event loop thread."""
    with start_blocking_portal() as portal:
        client = OpenCodeClient(server.url, auth=server.auth)
        bridge = Bridge(client)
        running, _ = portal.start_task(bridge.run)
        try:
            yield RunningBridge(bridge, server)
        finally:
            portal.call(bridge.stop)
            running.result(timeout=30)
            portal.call(client.aclose)


@pytest.fixture(scope="session")
def bridge(ui_opencode: OpenCodeServer) -> Iterator[RunningBridge]:
    with running_bridge(ui_opencode) as running:
        yield running


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (make setup installs Debian's chromium)")
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

    def open(self) -> None:
        self.page.goto(self.bridge.ui_url)
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
        """The UI's state holds exactly what OpenCode's REST says (no optimistic leftovers)."""
        expected = self.bridge.truth(session_id)
        self.wait_for(
            """([sid, expected]) => {
                // Key order differs between a merged store entry and REST: compare sorted.
                const canon = (v) => {
                    if (Array.isArray(v)) return `[${v.map(canon).join(",")}]`;
                    if (!v || typeof v !== "object") return JSON.stringify(v);
                    const keys = Object.keys(v).sort();
                    return `{${keys.map((k) => `${JSON.stringify(k)}:${canon(v[k])}`).join(",")}}`;
                };
                const mine = window.openchamber.state.sessions[sid] || [];
                return canon(mine) === canon(expected);
            }""",
            [session_id, normalize(expected)],
            timeout=timeout,
        )

    def screenshot(self, state: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{state}.png"
        self.page.screenshot(path=str(path), animations="disabled")
        return path


def normalize(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """REST's shape as the store keeps it: no `local` key on confirmed messages."""
    return [{"info": m["info"], "parts": m["parts"]} for m in messages]


MakeUI = Callable[..., UI]


@pytest.fixture
def make_ui(
    chromium: Any, bridge: RunningBridge, request: pytest.FixtureRequest
) -> Iterator[MakeUI]:
    """Open a fresh browser context on a bridge (the session's unless told otherwise)."""
    contexts: list[Any] = []
    name = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")

    def make(on: RunningBridge = bridge, **context_options: Any) -> UI:
        options = {"viewport": {"width": 1200, "height": 800}, **context_options}
        context = chromium.new_context(**options)
        contexts.append(context)
        return UI(context.new_page(), on, name)

    try:
        yield make
    finally:
        for context in contexts:
            context.close()


@pytest.fixture
def ui(make_ui: MakeUI) -> UI:
    return make_ui()
