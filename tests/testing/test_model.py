"""The scripted model: exact, deterministic OpenAI-style replies driven by directives."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from openchamber.testing.model import (
    MODEL_ID,
    Directives,
    ModelServer,
    build_app,
    is_auxiliary,
    mixed_text,
    opencode_config,
    reply_text,
)

TITLE_SYSTEM = "You are a title generator. You output ONLY a thread title. Nothing else."
BASH_TOOL = {"type": "function", "function": {"name": "bash", "parameters": {"type": "object"}}}
QUESTION_TOOL = {
    "type": "function",
    "function": {"name": "question", "parameters": {"type": "object"}},
}
WAIT = 10.0  # seconds a test waits for a gate before it fails


@pytest.fixture(scope="module")
def model() -> Iterator[ModelServer]:
    with ModelServer() as server:
        yield server


@pytest.fixture
def client(model: ModelServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=model.base_url, timeout=WAIT) as http:
        yield http


def chat(prompt: str, *, stream: bool = True, **extra: Any) -> dict[str, Any]:
    messages = extra.pop("messages", [{"role": "user", "content": prompt}])
    return {"model": MODEL_ID, "stream": stream, "messages": messages, **extra}


def frames(body: bytes) -> list[str]:
    """The data of each SSE frame, checking the framing OpenAI uses."""
    text = body.decode()
    assert text.endswith("\n\n")
    found = []
    for frame in text[:-2].split("\n\n"):
        assert frame.startswith("data: "), frame
        assert "\n" not in frame
        found.append(frame.removeprefix("data: "))
    return found


def chunks(body: bytes) -> list[dict[str, Any]]:
    """The chunks of a complete stream: valid chunk JSON, then ``[DONE]``."""
    *data, done = frames(body)
    assert done == "[DONE]"
    parsed = [json.loads(item) for item in data]
    for chunk in parsed:
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["id"] == parsed[0]["id"]
        assert isinstance(chunk["created"], int)
        assert len(chunk["choices"]) == 1
        assert chunk["choices"][0]["index"] == 0
    assert parsed[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["choices"][0]["finish_reason"] is None for c in parsed[:-1])
    return parsed


def content_deltas(parsed: list[dict[str, Any]]) -> list[str]:
    return [c["choices"][0]["delta"]["content"] for c in parsed[:-1]]


def streamed_text(client: httpx.Client, prompt: str) -> str:
    response = client.post("/chat/completions", json=chat(prompt))
    assert response.status_code == 200
    return "".join(content_deltas(chunks(response.content)))


def expected(prompt: str) -> str:
    return reply_text(Directives.parse(prompt), prompt)


# --- Models and plain replies ---------------------------------------------------


def test_lists_the_scripted_model(client: httpx.Client) -> None:
    response = client.get("/models")
    assert response.json() == {
        "object": "list",
        "data": [{"id": "scripted-1", "object": "model", "owned_by": "openchamber"}],
    }


def test_streams_a_short_reply_as_openai_sse(client: httpx.Client) -> None:
    response = client.post("/chat/completions", json=chat("hello there"))
    assert response.headers["content-type"].startswith("text/event-stream")
    parsed = chunks(response.content)
    last = parsed[-1]["choices"][0]
    assert last == {"index": 0, "delta": {}, "finish_reason": "stop"}
    usage = parsed[-1]["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] > 0
    text = "".join(content_deltas(parsed))
    assert text == expected("hello there")
    assert text.startswith("Scripted reply ")


def test_replies_are_deterministic_and_differ_by_prompt(client: httpx.Client) -> None:
    first = client.post("/chat/completions", json=chat("reply=long len=900 chunk=var"))
    again = client.post("/chat/completions", json=chat("reply=long len=900 chunk=var"))
    assert first.content == again.content
    assert streamed_text(client, "one prompt") != streamed_text(client, "another prompt")


@pytest.mark.parametrize("kind", ["short", "long", "mixed", "markdown", "echo"])
@pytest.mark.parametrize("length", [0, 1, 7, 499, 2048])
def test_len_is_exact_in_code_points(client: httpx.Client, kind: str, length: int) -> None:
    prompt = f"reply={kind} len={length}"
    text = streamed_text(client, prompt)
    assert len(text) == length
    assert text == expected(prompt)


@pytest.mark.parametrize("size", [1, 3, 8, 64])
def test_chunk_sets_the_code_points_per_delta(client: httpx.Client, size: int) -> None:
    response = client.post("/chat/completions", json=chat(f"reply=mixed len=301 chunk={size}"))
    deltas = content_deltas(chunks(response.content))
    assert "".join(deltas) == expected("reply=mixed len=301")
    assert all(len(d) == size for d in deltas[:-1])
    assert 0 < len(deltas[-1]) <= size


def test_default_chunk_is_eight(client: httpx.Client) -> None:
    response = client.post("/chat/completions", json=chat("reply=long len=100"))
    assert [len(d) for d in content_deltas(chunks(response.content))] == [8] * 12 + [4]


def test_chunk_var_varies_between_one_and_sixteen(client: httpx.Client) -> None:
    response = client.post("/chat/completions", json=chat("reply=long len=1000 chunk=var"))
    sizes = [len(d) for d in content_deltas(chunks(response.content))]
    assert set(sizes[:-1]) == set(range(1, 17))


def test_delay_still_gives_the_whole_reply(client: httpx.Client) -> None:
    assert streamed_text(client, "reply=long len=40 delay=5") == expected("reply=long len=40")


def test_rate_paces_deltas_on_a_schedule(client: httpx.Client) -> None:
    prompt = "reply=long len=320 chunk=8 rate=200"  # 40 deltas, the last due at 39/200 s
    arrivals: list[float] = []
    body = b""
    with client.stream("POST", "/chat/completions", json=chat(prompt)) as response:
        for piece in response.iter_raw():
            arrivals.append(time.perf_counter())
            body += piece
    assert "".join(content_deltas(chunks(body))) == expected(prompt)
    assert arrivals[-1] - arrivals[0] >= 38 / 200  # never ahead of its schedule


def test_non_streamed_completion(client: httpx.Client) -> None:
    body = client.post("/chat/completions", json=chat("reply=markdown", stream=False)).json()
    assert body["object"] == "chat.completion"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": expected("reply=markdown")},
            "finish_reason": "stop",
        }
    ]
    assert body["usage"]["completion_tokens"] > 0


def test_content_parts_and_surrounding_text_carry_directives(client: httpx.Client) -> None:
    parts = [
        {"type": "text", "text": "<wrapper>please reply="},
        {"type": "text", "text": "long len=33 extra words</wrapper>"},
    ]
    body = chat("", messages=[{"role": "user", "content": parts}])
    response = client.post("/chat/completions", json=body)
    assert "".join(content_deltas(chunks(response.content))) == expected("reply=long len=33")


def test_directives_come_from_the_last_user_message(client: httpx.Client) -> None:
    messages = [
        {"role": "user", "content": "reply=long len=50"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "reply=long len=20"},
    ]
    response = client.post("/chat/completions", json=chat("", messages=messages))
    assert "".join(content_deltas(chunks(response.content))) == expected("reply=long len=20")


# --- Reply texts -------------------------------------------------------------------


def test_mixed_corpus_has_every_hard_feature() -> None:
    text = expected("reply=mixed")
    for feature in ("café", "日本語", "🚀", "🧪", "e\u0301", "\r\n", "\u2028", "**Bold"):
        assert feature in text
    assert "\n```python\n" in text
    assert "\n```\n" in text
    assert "\n- first item\n" in text
    assert any(ord(char) > 0xFFFF for char in text)  # astral: surrogate pairs in UTF-16
    assert len(text.encode()) > len(text)


def test_mixed_markers_give_their_own_offset() -> None:
    text = mixed_text(3000)
    markers = list(re.finditer(r"\[(\d+)\]", text))
    assert len(markers) > 3000 // 50
    for marker in markers:
        assert int(marker.group(1)) == marker.start()
    gaps = [b.start() - a.start() for a, b in itertools.pairwise(markers)]
    assert max(gaps) < 80


def test_long_defaults_to_3000_code_points() -> None:
    text = expected("reply=long")
    assert len(text) == 3000
    assert text[:2000] == mixed_text(2000)


def test_markdown_reply_is_a_document() -> None:
    text = expected("reply=markdown")
    assert text.startswith("# ")
    assert "\n## " in text
    assert "\n- " in text
    assert "\n```python\n" in text
    assert "\n| name | value |\n|------|" in text


def test_echo_repeats_the_prompt() -> None:
    assert expected("say reply=echo please") == "say reply=echo please"


@given(
    kind=st.sampled_from(["short", "long", "mixed", "markdown", "echo"]),
    length=st.integers(min_value=0, max_value=5000),
    prompt=st.text(max_size=40),
)
def test_replies_never_end_in_whitespace(kind: str, length: int, prompt: str) -> None:
    # OpenCode 1.0.x trims a stored text part's end: the reply must survive that.
    text = reply_text(Directives(reply=kind, length=length), prompt)
    assert len(text) == length
    assert not text[-1:].isspace()


@given(text=st.text(), chunk=st.one_of(st.none(), st.integers(min_value=1, max_value=40)))
def test_split_covers_the_text_in_order(text: str, chunk: int | None) -> None:
    pieces = Directives(chunk=chunk).split(text)
    assert "".join(pieces) == text
    assert all(pieces)
    if chunk is not None:
        assert all(len(p) == chunk for p in pieces[:-1])


def test_directive_parsing() -> None:
    text = """x reply=echo len=12 chunk=var delay=5 tool=bash cmd="echo a b" at=3"""
    assert Directives.parse(text) == Directives(
        reply="echo", length=12, chunk=None, delay_ms=5, tool="bash", cmd="echo a b", at=3
    )
    args = Directives.parse("""tool=question args='{"q": ["a b"]}'""")
    assert args.args == '{"q": ["a b"]}'
    assert Directives.parse("reply=nonsense len=-3 chunk=0 error=nope") == Directives(chunk=1)
    assert Directives.parse("""args='"quoted"' status=9999""") == Directives(
        args='"quoted"', status=599
    )


def test_only_requests_without_tools_can_be_auxiliary() -> None:
    title = title_request("hello", stream=True)
    assert is_auxiliary(title)
    assert not is_auxiliary({**title, "tools": [BASH_TOOL]})
    assert not is_auxiliary(chat("summarize this for me"))


# --- Tools -------------------------------------------------------------------------


def tool_call(parsed: list[dict[str, Any]]) -> tuple[str, str, str]:
    """The (id, name, arguments) of a streamed tool call, checking its chunk shape."""
    calls = [c["choices"][0]["delta"]["tool_calls"] for c in parsed[:-1]]
    assert all(len(call) == 1 and call[0]["index"] == 0 for call in calls)
    head = calls[0][0]
    assert head["type"] == "function"
    arguments = "".join(call[0]["function"]["arguments"] for call in calls)
    assert parsed[-1]["choices"][0]["finish_reason"] == "tool_calls"
    return head["id"], head["function"]["name"], arguments


def test_tool_call_then_follow_up(client: httpx.Client) -> None:
    prompt = 'run it tool=bash cmd="echo hi" chunk=5'
    user = {"role": "user", "content": prompt}
    body = chat(prompt, messages=[user], tools=[QUESTION_TOOL, BASH_TOOL])
    call_id, name, arguments = tool_call(
        chunks(client.post("/chat/completions", json=body).content)
    )
    assert name == "bash"
    assert json.loads(arguments) == {"command": "echo hi", "description": "Run a scripted command"}

    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    messages = [
        user,
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id, "content": "hi\n" + "x" * 300},
    ]
    follow_up = chat(prompt, messages=messages, tools=[BASH_TOOL])
    parsed = chunks(client.post("/chat/completions", json=follow_up).content)
    assert parsed[-1]["choices"][0]["finish_reason"] == "stop"
    assert "".join(content_deltas(parsed)) == "Tool said: hi\n" + "x" * 197


def test_bash_tool_has_a_default_command(client: httpx.Client) -> None:
    body = chat("tool=bash", tools=[BASH_TOOL])
    _, _, arguments = tool_call(chunks(client.post("/chat/completions", json=body).content))
    assert json.loads(arguments)["command"] == "echo tool-ran"


def test_any_offered_tool_takes_json_args(client: httpx.Client) -> None:
    args = '{"questions": [{"question": "Go on?", "header": "Go", "options": []}]}'
    body = chat(f"tool=question args='{args}'", stream=False, tools=[BASH_TOOL, QUESTION_TOOL])
    message = client.post("/chat/completions", json=body).json()["choices"][0]
    assert message["finish_reason"] == "tool_calls"
    (call,) = message["message"]["tool_calls"]
    assert call["function"] == {"name": "question", "arguments": args}
    assert call["id"].startswith("call_")


def test_a_tool_not_offered_gets_text(client: httpx.Client) -> None:
    body = chat("tool=question", tools=[BASH_TOOL])
    text = "".join(content_deltas(chunks(client.post("/chat/completions", json=body).content)))
    assert text == "Tool question is not offered; offered: bash."


# --- Failures ----------------------------------------------------------------------


def test_error_http(client: httpx.Client) -> None:
    response = client.post("/chat/completions", json=chat("reply=long error=http"))
    assert response.status_code == 500
    assert response.json() == {"error": {"message": "scripted failure", "type": "server_error"}}


def test_error_http_with_a_client_status(client: httpx.Client) -> None:
    response = client.post("/chat/completions", json=chat("error=http status=400"))
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_error_times_fails_only_the_first_tries(client: httpx.Client) -> None:
    body = chat("error=http times=2 unique-7f3a")
    statuses = [client.post("/chat/completions", json=body).status_code for _ in range(4)]
    assert statuses == [500, 500, 200, 200]


def read_into(response: httpx.Response, received: bytearray) -> None:
    for piece in response.iter_bytes():
        received += piece


def test_error_stream_cuts_the_stream(client: httpx.Client) -> None:
    received = bytearray()
    with client.stream(
        "POST", "/chat/completions", json=chat("reply=long len=80 error=stream")
    ) as r:
        assert r.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            read_into(r, received)
    data = frames(bytes(received))
    assert "[DONE]" not in data
    deltas = [json.loads(item)["choices"][0]["delta"]["content"] for item in data]
    assert deltas == [mixed_text(80)[i : i + 8] for i in range(0, 40, 8)]  # half of 10


def test_error_chunk_ends_with_an_error_frame(client: httpx.Client) -> None:
    response = client.post("/chat/completions", json=chat("reply=long len=80 error=chunk at=2"))
    *content, error = frames(response.content)
    assert len(content) == 2
    assert json.loads(error) == {
        "error": {"message": "scripted failure", "type": "invalid_request_error"}
    }


# --- Gates -------------------------------------------------------------------------


class Reader(threading.Thread):
    """Reads a stream in the background, telling how many frames arrived so far."""

    def __init__(self, base_url: str, prompt: str) -> None:
        super().__init__(daemon=True)
        self.base_url, self.prompt = base_url, prompt
        self.frames: list[str] = []
        self.arrived = threading.Condition()
        self.error: BaseException | None = None

    def run(self) -> None:
        buffer = b""
        try:
            with (
                httpx.Client(base_url=self.base_url, timeout=WAIT * 3) as http,
                http.stream("POST", "/chat/completions", json=chat(self.prompt)) as response,
            ):
                for piece in response.iter_bytes():
                    buffer += piece
                    *done, buffer = buffer.split(b"\n\n")
                    with self.arrived:
                        self.frames += [f.decode().removeprefix("data: ") for f in done]
                        self.arrived.notify_all()
        except httpx.HTTPError as error:
            self.error = error

    def wait_for(self, count: int) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.frames) >= count, WAIT)


def test_pause_holds_the_stream_until_the_gate_opens(model: ModelServer) -> None:
    reader = Reader(model.base_url, "reply=long len=80 pause=hold-1 at=3")
    reader.start()
    assert model.reached("hold-1", timeout=WAIT)
    assert reader.wait_for(3)
    with reader.arrived:
        assert len(reader.frames) == 3  # held after exactly `at` deltas
    assert reader.is_alive()
    model.open_gate("hold-1")
    reader.join(WAIT)
    assert not reader.is_alive()
    assert reader.error is None
    assert reader.frames[-1] == "[DONE]"
    deltas = [json.loads(f)["choices"][0]["delta"].get("content", "") for f in reader.frames[:-1]]
    assert "".join(deltas) == expected("reply=long len=80")


def test_gates_over_http(model: ModelServer, client: httpx.Client) -> None:
    control = model.base_url.removesuffix("/v1") + "/control/gates/hold-2"
    assert client.get(control).json() == {"reached": False, "open": False}
    reader = Reader(model.base_url, "reply=short pause=hold-2")
    reader.start()
    assert model.reached("hold-2", timeout=WAIT)
    assert client.get(control).json() == {"reached": True, "open": False}
    assert client.post(control + "/open").json() == {"reached": True, "open": True}
    reader.join(WAIT)
    assert reader.frames[-1] == "[DONE]"


def test_reached_times_out_for_an_unused_gate(model: ModelServer) -> None:
    assert not model.reached("never-used", timeout=0.01)


def test_an_open_gate_lets_later_streams_through(model: ModelServer, client: httpx.Client) -> None:
    model.open_gate("hold-3")
    prompt = "reply=long len=30 pause=hold-3"
    assert streamed_text(client, prompt) == expected(prompt)
    assert model.reached("hold-3", timeout=0)


def test_stopping_releases_a_paused_stream() -> None:
    with ModelServer() as server:
        reader = Reader(server.base_url, "reply=long len=80 pause=stuck")
        reader.start()
        assert server.reached("stuck", timeout=WAIT)
    reader.join(WAIT)
    assert not reader.is_alive()
    assert "[DONE]" not in reader.frames


# --- OpenCode's own requests ---------------------------------------------------------


def title_request(prompt: str, *, stream: bool) -> dict[str, Any]:
    messages = [
        {"role": "system", "content": TITLE_SYSTEM},
        {"role": "user", "content": "Generate a title for this conversation:\n"},
        {"role": "user", "content": prompt},
    ]
    return chat(prompt, stream=stream, messages=messages, max_tokens=20)


@pytest.mark.parametrize("stream", [True, False])
def test_title_requests_ignore_directives(
    model: ModelServer, client: httpx.Client, stream: bool
) -> None:
    gate = f"title-{stream}"
    prompt = f"reply=long error=http pause={gate} tool=bash"
    response = client.post("/chat/completions", json=title_request(prompt, stream=stream))
    assert response.status_code == 200
    if stream:
        title = "".join(content_deltas(chunks(response.content)))
    else:
        title = response.json()["choices"][0]["message"]["content"]
    assert title == f"Scripted: {prompt}"[:50]
    assert not model.reached(gate, timeout=0)


def test_message_summaries_of_opencode_1_0_get_a_title(client: httpx.Client) -> None:
    quoted = (
        "\n  The following is the text to summarize:\n  <text>\n  fix the flaky test\n  </text>\n"
    )
    body = title_request(quoted, stream=False)
    title = client.post("/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    assert title == "Scripted: fix the flaky test"


def test_records_request_bodies(model: ModelServer, client: httpx.Client) -> None:
    body = chat("record me 5c1d")
    client.post("/chat/completions", json=body)
    assert model.requests[-1] == body
    control = model.base_url.removesuffix("/v1") + "/control/requests"
    assert client.get(control).json()[-1] == body


# --- Running it --------------------------------------------------------------------


def test_opencode_config_points_at_the_server() -> None:
    config = opencode_config("http://127.0.0.1:1234/v1")
    assert config["model"] == "scripted/scripted-1"
    provider = config["provider"]["scripted"]
    assert provider["npm"] == "@ai-sdk/openai-compatible"
    assert provider["options"] == {"baseURL": "http://127.0.0.1:1234/v1", "apiKey": "scripted"}
    assert "scripted-1" in provider["models"]


def test_the_app_runs_in_process() -> None:
    async def ask() -> httpx.Response:
        transport = httpx.ASGITransport(app=build_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://model") as http:
            return await http.post("/v1/chat/completions", json=chat("reply=long len=64"))

    response = asyncio.run(ask())
    assert "".join(content_deltas(chunks(response.content))) == expected("reply=long len=64")


def test_runs_as_a_module() -> None:
    command = [sys.executable, "-m", "openchamber.testing.model", "--port", "0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            match = re.fullmatch(
                r"scripted model listening on (http://127\.0\.0\.1:\d+/v1)\n", line
            )
            assert match, line
            assert httpx.get(match.group(1) + "/models", timeout=WAIT).status_code == 200
            process.terminate()
            assert process.wait(WAIT) == 0
        finally:
            if process.poll() is None:
                process.kill()
