"""Masking credentials in text that leaves the process: diagnostics, captures, debug logs."""

from __future__ import annotations

import re

_SECRET_KEYS = r"password|passwd|token|secret|api[_-]?key|apikey|authorization|cookie|credential"
_JSON_SECRET = re.compile(rf'("(?:[\w-]*(?:{_SECRET_KEYS})[\w-]*)"\s*:\s*)"(?:[^"\\]|\\.)*"', re.I)
_HEADER_SECRET = re.compile(r"\b(Basic|Bearer|Token)\s+[A-Za-z0-9._~+/=-]{4,}", re.I)
_URL_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@", re.I)
_KEY_LIKE = re.compile(r"\b(sk|pk|rk)-[A-Za-z0-9_-]{12,}\b")

MASK = "***"


def redact(text: str) -> str:
    """`text` with secret-looking JSON values, auth headers, URL passwords and keys masked."""
    text = _JSON_SECRET.sub(rf'\1"{MASK}"', text)
    text = _HEADER_SECRET.sub(rf"\1 {MASK}", text)
    text = _URL_USERINFO.sub(rf"\1{MASK}@", text)
    return _KEY_LIKE.sub(rf"\1-{MASK}", text)
