"""`openchamber chat`: a terminal chat over the runtime and its store.

The runtime keeps the store exact (reconnects, gap repair); this module only turns the
store's patches into terminal output: a reply's text as it streams, a line per tool
state, questions for permissions, a status line when the connection drops. With a
PROMPT it sends it, prints the reply and exits.

On a terminal, text shows as it streams (and, should the server's final text differ from
what streamed across a gap, is shown again corrected). Anywhere else stdout gets only the
reply's text parts, each once the server has it whole, separated by a newline: exact
output for scripts; everything else goes to stderr.
"""

from __future__ import annotations

import io
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup
from rich.console import Console
from rich.markup import escape

from openchamber.client import JSON, NotFound, OpenCodeClient, OpenCodeError, ServerError
from openchamber.config import Settings
from openchamber.connect import (
    CommandError,
    Endpoint,
    Exit,
    connect,
    opencode_endpoint,
    stderr,
)
from openchamber.ids import message_id
from openchamber.runtime import Runtime
from openchamber.store import Patch, Store
from openchamber.stream import State

PROMPT = "› "
_PERMISSION_REPLIES = {"o": "once", "a": "always", "r": "reject"}  # anything else: reject
_TOOL_MARKS = {"pending": "…", "running": "⚙", "completed": "✔", "error": "✘"}


class Output:
    """Reply text to stdout as it comes; notes beside it, or on stderr when piped."""

    def __init__(self) -> None:
        self.console = Console(highlight=False, soft_wrap=True)
        self.rich = self.console.is_terminal
        if not self.rich and isinstance(sys.stdout, io.TextIOWrapper):
            # A pipe gets UTF-8 whatever the locale says, as `events` and `replay --json` do.
            sys.stdout.reconfigure(encoding="utf-8", errors="replace")
        self._err = stderr()
        self._mid_line = False

    def text(self, text: str) -> None:
        if not text:
            return
        sys.stdout.write(text)
        sys.stdout.flush()
        self._mid_line = not text.endswith("\n")

    def end_line(self) -> None:
        if self._mid_line:
            self.text("\n")

    def note(self, markup: str) -> None:
        """A line about what happens (tools, connection, errors), not part of the reply."""
        if self.rich:
            self.end_line()
            self.console.print(markup)
        else:
            self._err.print(markup)

    def prompt(self, markup: str) -> None:
        """A question for the user, on the terminal they answer in."""
        self.end_line()
        console = self.console if self.rich else self._err
        console.print(markup, end="")


@dataclass
class Turn:
    """One prompt and everything the server answers to it."""

    parent: str  # our user message's id; the replies name it as `parentID`
    done: anyio.Event = field(default_factory=anyio.Event)
    completed: bool = False  # an assistant message ended the turn (finished or failed)
    busy: bool = False  # the session was seen working on it; idle then means it is over
    error: str | None = None
    aborting: bool = False
    parts: list[str] = field(default_factory=list)  # text parts shown, in order
    shown: dict[str, list[str]] = field(default_factory=dict)  # their text, as pieces
    tools: dict[str, str] = field(default_factory=dict)  # tool part → state shown


