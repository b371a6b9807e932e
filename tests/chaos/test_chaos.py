"""The chaos matrix: every fault, on every pinned OpenCode version, N runs each (see
`scenario.py` for what a run does and checks).

`make test` runs the cheap subset once per cell; `make chaos` runs every fault ten times
(`OPENCHAMBER_CHAOS=full`, `OPENCHAMBER_CHAOS_RUNS`) and writes each run's result to
`OPENCHAMBER_CHAOS_RESULTS` (JSON lines), from which `python -m tests.chaos.report`
renders docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from openchamber.server import PINNED_VERSIONS, OpenCodeServer
from openchamber.testing.model import ModelServer

from ..conftest import LaunchOpenCode
from .scenario import FAULTS, RunResult, run_cell

FULL = os.environ.get("OPENCHAMBER_CHAOS") == "full"
RUNS = int(os.environ.get("OPENCHAMBER_CHAOS_RUNS", "10" if FULL else "1"))
ONLY = [f for f in os.environ.get("OPENCHAMBER_CHAOS_FAULTS", "").split(",") if f]
CELLS = ONLY or [name for name, fault in FAULTS.items() if FULL or fault.cheap]

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module", params=PINNED_VERSIONS, ids=lambda v: f"opencode-{v}")
def chaos_server(
    request: pytest.FixtureRequest, opencode_launcher: LaunchOpenCode
) -> OpenCodeServer:
    """A server of its own per version: the restart cell restarts it."""
    version: str = request.param
    return opencode_launcher(version)


def record(results: list[RunResult]) -> None:
    target = os.environ.get("OPENCHAMBER_CHAOS_RESULTS")
    if not target:
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as sink:
        for result in results:
            sink.write(json.dumps(result.to_json()) + "\n")


@pytest.mark.timeout(0)
@pytest.mark.parametrize("fault", CELLS)
async def test_fault(fault: str, chaos_server: OpenCodeServer, model: ModelServer) -> None:
    results = await run_cell(fault, chaos_server, model, RUNS)
    record(results)
    failed = [r for r in results if not r.ok]
    report = "\n".join(f"run {r.run}: {'; '.join(r.problems)}" for r in failed)
    assert not failed, f"{len(failed)}/{len(results)} runs diverged:\n{report}"
