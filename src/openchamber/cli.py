"""The `openchamber` command line.

Every subcommand is one `Command` in `COMMANDS`: its flags, its examples and a handler
that returns the exit code. A handler raises `CommandError` (or `ConfigError`) for a
failure the user can fix; `main` prints it as one line and exits with its code.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from openchamber import __version__
from openchamber.client import OpenCodeError
from openchamber.config import ConfigError, Settings, resolve

if TYPE_CHECKING:
    from openchamber.serve import BridgeOptions
from openchamber.connect import EXIT_CODES, CommandError, Exit, command_error, stderr
from openchamber.replay import CaptureError, Replay, capture_header, read_capture, replay

ENVIRONMENT = """environment (flags win over it; it wins over the config file):
  OPENCHAMBER_OPENCODE_URL   the server, as --opencode
  OPENCHAMBER_DIRECTORY      the project directory, as --directory
  OPENCHAMBER_HOST, OPENCHAMBER_PORT   where an embedded server listens
  OPENCODE_SERVER_PASSWORD, OPENCODE_SERVER_USERNAME   the server's credentials
  OPENCHAMBER_CONFIG         the config file (see `openchamber config`)"""


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    examples: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    talks_to_server: bool = True  # its help lists the environment


def _server_flags(parser: argparse.ArgumentParser, *, embedded: bool) -> None:
    default = "start an embedded `opencode serve`" if embedded else "required"
    parser.add_argument(
        "--opencode", metavar="URL", help=f"the OpenCode server (default: {default})"
    )
    parser.add_argument(
        "--directory", metavar="DIR", help="the project directory (default: the server's own)"
    )
    if embedded:
        parser.add_argument("--host", help="where the embedded server listens (127.0.0.1)")
        parser.add_argument(
            "--port", help="the embedded server's port (default: a free one)", metavar="PORT"
        )


# ---------------------------------------------------------------------------- replay


def _replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("capture", type=Path, help="a .sse or .sse.gz capture")
    parser.add_argument(
        "--json", action="store_true", help="print the final state as one JSON object"
    )


def run_replay(args: argparse.Namespace) -> int:
    try:
        data = read_capture(args.capture)
    except CaptureError as exc:
        raise CommandError(f"{exc}; is it a capture made by `openchamber capture`?") from exc
    result = replay(data)
    if args.json:
        state = {"sessions": {sid: result.store.messages(sid) for sid in result.store.sessions}}
        sys.stdout.buffer.write(orjson.dumps(state) + b"\n")
        return Exit.OK
    out = Console()
    header = capture_header(data)
    if header is not None:
        out.print(_capture_summary(header))
    out.print(_replay_summary(result))
    out.print(_anomaly_report(result))
    return Exit.OK


def _capture_summary(header: dict[str, object]) -> Table:
    table = Table(title="captured", title_justify="left", show_header=False)
    for key in ("url", "status", "started"):
        table.add_row(key, escape(str(header.get(key, ""))))
    headers = header.get("response_headers")
    for name, value in headers.items() if isinstance(headers, dict) else ():
        table.add_row(escape(str(name)), escape(str(value)))
    return table


def _replay_summary(result: Replay) -> Table:
    table = Table(title=f"{result.frames} events replayed", title_justify="left")
    for column in ("session", "messages", "parts", "text chars", "status"):
        table.add_column(column)
    store = result.store
    for session_id, session in store.sessions.items():
        messages = store.messages(session_id)
        parts = [p for m in messages for p in m["parts"]]
        chars = sum(len(p.get("text", "")) for p in parts if isinstance(p.get("text"), str))
        table.add_row(
            session_id, str(len(messages)), str(len(parts)), str(chars), session.status["type"]
        )
    return table


def _anomaly_report(result: Replay) -> Table:
    table = Table(title="anomalies", title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    rows = dict(result.store.anomalies)
    for kind, count in result.store.raw_types.items():
        rows[f"passed through untyped: {kind}"] = count
    for what, count in sorted(rows.items()):
        table.add_row(what, str(count))
    if not rows:
        table.add_row("none", "0")
    for diagnostic in result.diagnostics[:20]:
        table.add_row(
            f"{diagnostic.kind} near byte {diagnostic.offset}: {diagnostic.message}",
            f"[dim]{escape(diagnostic.excerpt[:80])}[/]",
        )
    return table


# ---------------------------------------------------------------------------- config


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    _server_flags(parser, embedded=True)


def run_config(args: argparse.Namespace) -> int:
    settings = resolve(args)
    rows = settings.rows()
    if args.json:
        shown = {name: {"value": value, "source": source} for name, value, source in rows}
        sys.stdout.buffer.write(orjson.dumps(shown) + b"\n")
        return Exit.OK
    table = Table(title="openchamber settings", title_justify="left")
    for column in ("setting", "value", "from"):
        table.add_column(column)
    for name, value, source in rows:
        table.add_row(name, escape(value) or "[dim](none)[/]", escape(source))
    Console().print(table)
    return Exit.OK


# ---------------------------------------------------------------------------- doctor


def _doctor_arguments(parser: argparse.ArgumentParser) -> None:
    _server_flags(parser, embedded=True)
    parser.add_argument(
        "--seconds",
        type=float,
        default=12.0,
        help="how long to watch the event stream (12: long enough for one 10 s heartbeat)",
    )


def run_doctor(args: argparse.Namespace) -> int:
    from openchamber.doctor import run_doctor

    return run_doctor(resolve(args), args.seconds, Console())


# ---------------------------------------------------------------------------- chat


def _chat_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", nargs="?", help="send this, print the reply and exit")
    parser.add_argument("--session", metavar="ID", help="continue this session (default: new)")
    _server_flags(parser, embedded=True)


def run_chat(args: argparse.Namespace) -> int:
    from openchamber.chat import run_chat

    return run_chat(resolve(args), args.prompt, args.session)


# ---------------------------------------------------------------------------- events


def _events_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--raw", action="store_true", help="print each frame's data as sent, not normalized"
    )
    parser.add_argument(
        "--type",
        dest="types",
        action="append",
        metavar="T",
        help="only events of type T (repeatable): a wire type such as message.part.delta, "
        "or a normalized one such as PartDelta",
    )
    _server_flags(parser, embedded=False)


def run_events(args: argparse.Namespace) -> int:
    from openchamber.events import run_events

    return run_events(resolve(args), raw=args.raw, types=args.types or [])


# ---------------------------------------------------------------------------- capture


def _capture_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, metavar="OUT", help="the file (.sse, or .sse.gz)")
    parser.add_argument(
        "--seconds", type=float, help="stop after this long (default: until Ctrl-C)"
    )
    _server_flags(parser, embedded=False)


def run_capture(args: argparse.Namespace) -> int:
    from openchamber.capture import run_capture

    return run_capture(resolve(args), args.out, args.seconds)


# ---------------------------------------------------------------------------- serve


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    _server_flags(parser, embedded=False)
    parser.add_argument("--host", help="where the bridge listens (default: 127.0.0.1)")
    parser.add_argument("--port", metavar="N", help="the bridge's port (default: a free one)")
    parser.add_argument(
        "--token",
        help="the key to the UI (default: $OPENCHAMBER_TOKEN, else a new one per launch)",
    )
    parser.add_argument("--no-browser", action="store_true", help="do not open the UI")
    parser.add_argument(
        "--no-cache", action="store_true", help="neither read nor write the local cache"
    )


def _bridge_options(args: argparse.Namespace, settings: Settings) -> BridgeOptions:
    from openchamber.serve import BridgeOptions

    return BridgeOptions(
        host=settings.host.value,
        port=settings.port.value or 0,
        token=args.token or os.environ.get("OPENCHAMBER_TOKEN") or None,
        cache=not args.no_cache,
    )


def run_serve(args: argparse.Namespace) -> int:
    from openchamber.serve import open_in_browser, run_serve

    settings = resolve(args)
    opener = None if args.no_browser else open_in_browser
    return run_serve(settings, _bridge_options(args, settings), opener)


def run_desktop(args: argparse.Namespace) -> int:
    from openchamber.serve import run_desktop

    settings = resolve(args)
    return run_desktop(settings, _bridge_options(args, settings))


def run_demo(args: argparse.Namespace) -> int:
    from openchamber.serve import open_in_browser, run_demo

    settings = resolve(args)
    opener = None if args.no_browser else open_in_browser
    return run_demo(settings, _bridge_options(args, settings), opener)


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="where the bridge listens (default: 127.0.0.1)")
    parser.add_argument("--port", metavar="N", help="the bridge's port (default: a free one)")
    parser.add_argument("--token", help="the key to the UI (default: a new one)")
    parser.add_argument("--no-browser", action="store_true", help="do not open the UI")
    parser.set_defaults(no_cache=True)


# ---------------------------------------------------------------------------- cache


def _cache_arguments(parser: argparse.ArgumentParser) -> None:
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--info", action="store_true", help="where it is and what it holds")
    action.add_argument(
        "--clear", action="store_true", help="forget cached history (unsent messages stay)"
    )
    parser.add_argument(
        "--opencode", metavar="URL", help="the server whose cache (default: the embedded one)"
    )
    parser.add_argument("--directory", metavar="DIR", help="the project directory")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run_cache(args: argparse.Namespace) -> int:
    from openchamber.cache import Cache, CacheError, default_path
    from openchamber.connect import Endpoint
    from openchamber.serve import cache_identity

    settings = resolve(args)
    directory = settings.directory.value or (None if settings.opencode.value else Path.cwd())
    endpoint = Endpoint(
        settings.opencode.value or "",
        None,
        str(directory) if directory else None,
        embedded=settings.opencode.value is None,
    )
    identity = cache_identity(endpoint)
    path = default_path(identity)
    if not path.exists():
        stderr().print(f"openchamber: no cache for {identity} (it would be {path})")
        return Exit.OK
    try:
        cache = Cache(path, identity)
    except CacheError as exc:
        raise CommandError(str(exc)) from exc
    if cache.notice:
        stderr().print(f"[yellow]openchamber:[/] {escape(cache.notice)}")
    if args.clear:
        cache.clear()
    info = cache.info()
    cache.close()
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(info) + b"\n")
        return Exit.OK
    table = Table(title="openchamber cache" + (" (cleared)" if args.clear else ""))
    for column in ("", ""):
        table.add_column(column)
    for name, value in info.items():
        table.add_row(name, escape(str(value)))
    Console().print(table)
    return Exit.OK


COMMANDS = (
    Command(
        "serve",
        "Start the bridge and its chat UI over an OpenCode server (embedded by default).",
        """examples:
  openchamber serve                                   # embedded opencode serve, opens the UI
  openchamber serve --opencode http://127.0.0.1:4096 --no-browser
  openchamber serve --port 4400 --directory ~/src/project

