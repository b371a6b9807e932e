"""A one-minute soak in the suite (`make soak MINUTES=30` runs the long one): under a
steady stream of replies the bridge process keeps its tasks, open files and ring bounded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from openchamber.hub import DEFAULT_CAPACITY

from ..conftest import LaunchOpenCode
from .soak import soak_bridge

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.anyio]
SECONDS = 60


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_minute_of_replies_leaves_tasks_files_and_ring_bounded(
    launch_opencode: LaunchOpenCode, tmp_path: Path
) -> None:
    server = launch_opencode("1.18.33")
    result = await soak_bridge(server, SECONDS, tmp_path / "bridge.log")
    series = result["series"]
    assert result["replies"] >= 4, result["replies"]
    assert result["view_errors"] == []
    assert result["view_shrinks"] == []
    warm = len(series["tasks"]) // 5  # after the first fifth: connections, pools are open
    assert max(series["tasks"][warm:]) <= series["tasks"][warm] + 5, series["tasks"]
    assert max(series["fds"][warm:]) <= series["fds"][warm] + 8, series["fds"]
    assert max(series["ring"]) <= DEFAULT_CAPACITY
    # Generous on a shared machine: a leak of a reply's worth per reply would far exceed it.
    assert series["rss_mb"][-1] - series["rss_mb"][warm] < 40, series["rss_mb"]
