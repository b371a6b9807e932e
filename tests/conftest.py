"""Fixtures shared by every test: real OpenCode servers and the scripted model behind them."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from openchamber.server import OFFLINE_ENV, PINNED_VERSIONS, OpenCodeServer, find_opencode
from openchamber.testing.model import ModelServer, opencode_config


@pytest.fixture(scope="session")
def model() -> Iterator[ModelServer]:
    with ModelServer() as server:
        yield server


@pytest.fixture(scope="session")
def project_dir(tmp_path_factory: pytest.TempPathFactory, model: ModelServer) -> Path:
    """A project directory whose opencode.json points OpenCode at the scripted model."""
    directory = tmp_path_factory.mktemp("project")
    config = opencode_config(model.base_url)
    (directory / "opencode.json").write_text(json.dumps(config, indent=2))
    return directory


LaunchOpenCode = Callable[..., OpenCodeServer]


@contextmanager
def _launcher(
    tmp_path_factory: pytest.TempPathFactory, project_dir: Path
) -> Iterator[LaunchOpenCode]:
    """Start real `opencode serve` processes; each is stopped when this ends."""
    started: list[OpenCodeServer] = []

    def launch(version: str, **options: object) -> OpenCodeServer:
        server = OpenCodeServer(
            directory=project_dir,
            state_dir=tmp_path_factory.mktemp(f"opencode-{version}"),
            binary=find_opencode(version),
            password=secrets.token_urlsafe(12),
            env=OFFLINE_ENV,
            **options,  # type: ignore[arg-type]
        )
        started.append(server)
        server.start()
        return server

    try:
        yield launch
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="session")
def opencode_launcher(
    tmp_path_factory: pytest.TempPathFactory, project_dir: Path
) -> Iterator[LaunchOpenCode]:
    """For servers shared by many tests (session or module fixtures): they live to the end."""
    with _launcher(tmp_path_factory, project_dir) as launch:
        yield launch


@pytest.fixture
def launch_opencode(
    tmp_path_factory: pytest.TempPathFactory, project_dir: Path
) -> Iterator[LaunchOpenCode]:
    """For a test's own servers (to stop, restart, break): stopped when the test ends, so
    a long run does not pile up idle servers that eat the machine's two cores."""
    with _launcher(tmp_path_factory, project_dir) as launch:
        yield launch


@pytest.fixture(scope="session", params=PINNED_VERSIONS, ids=lambda v: f"opencode-{v}")
def opencode(request: pytest.FixtureRequest, opencode_launcher: LaunchOpenCode) -> OpenCodeServer:
    """A shared real server per pinned version; tests make their own sessions on it."""
    version: str = request.param
    server = opencode_launcher(version)
    assert server.version == version, server.log_text
    return server


@pytest.fixture(params=PINNED_VERSIONS, ids=lambda v: f"opencode-{v}")
def opencode_version(request: pytest.FixtureRequest) -> str:
    """Each pinned version, for tests that launch (and break) servers of their own."""
    version: str = request.param
    return version
