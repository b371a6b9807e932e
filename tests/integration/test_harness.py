"""The real-server harness is real: streamed chunks add up to what REST stores, per version.

Deliberately independent of openchamber's own decoder and store: raw bytes, plain json.
"""

from __future__ import annotations

import httpx
import pytest

from openchamber.server import OpenCodeServer
from openchamber.testing.model import Directives, reply_text

from ..support import session_idle, stream_with_session

pytestmark = pytest.mark.integration


def test_streamed_chunks_concatenate_to_rest_text(opencode: OpenCodeServer) -> None:
    with httpx.Client(base_url=opencode.url, auth=opencode.auth, timeout=60) as http:
        stream, session_id = stream_with_session(opencode)
        prompt_text = "reply=long len=2500 chunk=var"
        prompt = {"parts": [{"type": "text", "text": prompt_text}]}
        http.post(f"/session/{session_id}/message", json=prompt).raise_for_status()
        stream.wait_for(session_idle(session_id))
        truth = http.get(f"/session/{session_id}/message").raise_for_status().json()
    stream.close()

    streamed: dict[str, str] = {}
    for payload in stream.payloads:
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
    assert part["text"] == reply_text(Directives.parse(prompt_text), prompt_text)
    assert len(part["text"]) == 2500
    assert streamed == {part["id"]: part["text"]}
