"""The local cache: what the store knew, kept in SQLite so a restart shows it at once.

One file per server identity (its URL and project directory) in the platform data dir.
Only settled state is kept (session infos, messages whose parts all ended, the outbox),
never half-streamed text: on start the server's answer replaces whatever the cache said.
A file that is not ours, from a newer schema or corrupt is moved aside with a notice,
never a crash. Blocking calls: run them in a worker thread (see `persist`).
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import platformdirs

JSON = dict[str, Any]

# "OCHB" in PRAGMA application_id: a SQLite file without it was not made here.
_APPLICATION_ID = 0x4F434842
# Schema version N is reached by running MIGRATIONS[N - 1]; append, never edit.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE sessions (id TEXT PRIMARY KEY, info BLOB NOT NULL);
    CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL,
        entry BLOB NOT NULL
    );
    CREATE INDEX messages_by_session ON messages (session_id, id);
    CREATE TABLE outbox (
        message_id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL,
        parts BLOB NOT NULL,
        options BLOB NOT NULL,
        created_ms INTEGER NOT NULL,
        state TEXT NOT NULL
    );
    """,
)


class CacheError(Exception):
    """The cache cannot be used at all (e.g. its directory is not writable)."""


def default_path(identity: str) -> Path:
    """Where the cache of the server known as `identity` lives."""
    readable = re.sub(r"[^A-Za-z0-9.-]+", "_", identity)[:60].strip("_")
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return Path(platformdirs.user_data_dir("openchamber")) / "cache" / f"{readable}-{digest}.db"


@dataclass
class Queued:
    """A message in the outbox, waiting to be delivered (or being delivered)."""

    message_id: str
    session_id: str
    parts: list[JSON]
    options: JSON  # model, agent
    created_ms: int
    state: str  # "queued" | "sending"


@dataclass
class Cached:
    """What a cache holds, as loaded at start."""

    sessions: list[JSON] = field(default_factory=list)
    messages: dict[str, list[JSON]] = field(default_factory=dict)  # session id -> entries
    outbox: list[Queued] = field(default_factory=list)


