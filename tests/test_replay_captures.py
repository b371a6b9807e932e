"""Both shared captures, replayed through decoder, normalizer and store, equal REST truth."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from openchamber.replay import read_capture, replay

from .support import CAPTURES

VERSIONS = ["1.0.152", "1.18.33"]


def _truth(version: str) -> dict[str, list[dict[str, Any]]]:
    data: dict[str, list[dict[str, Any]]] = json.loads(
        (CAPTURES / f"opencode-{version}.truth.json").read_text()
    )
    return data


def _capture(version: str) -> bytes:
    return read_capture(Path(CAPTURES / f"opencode-{version}.sse.gz"))


CHUNKINGS = {
    "whole": None,
    "tcp-like": [1460],
    "tiny": [1, 2, 3, 5, 7],
    "random": random.Random(7).choices(range(1, 9000), k=64),
}


@pytest.mark.parametrize("chunking", CHUNKINGS, ids=str)
@pytest.mark.parametrize("version", VERSIONS)
def test_replay_equals_truth(version: str, chunking: str) -> None:
    result = replay(_capture(version), CHUNKINGS[chunking])
    truth = _truth(version)
    assert result.diagnostics == []
    assert set(result.store.sessions) == set(truth)
    for session_id, messages in truth.items():
        replayed = result.store.messages(session_id)
        assert [m["info"]["id"] for m in replayed] == [m["info"]["id"] for m in messages]
        for mine, theirs in zip(replayed, messages, strict=True):
            assert mine["parts"] == theirs["parts"]
            assert mine["info"] == theirs["info"]