It prints the UI's URL (with its one-time token) and runs until Ctrl-C. A server that is
down is no error: the UI shows what is cached and sends queued messages once it is back.""",
        _serve_arguments,
        run_serve,
    ),
    Command(
        "desktop",
        "The chat UI in a window of its own (pywebview if installed, else an app-mode browser).",
        """examples:
  openchamber desktop
  pip install 'openchamber[desktop]' && openchamber desktop --opencode http://127.0.0.1:4096""",
        _serve_arguments,
        run_desktop,
    ),
    Command(
        "demo",
        "Try openchamber offline: a scripted model, an embedded opencode serve, the chat UI.",
        """examples:
  openchamber demo
  openchamber demo --no-browser --port 4400

The model is scripted: `reply=markdown`, `reply=long len=5000 chunk=5 delay=2`, ...""",
        _demo_arguments,
        run_demo,
        talks_to_server=False,
    ),
    Command(
        "cache",
        "Show or clear the local cache of a server's history.",
        """examples:
  openchamber cache --info
  openchamber cache --clear --opencode http://127.0.0.1:4096""",
        _cache_arguments,
        run_cache,
    ),
    Command(
        "chat",
        "Chat with OpenCode in the terminal: replies stream in, tools and permissions inline.",
        """examples:
  openchamber chat                                    # a new session, interactive
  openchamber chat "explain src/app.py"               # print the reply and exit
  openchamber chat --session ses_3f2… "and now?"      # continue a session
  openchamber chat --opencode http://127.0.0.1:4096 --directory ~/src/project
  echo "summarize README.md" | openchamber chat > summary.md

In a terminal: Ctrl-C aborts the running reply, a second Ctrl-C (or Ctrl-D) exits.""",
        _chat_arguments,
        run_chat,
    ),
    Command(
        "doctor",
        "Check an OpenCode server and explain what is wrong with it.",
        """examples:
  openchamber doctor                                  # checks an embedded opencode serve
  openchamber doctor --opencode http://127.0.0.1:4096
  OPENCODE_SERVER_PASSWORD=secret openchamber doctor --opencode http://host:4096""",
        _doctor_arguments,
        run_doctor,
    ),
    Command(
        "events",
        "Print a server's event stream, one JSON object per line.",
        """examples:
  openchamber events --opencode http://127.0.0.1:4096
  openchamber events --type PartDelta --type SessionStatus
  openchamber events --raw --type message.part.delta | jq .payload.properties.delta

Normalized events reconnect (and say so on stderr); --raw reads one connection.""",
        _events_arguments,
        run_events,
    ),
    Command(
        "capture",
        "Record a server's raw /global/event stream, credentials redacted, for `replay`.",
        """examples:
  openchamber capture session.sse --opencode http://127.0.0.1:4096   # until Ctrl-C
  openchamber capture bug.sse.gz --seconds 60
  openchamber replay bug.sse.gz""",
        _capture_arguments,
        run_capture,
    ),
    Command(
        "replay",
        "Feed a raw event-stream capture through the runtime; print the state.",
        """examples:
  openchamber replay ../shared/captures/opencode-1.18.33.sse.gz
  openchamber replay capture.sse --json | jq '.sessions | keys'""",
        _replay_arguments,
        run_replay,
        talks_to_server=False,
    ),
    Command(
        "config",
        "Show the settings in effect and where each came from (never the password).",
        """examples:
  openchamber config
  OPENCHAMBER_PORT=4100 openchamber config --json

The config file is TOML, e.g.:
  opencode = "http://127.0.0.1:4096"
  directory = "~/src/project"
  port = 4100""",
        _config_arguments,
        run_config,
    ),
)

