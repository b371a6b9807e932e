"""Who may talk to the bridge: the holder of the launch's token, through the bound address.

A loopback port is reachable by every web page the user opens, so loopback alone is no
protection. Each request must carry the token (a Bearer header, or the cookie that the
one-time `/?token=` URL sets), name the bound address in `Host` (a DNS-rebinding page
names its own) and, when the browser sends `Origin`, come from that same address.
"""

from __future__ import annotations

import hmac
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "openchamber_token"
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """`Host` header values that name the bridge bound at `host:port`."""
    name = f"[{host}]" if ":" in host else host
    return frozenset(f"{n}:{port}" for n in {name, *_LOOPBACK_NAMES})


class AccessControl:
    """ASGI middleware: 403 unless Host, Origin and token check out; sets the cookie."""

    def __init__(self, app: ASGIApp, *, token: str, hosts: frozenset[str]) -> None:
        self.app = app
        self.token = token.encode()
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(headers)
        if refusal is None and not self._has_token(headers):
            offered = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
            at_index = scope["type"] == "http" and scope["path"] == "/"
            if at_index and offered and self._is_token(offered[0]):
                await _redirect_with_cookie(send, self.token.decode())
                return
            refusal = "missing or wrong token: open the URL that `openchamber serve` printed"
        if refusal is not None:
            await _refuse(scope, receive, send, refusal)
            return
        await self.app(scope, receive, send)

    def _refusal(self, headers: dict[str, str]) -> str | None:
        host = headers.get("host", "")
        if host not in self.hosts:
            return f"Host {host!r} is not this bridge"
        origin = headers.get("origin")
        if origin is not None and origin != f"http://{host}":
            return f"Origin {origin!r} may not use this bridge"
        return None

    def _has_token(self, headers: dict[str, str]) -> bool:
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self._is_token(credentials.strip()):
            return True
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header is just no token (CookieError et al.)
            return False
        morsel = cookie.get(COOKIE)
        return morsel is not None and self._is_token(morsel.value)

    def _is_token(self, offered: str) -> bool:
        return hmac.compare_digest(offered.encode(), self.token)


async def _redirect_with_cookie(send: Send, token: str) -> None:
    """Trade the one-time URL for a cookie, and drop the token from the address bar."""
    cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [
                (b"location", b"/"),
                (b"set-cookie", cookie.encode()),
                (b"cache-control", b"no-store"),
                (b"content-length", b"0"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})


async def _refuse(scope: Scope, receive: Receive, send: Send, reason: str) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        # Closing before accepting makes the server answer the handshake with 403.
        close: Message = {"type": "websocket.close", "code": 1008, "reason": reason[:120]}
        await send(close)
        return
    body = orjson.dumps({"error": reason})
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