class ChatView:
    """The store's patches for one session, rendered; knows when a turn is over."""

    def __init__(self, store: Store, session_id: str, out: Output) -> None:
        self.store = store
        self.session_id = session_id
        self.out = out
        self.turn: Turn | None = None
        self.connected = anyio.Event()
        self.state = State.CONNECTING
        self.permissions: list[JSON] = []
        self.permission_waiting = anyio.Event()

    async def on_patches(self, patches: list[Patch]) -> None:
        for patch in patches:
            if patch["op"] == "connection":
                self._connection(patch["status"])
            elif patch.get("sessionID") == self.session_id:
                self._session_patch(patch)
        self._check_turn_over()

    def _connection(self, status: dict[str, Any]) -> None:
        state, hint = State(status["state"]), escape(str(status["hint"]))
        was, self.state = self.state, state
        if state == State.CONNECTED:
            if self.connected.is_set() and was != State.CONNECTED:
                self.out.note("[green]✔ reconnected[/]")
            self.connected.set()
        elif state in (State.RECONNECTING, State.STALE) and self.connected.is_set():
            self.out.note(f"[yellow]⚠ connection: {hint}[/]")
        elif state == State.AUTH_FAILED:
            self.out.note(f"[red]✘ {hint}[/]")

    def _session_patch(self, patch: Patch) -> None:
        op, turn = patch["op"], self.turn
        if op == "permission.upsert":
            self.permissions.append(patch["request"])
            self.permission_waiting.set()
        elif turn is None:
            return
        elif op == "session.status":
            self._status(turn, patch["status"])
        elif op == "session.error":
            turn.error = turn.error or _error_text(patch.get("error"))
        elif op == "message.upsert":
            self._message(turn, patch["info"])
        elif op in ("part.upsert", "part.text.append") and self._in_turn(turn, patch["messageID"]):
            if op == "part.upsert":
                self._part(turn, patch["part"])
            elif not self.out.rich or patch["field"] != "text":
                return
            elif patch["partID"] in turn.shown:
                self._append(turn, patch["partID"], patch["text"])
            else:
                self._show_part(turn, patch["partID"])

    def _status(self, turn: Turn, status: JSON) -> None:
        if status.get("type") != "idle":
            turn.busy = True
        if status.get("type") == "retry":
            self.out.note(
                f"[yellow]⟳ retrying (attempt {status.get('attempt')}): "
                f"{escape(str(status.get('message', '')))}[/]"
            )

    def _in_turn(self, turn: Turn, message_id: str) -> bool:
        session = self.store.sessions.get(self.session_id)
        message = session.messages.get(message_id) if session else None
        if message is None:
            return False
        info = message.info
        if "role" not in info:  # only its parts were seen so far: go by the ids' order
            return message_id > turn.parent
        return info["role"] == "assistant" and info.get("parentID") == turn.parent

    def _message(self, turn: Turn, info: JSON) -> None:
        if info.get("role") != "assistant" or info.get("parentID") != turn.parent:
            return
        # Parts seen before their message's info said whose reply it is.
        for message in self.store.messages(self.session_id):
            if message["info"]["id"] == info["id"]:
                for part in message["parts"]:
                    self._part(turn, part)
        timing = info.get("time")
        ended = isinstance(timing, dict) and timing.get("completed")
        if info.get("error"):
            turn.error = turn.error or _error_text(info["error"])
            turn.completed = True
        elif ended and info.get("finish") not in (None, "tool-calls"):
            turn.completed = True

    def _part(self, turn: Turn, part: JSON) -> None:
        if part.get("type") == "text" and (self.out.rich or _whole(part)):
            self._show_part(turn, part["id"])
        elif part.get("type") == "tool":
            self._tool(turn, part)

    def _show_part(self, turn: Turn, part_id: str) -> None:
        """Print what the store holds of a text part beyond what was shown."""
        text = self.store.part_text(part_id)
        if not text:
            return
        shown = turn.shown.get(part_id)
        if shown is None:
            self.out.end_line()
            if turn.parts:
                self.out.text("\n")
            turn.parts.append(part_id)
            turn.shown[part_id] = [text]
            self.out.text(text)
            return
        before = "".join(shown)
        if text.startswith(before):
            self._append(turn, part_id, text[len(before) :])
        else:  # the final text differs from what streamed: show the server's
            self.out.note("[dim](the reply was corrected; the server's text follows)[/]")
            turn.shown[part_id] = [text]
            self.out.text(text)

    def _append(self, turn: Turn, part_id: str, text: str) -> None:
        turn.shown[part_id].append(text)
        self.out.text(text)

    def _tool(self, turn: Turn, part: JSON) -> None:
        state: JSON = part["state"] if isinstance(part.get("state"), dict) else {}
        status = str(state.get("status", "pending"))
        if turn.tools.get(part["id"]) == status:
            return
        turn.tools[part["id"]] = status
        title = state.get("title") or _brief(state.get("input"))
        line = f"{_TOOL_MARKS.get(status, '·')} {part.get('tool', 'tool')}"
        if title:
            line += f" · {title}"
        line += f" · {status}"
        if status == "error" and state.get("error"):
            line += f": {state['error']}"
        color = {"completed": "green", "error": "red"}.get(status, "cyan")
        self.out.note(f"[{color}]{escape(line)}[/]")

    def _check_turn_over(self) -> None:
        turn = self.turn
        if turn is None or turn.done.is_set():
            return
        session = self.store.sessions.get(self.session_id)
        idle = session is not None and session.status.get("type") == "idle"
        # A rejected permission ends the turn after a tool call: only busy → idle says so.
        if idle and (turn.busy or turn.completed or turn.aborting or turn.error):
            turn.done.set()

    def start_turn(self, parent: str) -> Turn:
        self.turn = Turn(parent)
        return self.turn


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        data = error.get("data")
        message = data.get("message") if isinstance(data, dict) else None
        return str(message or error.get("name") or error)
    return str(error)


