"""A scripted OpenAI-compatible model, so tests can run a real ``opencode serve`` offline.

Every reply is a deterministic function of the prompt. ``key=value`` directives anywhere
in the text of the last user message choose it (values may be quoted with ``"`` or
``'``; OpenCode may add text around the prompt, so the whole text is searched):

``reply=short|long|mixed|markdown|echo``
    What to say. ``short`` (the default) is one sentence holding a word derived from a
    hash of the prompt, so different prompts get different replies. ``mixed`` is a
    corpus of multi-byte UTF-8 (astral emoji, a combining sequence), markdown, ``\\r\\n``
    and U+2028, with a position marker ``[N]`` at code point N about every 40 code
    points, so a cut or a reordering shows. ``long`` is ``mixed`` of 3000 code points.
    ``markdown`` is a small document (headings, list, code block, table). ``echo``
    repeats the prompt text.
``len=N``
    The reply is exactly N code points (shorter texts repeat, longer ones are cut).
``chunk=N`` | ``chunk=var``
    Code points per streamed delta (default 8); ``var`` cycles through sizes 1..16.
``delay=MS``
    Wait between deltas.
``rate=N``
    N deltas a second, each due at its place on a fixed schedule from the first one (so
    the pace does not drift by each wait's overshoot, as ``delay`` does).
``tool=NAME`` with ``cmd="..."`` (for ``bash``) or ``args='{json}'``
    While the user's message is the last one, call that tool (it must be among the
    request's ``tools``); once the last message is the tool's result, say
    ``Tool said: <its first 200 characters>``. So a tool loop always ends.
``error=http`` | ``error=stream`` | ``error=chunk``, with ``status=N`` and ``times=N``
    ``http`` answers with an OpenAI error body (status 500 by default); ``stream``
    cuts the stream off after ``at`` deltas (no ``[DONE]``, no closing chunk);
    ``chunk`` sends an in-band error chunk after ``at`` deltas and ends the stream
    (its body reads as a 400's unless ``status`` says otherwise). With ``times=N``
    only the first N identical requests fail, so a client's retry then succeeds.
    OpenCode 1.18 retries a 5xx, a body saying ``server_error`` and a cut stream,
    with a backoff growing from 2 s, but not a 4xx (whose body here says
    ``invalid_request_error``) nor an error chunk: those end the turn at once with
    ``session.error``.
``pause=NAME`` (with ``at=K``, default half the deltas)
    After K deltas, hold the stream until the test opens the gate NAME. Tests learn
    that a stream waits there with :meth:`ModelServer.reached`, never by sleeping.

Requests OpenCode makes for itself (a session title, summaries) are recognised by
their system prompt and answered plainly: directives never apply to them, so a gate
or an error is spent on the chat request only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import math
import re
import signal
import socket
import threading
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Self

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Send

from openchamber.lifecycle import Service

__all__ = [
    "MODEL_ID",
    "Directives",
    "Gates",
    "ModelServer",
    "Script",
    "build_app",
    "is_auxiliary",
    "mixed_text",
    "opencode_config",
    "reply_text",
]

MODEL_ID = "scripted-1"
PROVIDER_ID = "scripted"
# A fixed timestamp: the same prompt gives the same bytes.
CREATED = 1_700_000_000
MAX_RECORDED = 500
TOOL_OUTPUT_QUOTED = 200

Json = dict[str, Any]


# --- Directives -------------------------------------------------------------------

_DIRECTIVE = re.compile(r"""(\w+)=("[^"]*"|'[^']*'|\S+)""")
_REPLIES = frozenset({"short", "long", "mixed", "markdown", "echo"})
_ERRORS = frozenset({"http", "stream", "chunk"})
_VAR_CHUNKS = (1, 5, 16, 2, 9, 3, 12, 7, 4, 14, 6, 11, 8, 15, 10, 13)  # 1..16, mixed up


