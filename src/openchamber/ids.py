"""Client-made ids that sort where OpenCode's own would.

OpenCode orders messages and parts by id, so an id we make must follow its ascending scheme:
`<prefix>_` + 6 big-endian bytes of `(ms * 0x1000 + counter)` (low 48 bits) in hex + 14
random base62 characters.
"""

from __future__ import annotations

import secrets
import threading
import time

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_RANDOM_CHARS = 14
_lock = threading.Lock()
_last_ms = 0
_counter = 0


def ascending(prefix: str, now_ms: int | None = None) -> str:
    """A new id like `msg_210eed62a001eLQjeO2PknpA4V`, later than any made before it here."""
    global _last_ms, _counter
    with _lock:
        ms = int(time.time() * 1000) if now_ms is None else now_ms
        if ms != _last_ms:
            _last_ms, _counter = ms, 0
        _counter += 1
        stamp = (ms * 0x1000 + _counter) & 0xFFFF_FFFF_FFFF
    tail = "".join(secrets.choice(_BASE62) for _ in range(_RANDOM_CHARS))
    return f"{prefix}_{stamp:012x}{tail}"


def message_id() -> str:
    return ascending("msg")


def part_id() -> str:
    return ascending("prt")


def age_ms(made_id: str, now_ms: int | None = None) -> int | None:
    """How long ago an ascending id was made; None if it is not one."""
    _, _, rest = made_id.partition("_")
    try:
        stamp = int(rest[:12], 16)
    except ValueError:
        return None
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    # The stamp holds the low 48 bits of ms * 0x1000 + counter: the low 36 bits of ms.
    return (ms - (stamp >> 12)) & 0xF_FFFF_FFFF