def _whole(part: JSON) -> bool:
    """Whether a part is no longer streaming (started and not ended), as the store judges."""
    timing = part.get("time")
    return not isinstance(timing, dict) or "start" not in timing or timing.get("end") is not None


def _brief(value: Any) -> str:
    if isinstance(value, dict):
        for key in ("command", "filePath", "path", "pattern", "url", "description"):
            if isinstance(value.get(key), str):
                return str(value[key])[:80]
    return ""


def _aborted(error: str | None) -> bool:
    return error is not None and "abort" in error.lower()


class Chat:
    """The conversation: sends prompts, waits for turns, handles Ctrl-C and permissions."""

    def __init__(self, client: OpenCodeClient, session_id: str, out: Output) -> None:
        self.client = client
        self.session_id = session_id
        self.out = out
        store = Store()
        self.view = ChatView(store, session_id, out)
        self.runtime = Runtime(client, self.view.on_patches, store)
        self.interactive_stdin = sys.stdin.isatty()
        self.exit_code: int = Exit.OK

    async def run(self, prompt: str | None) -> int:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._run_runtime, tasks)
            tasks.start_soon(self._interrupts, tasks)
            with anyio.move_on_after(30):
                await self.view.connected.wait()
            if not self.view.connected.is_set():
                raise CommandError(
                    f"the event stream of {self.client.base_url} did not open in 30 s "
                    f"({self.runtime.status.hint}); try `openchamber doctor`",
                    Exit.UNREACHABLE,
                )
            if prompt is not None:
                self.exit_code = await self._turn(prompt)
            else:
                await self._conversation()
            tasks.cancel_scope.cancel()
        return self.exit_code

    async def _run_runtime(self, tasks: TaskGroup) -> None:
        await self.runtime.run()
        # run() returns only when the server will not have us: a refused password.
        if self.view.state == State.AUTH_FAILED:
            self.exit_code = Exit.AUTH
        else:
            self.out.note("[red]✘ the event stream ended[/]")
            self.exit_code = Exit.FAILED
        tasks.cancel_scope.cancel()

    async def _interrupts(self, tasks: TaskGroup) -> None:
        """Ctrl-C aborts the running turn; another (or one with no turn running) quits."""
        with anyio.open_signal_receiver(signal.SIGINT) as signals:
            async for _ in signals:
                turn = self.view.turn
                if turn is not None and not turn.done.is_set() and not turn.aborting:
                    turn.aborting = True
                    self.out.note("[yellow]aborting the reply… (Ctrl-C again to quit)[/]")
                    tasks.start_soon(self._abort)
                    continue
                self.out.end_line()
                if turn is not None and not turn.done.is_set():
                    self.exit_code = Exit.INTERRUPTED
                tasks.cancel_scope.cancel()

    async def _abort(self) -> None:
        try:
            await self.client.abort(self.session_id)
        except OpenCodeError as exc:
            self.out.note(f"[red]✘ could not abort: {escape(str(exc))}[/]")

    async def _conversation(self) -> None:
        self.out.note(
            f"[dim]session {self.session_id} · {escape(self.client.base_url)} · "
            "Ctrl-C aborts a reply, Ctrl-C again or Ctrl-D quits[/]"
        )
        while True:
            line = await self._read_line(f"[bold]{PROMPT}[/]")
            if line is None:
                self.out.end_line()
                return
            if not line.strip():
                continue
            try:
                await self._turn(line.strip())
            except OpenCodeError as exc:  # the conversation goes on; the user may retry
                self.out.note(f"[red]✘ {escape(str(exc))}[/]")

    async def _turn(self, prompt: str) -> int:
        """Send `prompt` and show the reply until the turn is over; its exit code."""
        turn = self.view.start_turn(message_id())
        await self.client.send(
            self.session_id, [{"type": "text", "text": prompt}], message_id=turn.parent
        )
        while not turn.done.is_set():
            async with anyio.create_task_group() as waiting:
                waiting.start_soon(_cancel_when_set, turn.done, waiting)
                await self.view.permission_waiting.wait()
                waiting.cancel_scope.cancel()
            await self._answer_permissions(turn)
        self.out.end_line()
        if turn.error and not _aborted(turn.error):
            self.out.note(f"[red]✘ {escape(turn.error)}[/]")
            return Exit.FAILED
        if turn.aborting or turn.error:
            self.out.note("[yellow]aborted[/]")
            return Exit.INTERRUPTED
        return Exit.OK

    async def _answer_permissions(self, turn: Turn) -> None:
        self.view.permission_waiting = anyio.Event()
        while self.view.permissions:
            request = self.view.permissions.pop(0)
            request_id = str(request.get("id"))
            what = _permission_text(request)
            if not self.interactive_stdin:
                turn.aborting = True
                turn.error = f"the agent asked for permission ({what}); answer it in a terminal"
                await self._abort()
                return
            choices = escape("[o]nce / [a]lways / [r]eject:")
            answer = await self._read_line(
                f"[bold yellow]? allow {escape(what)}[/] [dim]{choices}[/] "
            )
            reply = _PERMISSION_REPLIES.get((answer or "r").strip().lower()[:1], "reject")
            try:
                await self.client.reply_permission(self.session_id, request_id, reply)
            except OpenCodeError as exc:
                # Unanswered, the turn would wait forever: end it, the chat goes on.
                self.out.note(f"[red]✘ {escape(str(exc))}[/]")
                turn.aborting = True
                await self._abort()
                return
            self.out.note(f"[dim]permission: {reply}[/]")

    async def _read_line(self, prompt: str) -> str | None:
        """A line typed on stdin (the terminal's own line editing), None at end of input."""
        self.out.prompt(prompt)
        fd = sys.stdin.fileno()
        await anyio.wait_readable(fd)
        data = os.read(fd, 65536)
        if not data:
            return None
        return data.decode("utf-8", "replace").rstrip("\n")