# What `openchamber` alone runs: the app.
DEFAULT_COMMAND = "serve"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openchamber",
        description="A native runtime for OpenCode chat clients.",
        epilog=f"Without a command: `openchamber {DEFAULT_COMMAND}`.\n\n{EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"openchamber {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        epilog = [command.examples, EXIT_CODES]
        if command.talks_to_server:
            epilog.append(ENVIRONMENT)
        command.arguments(
            commands.add_parser(
                command.name,
                help=command.summary,
                description=command.summary,
                epilog="\n\n".join(epilog),
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args([DEFAULT_COMMAND])
    handlers = {command.name: command.run for command in COMMANDS}
    try:
        return handlers[args.command](args)
    except BaseException as exc:  # every failure ends as one line and an exit code
        return _exit_for(_single(exc))


def _single(exc: BaseException) -> BaseException:
    """The one exception inside (nested) task-group wrappers, if there is just one."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _exit_for(exc: BaseException) -> int:
    match exc:
        case ConfigError():
            return _fail(f"{exc}; see `openchamber config`", Exit.USAGE)
        case CommandError():
            return _fail(str(exc), exc.code)
        case OpenCodeError():
            return _exit_for(command_error(exc))
        case KeyboardInterrupt():
            return Exit.INTERRUPTED
        case BrokenPipeError():
            # The reader went away (`| head`): that ends the output, not in error. Point
            # stdout at /dev/null so the interpreter's final flush does not complain.
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return Exit.OK
        case SystemExit():
            raise exc
    if os.environ.get("OPENCHAMBER_DEBUG"):
        raise exc
    what = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
    return _fail(
        f"unexpected error ({what}); run with OPENCHAMBER_DEBUG=1 for details, and please "
        "report it",
        Exit.FAILED,
    )


def _fail(message: str, code: int) -> int:
    stderr().print(f"[red]openchamber: error:[/] {escape(message)}")
    return code