class Cache:
    """One SQLite cache file; thread-safe (one connection, one lock)."""

    def __init__(self, path: Path, identity: str) -> None:
        self.path = path
        self.identity = identity
        self.notice: str | None = None  # what happened to an unusable file, for the user
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(f"cannot create the cache directory {path.parent}: {exc}") from exc
        self._lock = threading.Lock()
        self._db = self._open()

    # ------------------------------------------------------------------ opening

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            moved = self.path.with_name(f"{self.path.name}.unusable-{int(time.time())}")
            for suffix in ("", "-wal", "-shm"):
                old = Path(f"{self.path}{suffix}")
                if old.exists():
                    old.replace(Path(f"{moved}{suffix}"))
            self.notice = f"cache file {self.path} was unusable ({exc}); moved aside to {moved}"
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, fast
            self._migrate(db)
        except BaseException:
            db.close()
            raise
        return db

    def _migrate(self, db: sqlite3.Connection) -> None:
        (app_id,) = db.execute("PRAGMA application_id").fetchone()
        (version,) = db.execute("PRAGMA user_version").fetchone()
        (tables,) = db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if app_id != _APPLICATION_ID and tables:
            raise sqlite3.DatabaseError("not an openchamber cache")
        if version > len(MIGRATIONS):
            raise sqlite3.DatabaseError(f"schema {version} is newer than this openchamber's")
        with _transaction(db):
            for number in range(version, len(MIGRATIONS)):
                # Statement by statement: executescript() would commit halfway.
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
            row = db.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('identity', ?)", (self.identity,))
            elif row[0] != self.identity:
                raise sqlite3.DatabaseError(f"the cache of another server ({row[0]})")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ reading

    def load(self) -> Cached:
        with self._lock:
            db = self._db
            cached = Cached()
            cached.sessions = [orjson.loads(i) for (i,) in db.execute("SELECT info FROM sessions")]
            for session_id, entry in db.execute(
                "SELECT session_id, entry FROM messages ORDER BY session_id, id"
            ):
                cached.messages.setdefault(session_id, []).append(orjson.loads(entry))
            cached.outbox = [
                Queued(m, s, orjson.loads(p), orjson.loads(o), c, state)
                for m, s, p, o, c, state in db.execute(
                    "SELECT message_id, session_id, parts, options, created_ms, state"
                    " FROM outbox ORDER BY created_ms, message_id"
                )
            ]
            return cached

    def info(self) -> JSON:
        with self._lock:
            counts = {
                table: self._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("sessions", "messages", "outbox")
            }
        size = sum(
            Path(f"{self.path}{s}").stat().st_size
            for s in ("", "-wal")
            if Path(f"{self.path}{s}").exists()
        )
        return {
            "path": str(self.path),
            "identity": self.identity,
            "schema": len(MIGRATIONS),
            "bytes": size,
            **counts,
        }

    # ------------------------------------------------------------------ writing

    def save(
        self,
        sessions: Iterable[tuple[str, JSON | None]] = (),
        messages: Iterable[tuple[str, str, JSON | None]] = (),
    ) -> None:
        """Write session infos and message entries; None deletes (a session with its
        messages). One transaction: a crash leaves the cache as before or after."""
        with self._lock, _transaction(self._db) as db:
            for session_id, info in sessions:
                if info is None:
                    db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
                    db.execute("DELETE FROM messages WHERE session_id = ?", (session_id,))
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO sessions VALUES (?, ?)",
                        (session_id, orjson.dumps(info)),
                    )
            for session_id, message_id, entry in messages:
                if entry is None:
                    db.execute("DELETE FROM messages WHERE id = ?", (message_id,))
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO messages VALUES (?, ?, ?)",
                        (message_id, session_id, orjson.dumps(entry)),
                    )

    def replace_session(self, session_id: str, entries: list[JSON]) -> None:
        """The server's whole answer for a session: what it no longer has goes."""
        with self._lock, _transaction(self._db) as db:
            db.execute("DELETE FROM messages WHERE session_id = ?", (session_id,))
            db.executemany(
                "INSERT INTO messages VALUES (?, ?, ?)",
                [(e["info"]["id"], session_id, orjson.dumps(e)) for e in entries],
            )

    def keep_sessions(self, session_ids: set[str]) -> None:
        """The server's whole session list: every other session (and its messages) goes."""
        with self._lock, _transaction(self._db) as db:
            known = {sid for (sid,) in db.execute("SELECT id FROM sessions")}
            for gone in known - session_ids:
                db.execute("DELETE FROM sessions WHERE id = ?", (gone,))
                db.execute("DELETE FROM messages WHERE session_id = ?", (gone,))

    def enqueue(self, item: Queued) -> bool:
        """Add to the outbox; False if that message id is already there."""
        with self._lock, _transaction(self._db) as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO outbox VALUES (?, ?, ?, ?, ?, ?)",
                (
                    item.message_id,
                    item.session_id,
                    orjson.dumps(item.parts),
                    orjson.dumps(item.options),
                    item.created_ms,
                    item.state,
                ),
            )
            return cursor.rowcount == 1

    def set_outbox_state(self, message_id: str, state: str) -> None:
        with self._lock, _transaction(self._db) as db:
            db.execute("UPDATE outbox SET state = ? WHERE message_id = ?", (state, message_id))

    def edit_queued(self, message_id: str, parts: list[JSON]) -> bool:
        """Change a queued message's parts; False unless it is queued (not being sent)."""
        with self._lock, _transaction(self._db) as db:
            cursor = db.execute(
                "UPDATE outbox SET parts = ? WHERE message_id = ? AND state = 'queued'",
                (orjson.dumps(parts), message_id),
            )
            return cursor.rowcount == 1

    def rekey(self, old_id: str, new_id: str, parts: list[JSON]) -> bool:
        """Give a queued message a new id (and parts); False unless it is queued."""
        with self._lock, _transaction(self._db) as db:
            cursor = db.execute(
                "UPDATE outbox SET message_id = ?, parts = ? WHERE message_id = ?"
                " AND state = 'queued'",
                (new_id, orjson.dumps(parts), old_id),
            )
            return cursor.rowcount == 1

    def dequeue(self, message_id: str, *, only_queued: bool = False) -> bool:
        """Remove from the outbox (delivered, or cancelled while still queued)."""
        query = "DELETE FROM outbox WHERE message_id = ?"
        if only_queued:
            query += " AND state = 'queued'"
        with self._lock, _transaction(self._db) as db:
            return db.execute(query, (message_id,)).rowcount == 1

    def clear(self) -> None:
        """Forget everything but the outbox (unsent messages are the user's words)."""
        with self._lock, _transaction(self._db) as db:
            db.execute("DELETE FROM sessions")
            db.execute("DELETE FROM messages")


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