@dataclass(frozen=True, slots=True)
class Directives:
    """What the last user message asks of the reply; see the module docstring."""

    reply: str = "short"
    length: int | None = None
    chunk: int | None = 8  # None: the varying sizes of chunk=var
    delay_ms: int = 0
    rate: int | None = None
    tool: str | None = None
    cmd: str | None = None
    args: str | None = None
    error: str | None = None
    status: int | None = None
    times: int | None = None
    pause: str | None = None
    at: int | None = None

    @classmethod
    def parse(cls, text: str) -> Directives:
        found = {key: _unquote(value) for key, value in _DIRECTIVE.findall(text)}
        reply = found.get("reply", "short")
        chunk = found.get("chunk")
        return cls(
            reply=reply if reply in _REPLIES else "short",
            length=_int(found.get("len"), minimum=0),
            chunk=None if chunk == "var" else (_int(chunk, minimum=1) or 8),
            delay_ms=_int(found.get("delay"), minimum=0) or 0,
            rate=_int(found.get("rate"), minimum=1),
            tool=found.get("tool") or None,
            cmd=found.get("cmd"),
            args=found.get("args"),
            error=found.get("error") if found.get("error") in _ERRORS else None,
            status=_int(found.get("status"), minimum=400, maximum=599),
            times=_int(found.get("times"), minimum=0),
            pause=found.get("pause") or None,
            at=_int(found.get("at"), minimum=0),
        )

    def split(self, text: str) -> list[str]:
        """Cut ``text`` into the deltas to stream, by code points."""
        pieces: list[str] = []
        start = 0
        while start < len(text):
            size = self.chunk or _VAR_CHUNKS[len(pieces) % len(_VAR_CHUNKS)]
            pieces.append(text[start : start + size])
            start += size
        return pieces

    def stop_at(self, deltas: int) -> int:
        """After how many deltas a pause or a cut happens: ``at``, or about half."""
        if self.at is not None:
            return min(self.at, deltas)
        return min(deltas, max(1, deltas // 2))


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _int(value: str | None, *, minimum: int, maximum: int = 10_000_000) -> int | None:
    if value is None or not (value.isascii() and value.isdigit()):
        return None
    return min(max(minimum, int(value)), maximum)


# --- Reply texts ------------------------------------------------------------------

_WORDS = (
    "amber", "basalt", "cedar", "delta", "ember", "fjord", "garnet", "harbor",
    "indigo", "juniper", "kelp", "lagoon", "meadow", "nickel", "onyx", "prairie",
    "quartz", "river", "saffron", "tundra", "umber", "violet", "willow", "xenon",
    "yarrow", "zephyr", "acorn", "birch", "cobalt", "dune", "estuary", "flint",
)  # fmt: skip

# One round of the mixed corpus. Each piece follows a position marker; pieces that
# must start a line (a code fence, a list) begin with their own newline.
_MIXED = (
    "Plain ASCII words flow by at a steady pace. ",
    "A café crème, naïve résumé, déjà vu. ",
    "日本語のテキストも混ざります。",
    "Rocket 🚀 and test tube 🧪 are astral. ",
    "Combining: e\u0301 is not é. ",
    "**Bold words** and *italic ones*.\r\n",
    "\n```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```\n",
    "\n- first item\n- second item\n",
    "Line\u2028separated\u2028text. ",
    "Ünïcödé ✓ ≠ ≈ ∞ — “quoted”. ",
)

_MARKDOWN = """\
# Scripted document

Some **bold**, some *italic* and some `inline code`.

## A list

- one
- two
  - two and a half
- three

## Code

```python
def greet(name: str) -> str:
    return f"Hello, {name}!"
```

## A table

| name | value |
|------|------:|
| alpha | 1 |
| beta | 22 |

> A quote to finish."""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def mixed_text(length: int) -> str:
    """The mixed corpus, exactly ``length`` code points, with ``[N]`` at offset N."""
    parts: list[str] = []
    size = 0
    while size < length:
        for piece in _MIXED:
            marker = f"[{size}]"
            parts += (marker, piece)
            size += len(marker) + len(piece)
    return "".join(parts)[:length]


def _fit(text: str, length: int | None) -> str:
    """``text`` repeated or cut to exactly ``length`` code points."""
    if length is None:
        return text
    text = text or "."
    return (text * (length // len(text) + 1))[:length]


def reply_text(directives: Directives, prompt: str) -> str:
    """The text answering ``prompt`` (the last user message's text).

    It never ends in whitespace: a last whitespace code point becomes ``.``.
    """
    text = _compose(directives, prompt)
    # OpenCode 1.0.x trims trailing whitespace off a stored text part: a reply that
    # ends in none reads back the same from every version.
    if text[-1:].isspace():
        text = text[:-1] + "."
    return text


def _compose(directives: Directives, prompt: str) -> str:
    match directives.reply:
        case "long":
            return mixed_text(3000 if directives.length is None else directives.length)
        case "mixed":
            return mixed_text(1000 if directives.length is None else directives.length)
        case "markdown":
            return _fit(_MARKDOWN, directives.length)
        case "echo":
            return _fit(prompt, directives.length)
        case _:
            digest = _digest(prompt)
            word = _WORDS[int(digest[:8], 16) % len(_WORDS)]
            sentence = f"Scripted reply {word}-{digest[8:14]}: the model heard you."
            return _fit(sentence, directives.length)


# --- Reading a chat request -------------------------------------------------------


def _text(content: Any) -> str:
    """A message's text: ``content`` is a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _messages(body: Json) -> list[Json]:
    messages = body.get("messages")
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def _last_text(messages: Sequence[Json], role: str) -> str:
    for message in reversed(messages):
        if message.get("role") == role:
            return _text(message.get("content"))
    return ""


# OpenCode's own requests carry system prompts like "You are a title generator"
# (1.x) or "Summarize this conversation" / "summarizing" (compaction, summaries).
_AUXILIARY = re.compile(r"title generator|generate a (?:short )?title|summar", re.IGNORECASE)


def is_auxiliary(body: Json) -> bool:
    """Whether OpenCode asks this for itself (a title, a summary) rather than for the user.

    Chat requests offer tools and carry the agent's long system prompt; OpenCode's own
    small requests offer no tools and say what they want in their system prompt.
    """
    if body.get("tools"):
        return False
    system = " ".join(_text(m.get("content")) for m in _messages(body) if m.get("role") == "system")
    return bool(_AUXILIARY.search(system))


_SUMMARIZED = re.compile(r"<text>(.*?)</text>", re.DOTALL)


def _title(body: Json) -> str:
    text = _last_text(_messages(body), "user")
    # 1.0.x also asks for a title of each user message, quoting it in <text> tags.
    quoted = _SUMMARIZED.search(text)
    words = (quoted.group(1) if quoted else text).split()
    return " ".join(["Scripted:", *words[:4]])[:50]


# --- Building a reply -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole answer: the deltas to stream and how the turn ends."""

    deltas: list[Json]
    finish: str
    message: Json  # the non-streamed ``choices[0].message``
    completion_chars: int

    @classmethod
    def text(cls, text: str, directives: Directives) -> Reply:
        deltas: list[Json] = [{"content": piece} for piece in directives.split(text)]
        message = {"role": "assistant", "content": text}
        return cls(deltas, "stop", message, len(text))

    @classmethod
    def tool_call(cls, call_id: str, name: str, arguments: str, directives: Directives) -> Reply:
        head = {"index": 0, "id": call_id, "type": "function"}
        deltas: list[Json] = [
            {"tool_calls": [{**head, "function": {"name": name, "arguments": ""}}]}
        ]
        deltas += [
            {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
            for piece in directives.split(arguments)
        ]
        call = {**head, "function": {"name": name, "arguments": arguments}}
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        return cls(deltas, "tool_calls", message, len(arguments))


def _tool_names(body: Json) -> list[str]:
    names = []
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and isinstance(tool.get("function"), dict):
            names.append(str(tool["function"].get("name")))
    return names


def _tool_arguments(directives: Directives) -> str:
    if directives.args is not None:
        return directives.args
    if directives.tool == "bash":
        command = directives.cmd or "echo tool-ran"
        return orjson.dumps({"command": command, "description": "Run a scripted command"}).decode()
    return "{}"


def plan_reply(body: Json, directives: Directives) -> Reply:
    """The reply to a chat request (not an auxiliary one)."""
    messages = _messages(body)
    last = messages[-1] if messages else {}
    prompt = _last_text(messages, "user")
    if directives.tool is None:
        return Reply.text(reply_text(directives, prompt), directives)
    if last.get("role") == "tool":
        said = _text(last.get("content"))[:TOOL_OUTPUT_QUOTED]
        return Reply.text(f"Tool said: {said}".rstrip(), directives)
    offered = _tool_names(body)
    if directives.tool not in offered:
        text = f"Tool {directives.tool} is not offered; offered: {', '.join(offered) or 'none'}."
        return Reply.text(text, directives)
    # One call per assistant turn so far: ids stay unique within the conversation.
    turn = sum(1 for m in messages if m.get("role") == "assistant")
    call_id = f"call_scripted_{_digest(prompt)[:8]}_{turn}"
    return Reply.tool_call(call_id, directives.tool, _tool_arguments(directives), directives)


# --- Gates and state --------------------------------------------------------------


class Gates:
    """Named gates where streams wait until a test opens them.

    A gate is *reached* once a stream waits at it, and stays open once opened. Tests
    call :meth:`reached` and :meth:`open_gate` from any thread; streams await
    :meth:`wait` on the server's event loop.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._reached: set[str] = set()
        self._open: set[str] = set()
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._closed = False

    def state(self, name: str) -> dict[str, bool]:
        with self._cond:
            return {"reached": name in self._reached, "open": name in self._open}

    def reached(self, name: str, timeout: float | None = None) -> bool:
        """Block until a stream waits at ``name`` (or has passed it); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: name in self._reached, timeout)

    def open_gate(self, name: str) -> None:
        with self._cond:
            self._open.add(name)
            waiters = self._waiters.pop(name, [])
        self._wake(waiters)

    def close(self) -> None:
        """Release every waiting stream (they end cut off): the server is stopping."""
        with self._cond:
            self._closed = True
            waiters = [w for ws in self._waiters.values() for w in ws]
            self._waiters.clear()
        self._wake(waiters)

    async def wait(self, name: str) -> bool:
        """Wait at gate ``name``; True once it opens, False if the server stops first."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        with self._cond:
            self._reached.add(name)
            self._cond.notify_all()
            if name in self._open or self._closed:
                return name in self._open
            self._waiters.setdefault(name, []).append((loop, event))
        try:
            await event.wait()
        finally:
            with self._cond, contextlib.suppress(ValueError):
                self._waiters.get(name, []).remove((loop, event))
        with self._cond:
            return name in self._open

    @staticmethod
    def _wake(waiters: Iterable[tuple[asyncio.AbstractEventLoop, asyncio.Event]]) -> None:
        for loop, event in waiters:
            # A waiter's loop may have just closed (its stream was cancelled).
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)


@dataclass
class Script:
    """The state a scripted model keeps: its gates and the requests it received."""

    gates: Gates = field(default_factory=Gates)
    _requests: deque[Json] = field(default_factory=lambda: deque(maxlen=MAX_RECORDED))
    _failures: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, body: Json) -> None:
        with self._lock:
            self._requests.append(body)

    def should_fail(self, body: Json, times: int | None) -> bool:
        """Whether a request asking for an error gets it: always, or its first ``times``."""
        if times is None:
            return True
        # A retry sends the same messages again: they identify the request.
        key = _digest(orjson.dumps(body.get("messages"), option=orjson.OPT_SORT_KEYS).decode())
        with self._lock:
            self._failures[key] += 1
            return self._failures[key] <= times

    @property
    def requests(self) -> list[Json]:
        """The chat request bodies received, oldest first (the last 500)."""
        with self._lock:
            return list(self._requests)


# --- HTTP -------------------------------------------------------------------------


class _Cut(Exception):
    """Raised by a body generator to end its response the way a crashed upstream does."""


class _CuttableStream(StreamingResponse):
    async def stream_response(self, send: Send) -> None:
        # Without the closing empty chunk uvicorn drops the connection, so the client
        # sees a body that stops mid-way, as when a real provider fails mid-stream.
        with contextlib.suppress(_Cut):
            await super().stream_response(send)


def _usage(body: Json, completion_chars: int) -> Json:
    # About four characters a token, as tokenizers go; only its determinism matters.
    prompt = math.ceil(len(orjson.dumps(body.get("messages"))) / 4)
    completion = math.ceil(completion_chars / 4)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _frame(payload: Json) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def _sse(
    body: Json, reply: Reply, directives: Directives, gates: Gates, completion_id: str
) -> AsyncIterator[bytes]:
    def chunk(delta: Json, finish: str | None = None) -> Json:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": body.get("model", MODEL_ID),
            "choices": [choice],
        }

    deltas = reply.deltas or [{"content": ""}]
    deltas = [{"role": "assistant", **deltas[0]}, *deltas[1:]]
    stop_at = directives.stop_at(len(deltas))
    loop = asyncio.get_running_loop()
    started = loop.time()
    for index in range(len(deltas) + 1):
        if index == stop_at:
            if directives.pause and not await gates.wait(directives.pause):
                raise _Cut
            if directives.error == "stream":
                raise _Cut
            if directives.error == "chunk":
                yield _frame(_error_body(directives.status or 400))
                return
        if index == len(deltas):
            break
        if index and directives.delay_ms:
            await asyncio.sleep(directives.delay_ms / 1000)
        if directives.rate:
            await asyncio.sleep(started + index / directives.rate - loop.time())
        yield _frame(chunk(deltas[index]))
    last = chunk({}, reply.finish)
    last["usage"] = _usage(body, reply.completion_chars)
    yield _frame(last)
    yield b"data: [DONE]\n\n"


async def _completion(
    body: Json, reply: Reply, directives: Directives, gates: Gates, completion_id: str
) -> AsyncIterator[bytes]:
    if directives.pause and not await gates.wait(directives.pause):
        raise _Cut
    payload = orjson.dumps(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": CREATED,
            "model": body.get("model", MODEL_ID),
            "choices": [{"index": 0, "message": reply.message, "finish_reason": reply.finish}],
            "usage": _usage(body, reply.completion_chars),
        }
    )
    if directives.error in ("stream", "chunk"):
        yield payload[: len(payload) // 2]
        raise _Cut
    yield payload


def _error_body(status: int, message: str = "scripted failure") -> Json:
    # OpenCode retries any error whose body says "server_error": only a 5xx says so.
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind}}


def _error(status: int, message: str = "scripted failure") -> JSONResponse:
    return JSONResponse(_error_body(status, message), status_code=status)


async def _models(request: Request) -> Response:
    model = {"id": MODEL_ID, "object": "model", "owned_by": "openchamber"}
    return JSONResponse({"object": "list", "data": [model]})


async def _chat(request: Request) -> Response:
    script: Script = request.app.state.script
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return _error(400, "request body is not JSON")
    if not isinstance(body, dict):
        return _error(400, "request body is not a JSON object")
    script.record(body)
    messages = _messages(body)
    prompt = _last_text(messages, "user")
    if is_auxiliary(body):
        directives = Directives()
        reply = Reply.text(_title(body), directives)
    else:
        directives = Directives.parse(prompt)
        if directives.error and not script.should_fail(body, directives.times):
            directives = replace(directives, error=None)
        if directives.error == "http":
            return _error(directives.status or 500)
        reply = plan_reply(body, directives)
    completion_id = f"chatcmpl-{_digest(prompt)[:24]}"
    if body.get("stream"):
        events = _sse(body, reply, directives, script.gates, completion_id)
        headers = {"Cache-Control": "no-cache"}
        return _CuttableStream(events, media_type="text/event-stream", headers=headers)
    payload = _completion(body, reply, directives, script.gates, completion_id)
    return _CuttableStream(payload, media_type="application/json")


async def _gate(request: Request) -> Response:
    script: Script = request.app.state.script
    name = request.path_params["name"]
    if request.method == "POST":
        script.gates.open_gate(name)
    return JSONResponse(script.gates.state(name))


async def _requests(request: Request) -> Response:
    script: Script = request.app.state.script
    return Response(orjson.dumps(script.requests), media_type="application/json")


def build_app(script: Script | None = None) -> Starlette:
    """The scripted model as an ASGI app; its state is ``app.state.script``."""
    app = Starlette(
        routes=[
            Route("/v1/models", _models),
            Route("/v1/chat/completions", _chat, methods=["POST"]),
            Route("/control/gates/{name}", _gate),
            Route("/control/gates/{name}/open", _gate, methods=["POST"]),
            Route("/control/requests", _requests),
        ]
    )
    app.state.script = script or Script()
    return app


# --- Serving ----------------------------------------------------------------------


class _Server(uvicorn.Server):
    """A uvicorn server that says when it accepts connections."""

    def __init__(self, config: uvicorn.Config, ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self._ready()


class ModelServer(Service):
    """The scripted model served by uvicorn in a background thread.

    ``with ModelServer() as model:`` starts it on a free loopback port (it accepts
    connections once ``__enter__`` returns) and stops it on exit.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.script = Script()
        self.app = build_app(self.script)
        # Binding here, before uvicorn starts, gives the port at once and without a race.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.create_server((host, port), family=family)
        self.host = host
        self.port: int = self._socket.getsockname()[1]
        self._started = threading.Event()
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off")
        self._server = _Server(config, self._started.set)
        self._thread = threading.Thread(target=self._run, name="scripted-model", daemon=True)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def requests(self) -> list[Json]:
        """The chat request bodies received, oldest first."""
        return self.script.requests

    def reached(self, name: str, timeout: float | None = None) -> bool:
        """Block until a stream waits at gate ``name``; False after ``timeout`` seconds."""
        return self.script.gates.reached(name, timeout)

    def open_gate(self, name: str) -> None:
        self.script.gates.open_gate(name)

    def start(self, timeout: float = 30.0) -> Self:
        self._thread.start()
        # _run sets the event too when uvicorn gives up, so this never waits in vain.
        if not self._started.wait(timeout) or not self._server.started:
            self.stop()
            raise RuntimeError(f"scripted model did not start on {self.base_url}")
        return self

    def stop(self) -> None:
        self.script.gates.close()
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join()
        self._socket.close()

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._started.set()


def opencode_config(base_url: str) -> Json:
    """The ``opencode.json`` that points OpenCode at the scripted model at ``base_url``."""
    return {
        "$schema": "https://opencode.ai/config.json",
        "model": f"{PROVIDER_ID}/{MODEL_ID}",
        "small_model": f"{PROVIDER_ID}/{MODEL_ID}",
        "autoupdate": False,
        "share": "disabled",
        "provider": {
            PROVIDER_ID: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Scripted",
                "options": {"baseURL": base_url, "apiKey": "scripted"},
                "models": {MODEL_ID: {"name": "Scripted 1"}},
            }
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the scripted OpenAI-compatible model.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    options = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with ModelServer(options.host, options.port) as model:
        print(f"scripted model listening on {model.base_url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
