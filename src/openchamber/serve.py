"""`openchamber serve`, `desktop` and `demo`: the bridge and its UI, started for a person.

The OpenCode server is the configured one, or an embedded `opencode serve` (the demo's
is configured for the offline scripted model). A server that is down at start is no
error: the UI shows the cache and queues what is sent until the server answers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import subprocess
import tempfile
import threading
import webbrowser
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import orjson

from openchamber.bridge import Bridge, BridgeError
from openchamber.cache import Cache, CacheError, default_path
from openchamber.client import OpenCodeClient
from openchamber.config import Setting, Settings
from openchamber.connect import CommandError, Endpoint, Exit, connect, opencode_endpoint, stderr
from openchamber.server import OFFLINE_ENV, OpenCodeLaunchError, OpenCodeServer

Opener = Callable[[str], None]  # shows the UI at a URL


@dataclasses.dataclass(frozen=True)
class BridgeOptions:
    host: str = "127.0.0.1"
    port: int = 0
    token: str | None = None
    cache: bool = True


def run_serve(settings: Settings, options: BridgeOptions, opener: Opener | None) -> int:
    """Serve until Ctrl-C; `opener` (if any) shows the UI once it listens."""
    # --host/--port are the bridge's here: an embedded server takes a free port.
    embedded = dataclasses.replace(settings, port=Setting(None, "default"))
    with opencode_endpoint(embedded) as endpoint:
        anyio.run(_serve, endpoint, settings, options, opener)
    return Exit.OK


async def _serve(
    endpoint: Endpoint, settings: Settings, options: BridgeOptions, opener: Opener | None
) -> None:
    client = await _client(endpoint, settings)
    async with client:
        cache = _open_cache(endpoint) if options.cache else None
        try:
            bridge = Bridge(
                client, host=options.host, port=options.port, token=options.token, cache=cache
            )
        except BridgeError as exc:
            raise CommandError(f"{exc}; pick another with --port", Exit.FAILED) from exc
        # Stdout carries the URL (scripts read it); the token in it is the key to the UI.
        print(f"openchamber: the chat UI is at {bridge.ui_url}", flush=True)
        if opener is not None:
            threading.Thread(target=opener, args=(bridge.ui_url,), daemon=True).start()
        try:
            await bridge.run()
        finally:
            if cache is not None:
                cache.close()


async def _client(endpoint: Endpoint, settings: Settings) -> OpenCodeClient:
    """A client for the server; one that is down now is used all the same (see above)."""
    try:
        return await connect(endpoint, settings)
    except CommandError as exc:
        if exc.code != Exit.UNREACHABLE:
            raise
        stderr().print(
            f"[yellow]openchamber:[/] {exc}; showing what is cached, sending when it is back"
        )
        return OpenCodeClient(endpoint.url, auth=endpoint.auth, directory=endpoint.directory)


def cache_identity(endpoint: Endpoint) -> str:
    """Which server a cache belongs to: an embedded one is known by its directory alone
    (its port changes with every launch; its data does not)."""
    where = "embedded" if endpoint.embedded else endpoint.url
    return f"{where}|{endpoint.directory or ''}"


def _open_cache(endpoint: Endpoint) -> Cache | None:
    identity = cache_identity(endpoint)
    try:
        cache = Cache(default_path(identity), identity)
    except CacheError as exc:
        stderr().print(f"[yellow]openchamber:[/] {exc}; running without a cache")
        return None
    if cache.notice:
        stderr().print(f"[yellow]openchamber:[/] {cache.notice}")
    return cache


# ---------------------------------------------------------------------------- openers


def open_in_browser(url: str) -> None:
    if not webbrowser.open(url):
        stderr().print("openchamber: no browser found; open the URL above yourself")


def open_desktop_window(url: str) -> None:
    """A window of its own: pywebview when installed, else a browser in app mode."""
    browser = _app_mode_browser()
    if browser is not None:
        subprocess.Popen(
            [browser, f"--app={url}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    else:
        open_in_browser(url)


def _app_mode_browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "microsoft-edge"):
        found = shutil.which(name)
        if found:
            return found
    return None


def run_desktop(settings: Settings, options: BridgeOptions) -> int:
    try:
        import webview  # type: ignore[import-not-found,unused-ignore]  # the `desktop` extra
    except ImportError:
        return run_serve(settings, options, open_desktop_window)
    # pywebview's loop must own the main thread: the bridge runs beside it.
    ready: list[str] = []
    failure: list[BaseException] = []
    shown = threading.Event()

    def show(url: str) -> None:
        ready.append(url)
        shown.set()

    def serve() -> None:
        try:
            run_serve(settings, options, show)
        except BaseException as exc:  # reported on the main thread
            failure.append(exc)
        finally:
            shown.set()

    threading.Thread(target=serve, daemon=True).start()
    shown.wait()
    if failure:
        raise failure[0]
    webview.create_window("openchamber", ready[0])
    webview.start()
    return Exit.OK


# ---------------------------------------------------------------------------- demo


@contextlib.contextmanager
def demo_server() -> Iterator[OpenCodeServer]:
    """The scripted model and an `opencode serve` set up for it, in a throwaway project."""
    from openchamber.testing.model import ModelServer, opencode_config

    with ModelServer() as model, tempfile.TemporaryDirectory(prefix="openchamber-demo-") as tmp:
        project = Path(tmp) / "project"
        project.mkdir()
        (project / "opencode.json").write_text(
            orjson.dumps(opencode_config(model.base_url)).decode()
        )
        (project / "README.md").write_text(
            "# A demo project\n\nThe model here is scripted: try `reply=markdown` or "
            "`reply=long len=5000 chunk=5 delay=2`.\n"
        )
        try:
            with OpenCodeServer(
                directory=project, state_dir=Path(tmp) / "state", env=OFFLINE_ENV
            ) as server:
                yield server
        except OpenCodeLaunchError as exc:
            raise CommandError(f"the demo's opencode serve: {exc}", Exit.UNREACHABLE) from exc


def run_demo(settings: Settings, options: BridgeOptions, opener: Opener | None) -> int:
    with demo_server() as server:
        pointed = dataclasses.replace(
            settings,
            opencode=Setting(server.url, "demo"),
            directory=Setting(server.directory, "demo"),
            password=Setting(None, "demo"),
        )
        return run_serve(pointed, dataclasses.replace(options, cache=False), opener)
