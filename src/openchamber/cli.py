"""The `openchamber` command line.

Exit codes: 0 success, 1 the check or command failed, 2 wrong usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from openchamber import __version__
from openchamber.replay import CaptureError, Replay, read_capture, replay

EXAMPLES = {
    "replay": """examples:
  openchamber replay ../shared/captures/opencode-1.18.33.sse.gz
  openchamber replay capture.sse --json | jq '.sessions | keys'""",
    "doctor": """examples:
  openchamber doctor                                  # checks an embedded opencode serve
  openchamber doctor --opencode http://127.0.0.1:4096
  OPENCODE_SERVER_PASSWORD=secret openchamber doctor --opencode http://host:4096""",
}


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str
) -> argparse.ArgumentParser:
    return commands.add_parser(
        name,
        help=summary,
        description=summary,
        epilog=EXAMPLES.get(name),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openchamber",
        description="A native runtime for OpenCode chat clients.",
    )
    parser.add_argument("--version", action="version", version=f"openchamber {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    replay_cmd = _command(
        commands, "replay", "Feed a raw event-stream capture through the runtime; print the state."
    )
    replay_cmd.add_argument("capture", type=Path, help="a .sse or .sse.gz capture")
    replay_cmd.add_argument(
        "--json", action="store_true", help="print the final state as one JSON object"
    )

    doctor_cmd = _command(
        commands, "doctor", "Check an OpenCode server and explain what is wrong with it."
    )
    doctor_cmd.add_argument(
        "--opencode", metavar="URL", help="the server to check (default: start an embedded one)"
    )
    doctor_cmd.add_argument(
        "--seconds", type=float, default=3.0, help="how long to watch the event stream"
    )
    return parser


def run_replay(args: argparse.Namespace, out: Console) -> int:
    try:
        result = replay(read_capture(args.capture))
    except CaptureError as exc:
        Console(stderr=True).print(f"[red]error:[/] {exc}")
        return 1
    if args.json:
        state = {"sessions": {sid: result.store.messages(sid) for sid in result.store.sessions}}
        sys.stdout.buffer.write(orjson.dumps(state) + b"\n")
        return 0
    out.print(_replay_summary(result))
    out.print(_anomaly_report(result))
    return 0


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
            f"[dim]{diagnostic.excerpt[:80]}[/]",
        )
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Console()
    try:
        if args.command == "replay":
            return run_replay(args, out)
        if args.command in ("doctor", None):
            from openchamber.doctor import run_doctor

            return run_doctor(getattr(args, "opencode", None), getattr(args, "seconds", 3.0), out)
    except KeyboardInterrupt:
        return 130
    parser.print_help()
    return 2