def _permission_text(request: JSON) -> str:
    title = request.get("title")
    if isinstance(title, str) and title:
        return title
    patterns = request.get("patterns") or request.get("pattern") or []
    if isinstance(patterns, str):
        patterns = [patterns]
    kind = request.get("permission") or request.get("type") or "a tool"
    return f"{kind} {' '.join(map(str, patterns))}".strip()


async def _cancel_when_set(event: anyio.Event, tasks: TaskGroup) -> None:
    await event.wait()
    tasks.cancel_scope.cancel()


async def _open_session(client: OpenCodeClient, session_id: str | None) -> str:
    if session_id is None:
        session: JSON = await client.create_session()
        return str(session["id"])
    try:
        await client.get_session(session_id)
    except (NotFound, ServerError) as exc:
        if isinstance(exc, ServerError) and exc.status >= 500:
            raise
        raise CommandError(
            f"unknown session {session_id!r} on {client.base_url}; leave out --session to start "
            "a new one"
        ) from exc
    return session_id


async def _chat(
    endpoint: Endpoint, settings: Settings, prompt: str | None, session: str | None
) -> int:
    out = Output()
    client = await connect(endpoint, settings)
    async with client:
        session_id = await _open_session(client, session)
        return await Chat(client, session_id, out).run(prompt)


def run_chat(settings: Settings, prompt: str | None, session: str | None) -> int:
    if prompt is None and not sys.stdin.isatty():
        prompt = sys.stdin.read()  # `echo … | openchamber chat`
    if prompt is not None and not prompt.strip():
        raise CommandError("the prompt is empty: pass PROMPT, or pipe one into stdin", Exit.USAGE)
    with opencode_endpoint(settings) as endpoint:
        return anyio.run(_chat, endpoint, settings, prompt, session)
