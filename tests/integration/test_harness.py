"""The real-server harness is real: streamed chunks add up to what REST stores, per version.

Deliberately independent of openchamber's own decoder and store: raw lines, plain json.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest

from openchamber.server import OpenCodeServer

pytestmark = pytest.mark.integration


def _collect_stream(
    server: OpenCodeServer,
    session_id: str,
    out: list[dict[str, Any]],
    connected: threading.Event,
    done: threading.Event,
) -> None:
    headers = {"Accept": "text/event-stream", "Accept-Encoding": "identity"}
    with (
        httpx.Client(base_url=server.url, auth=server.auth, timeout=60) as http,
        http.stream("GET", "/global/event", headers=headers) as response,
    ):
        response.raise_for_status()
        connected.set()
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            payload = json.loads(line[6:])["payload"]
            out.append(payload)
            props = payload.get("properties", {})
            if payload["type"] == "session.idle" and props.get("sessionID") == session_id:
                done.set()
                return


def test_streamed_chunks_concatenate_to_rest_text(opencode: OpenCodeServer) -> None:
    with httpx.Client(base_url=opencode.url, auth=opencode.auth, timeout=60) as http:
        session = http.post("/session", json={}).raise_for_status().json()
        events: list[dict[str, Any]] = []
        connected, done = threading.Event(), threading.Event()
        reader = threading.Thread(
            target=_collect_stream,
            args=(opencode, session["id"], events, connected, done),
            daemon=True,
        )
        reader.start()
        # 1.0.x sends no `server.connected` frame: the response headers are the signal.
        assert connected.wait(30), "event stream did not open"
        prompt = {"parts": [{"type": "text", "text": "reply=long len=2500 chunk=var"}]}
        http.post(f"/session/{session['id']}/message", json=prompt).raise_for_status()
        assert done.wait(60), "session never went idle on the stream"
        reader.join(10)
        truth = http.get(f"/session/{session['id']}/message").raise_for_status().json()

    streamed: dict[str, str] = {}
    for payload in events:
        props = payload.get("properties", {})
        if payload["type"] == "message.part.delta" and props.get("field") == "text":
            streamed[props["partID"]] = streamed.get(props["partID"], "") + props["delta"]
        elif payload["type"] == "message.part.updated" and props.get("delta"):
            part_id = props["part"]["id"]
            streamed[part_id] = streamed.get(part_id, "") + props["delta"]

    assistant_text = [
        part
        for message in truth
        if message["info"]["role"] == "assistant"
        for part in message["parts"]
        if part["type"] == "text"
    ]
    assert len(assistant_text) == 1
    part = assistant_text[0]
    assert len(part["text"]) == 2500
    assert streamed[part["id"]] == part["text"]
    assert len(streamed) == 1, "only the reply streamed"
