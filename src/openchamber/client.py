"""Async REST client for the OpenCode endpoints a chat client needs.

Every failure raises an `OpenCodeError` subclass that says what happened and what to try;
idempotent calls retry transport failures with backoff; a send carries a client-made
message id so that a retry after an unclear failure never makes a second user message.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import anyio
import httpx
import orjson

from openchamber import ids
from openchamber.backoff import Backoff

JSON = dict[str, Any]


def server_url(text: str) -> str:
    """`text` as an OpenCode server's base URL (http or https, with a host); ValueError
    saying why it is not one."""
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise ValueError(f"not a valid server URL: {text!r} ({exc})") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"not a valid server URL: {text!r} (expected http://host:port)")
    return str(url).rstrip("/")


class OpenCodeError(Exception):
    """Base of every client failure; `str()` is a one-line explanation."""


class Unreachable(OpenCodeError):
    """No connection could be made or it broke before an answer.

    `maybe_sent` is False only when no connection was made: the server cannot have the
    request.
    """

    def __init__(self, message: str, *, maybe_sent: bool = True) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent


class RequestTimeout(Unreachable):
    """The server took longer than allowed to answer."""


class AuthRefused(OpenCodeError):
    """401/403: the password is missing or wrong."""


class NotFound(OpenCodeError):
    """404: no such session, message or route."""


class ServerError(OpenCodeError):
    """The server answered with an error status; `status` and its own message kept."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class BadResponse(OpenCodeError):
    """The answer was not what the endpoint promises (e.g. not JSON)."""


def _id(message: JSON) -> str:
    message_id: str = message["info"]["id"]
    return message_id


def credentials_from_env() -> tuple[str, str] | None:
    password = os.environ.get("OPENCODE_SERVER_PASSWORD")
    if not password:
        return None
    return (os.environ.get("OPENCODE_SERVER_USERNAME", "opencode"), password)


def _server_message(response: httpx.Response) -> str:
    """The server's own words from an error body, trimmed; never a decoding error."""
    text = response.text.strip()
    try:
        body = response.json()
    except ValueError:
        return text[:300] or response.reason_phrase
    if isinstance(body, dict):
        data = body.get("data")
        for candidate in (
            data.get("message") if isinstance(data, dict) else None,
            body.get("message"),
            body.get("error"),
            body.get("name"),
        ):
            if isinstance(candidate, str) and candidate:
                return candidate[:300]
    return text[:300]


class OpenCodeClient:
    """One OpenCode server (and one project directory on it).

    `auth` defaults to `OPENCODE_SERVER_PASSWORD`/`OPENCODE_SERVER_USERNAME`; it is sent
    as HTTP Basic auth and never logged. `directory` is passed on every call.
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: tuple[str, str] | None = None,
        directory: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        try:
            self.base_url = server_url(base_url)
        except ValueError as exc:
            raise OpenCodeError(str(exc)) from exc
        self.directory = directory
        self.retries = retries
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            auth=auth if auth is not None else credentials_from_env(),
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json"},
        )

    async def __aenter__(self) -> OpenCodeClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def http(self) -> httpx.AsyncClient:
        """The underlying client (the stream runner opens its long request on it)."""
        return self._http

    # ------------------------------------------------------------------ plumbing

    def _params(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        params = {k: v for k, v in (extra or {}).items() if v is not None}
        if self.directory is not None:
            params["directory"] = self.directory
        return params

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Send one request; raise a typed error for anything but a 2xx answer.

        Idempotent requests (GET, DELETE by default) retry transport failures with backoff.
        """
        retry = method in ("GET", "DELETE") if idempotent is None else idempotent
        backoff = Backoff(base=0.25, cap=4.0)
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    method, path, json=json, params=self._params(params)
                )
            except httpx.TimeoutException as exc:
                failure: Unreachable = RequestTimeout(
                    f"{method} {path}: no answer from {self.base_url} in time "
                    f"({type(exc).__name__})",
                    maybe_sent=not isinstance(exc, httpx.ConnectTimeout),
                )
            except httpx.TransportError as exc:
                failure = Unreachable(
                    f"{method} {path}: cannot reach {self.base_url} ({exc or type(exc).__name__}); "
                    "is `opencode serve` running there?",
                    maybe_sent=not isinstance(exc, httpx.ConnectError),
                )
            else:
                return self._check(method, path, response)
            attempt += 1
            if not retry or attempt > self.retries:
                raise failure
            await anyio.sleep(backoff.next())

    def _check(self, method: str, path: str, response: httpx.Response) -> httpx.Response:
        status = response.status_code
        if status < 400:
            return response
        where = f"{method} {path}"
        if status in (401, 403):
            hint = (
                "set OPENCODE_SERVER_PASSWORD"
                if self._http.auth is None
                else "check OPENCODE_SERVER_PASSWORD"
            )
            raise AuthRefused(f"{where}: the server refused the credentials ({status}); {hint}")
        if status == 404:
            raise NotFound(f"{where}: not found ({_server_message(response)})")
        raise ServerError(f"{where}: server error {status}: {_server_message(response)}", status)

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            content_type = response.headers.get("content-type", "none")
            raise BadResponse(
                f"{method} {path}: expected JSON, got {content_type}: {response.text[:200]!r}"
            ) from exc

    # ------------------------------------------------------------------ endpoints

    async def health(self) -> JSON:
        """`{"healthy": True, "version": "…" | None}`; 1.0.x has no /global/health."""
        try:
            body = await self._json("GET", "/global/health")
            if isinstance(body, dict) and "healthy" in body:
                return body
        except (NotFound, ServerError, BadResponse):
            pass
        await self.request("GET", "/path")
        return {"healthy": True, "version": None}

    async def paths(self) -> JSON:
        """`GET /path`: the server's home, state, config, worktree and project directory."""
        paths: JSON = await self._json("GET", "/path")
        return paths

    async def list_sessions(self) -> list[JSON]:
        sessions: list[JSON] = await self._json("GET", "/session")
        return sessions

    async def create_session(self, title: str | None = None) -> JSON:
        body = {"title": title} if title else {}
        session: JSON = await self._json("POST", "/session", json=body)
        return session

    async def get_session(self, session_id: str) -> JSON:
        session: JSON = await self._json("GET", f"/session/{session_id}")
        return session

    async def delete_session(self, session_id: str) -> None:
        await self.request("DELETE", f"/session/{session_id}")

    async def messages(
        self, session_id: str, *, limit: int | None = None, before: str | None = None
    ) -> list[JSON]:
        """A session's messages, oldest first: all of them, or the newest `limit`; with
        `before` (a message id) only those older than that message.

        Every version takes `limit` (the newest N). 1.18 pages further back with an opaque
        cursor (`before`, from its `X-Next-Cursor` header), which is the base64url JSON
        `{"id", "time"}` of the oldest message of the page before, `time` being that
        message's `time.created`; such a cursor is made here from the message. Servers
        that refuse the cursor or ignore it (1.0.x answers the newest N whatever `before`
        says) get `before` emulated: all messages, cut here (message ids ascend).
        """
        if before is None:
            return await self._message_list(session_id, {"limit": limit})
        if limit:
            page = await self._page_before(session_id, limit, before)
            if page is not None:
                return page
        older = [m for m in await self._message_list(session_id, {}) if _id(m) < before]
        return older[-limit:] if limit else older

    async def _message_list(self, session_id: str, params: Mapping[str, Any]) -> list[JSON]:
        messages: list[JSON] = await self._json(
            "GET", f"/session/{session_id}/message", params=params
        )
        return messages

    async def _page_before(self, session_id: str, limit: int, before: str) -> list[JSON] | None:
        """The server's own page older than message `before`; None if it has none to give
        (no such message to make a cursor from, cursor refused, or `before` ignored)."""
        try:
            anchor = await self.message(session_id, before)
            created = anchor["info"]["time"]["created"]
        except (NotFound, KeyError, TypeError):
            return None
        cursor = base64.urlsafe_b64encode(orjson.dumps({"id": before, "time": created}))
        params = {"limit": limit, "before": cursor.decode().rstrip("=")}
        try:
            page = await self._message_list(session_id, params)
        except ServerError as exc:
            if exc.status != 400:
                raise
            return None
        # A server that ignored the cursor answered the newest messages: right only if
        # they are all older than `before` anyway.
        return page if all(_id(m) < before for m in page) else None

    async def message(self, session_id: str, message_id: str) -> JSON:
        message: JSON = await self._json("GET", f"/session/{session_id}/message/{message_id}")
        return message

    async def session_status(self) -> dict[str, JSON] | None:
        """Non-idle sessions and their status; None where the server has no such route
        (1.0.x answers `/session/status` with an unrelated list)."""
        status = await self._json("GET", "/session/status")
        return status if isinstance(status, dict) else None

    async def send(
        self,
        session_id: str,
        parts: list[JSON],
        *,
        message_id: str | None = None,
        model: JSON | None = None,
        agent: str | None = None,
        retries: int | None = None,
    ) -> str:
        """Send a prompt; returns its message id once the server has it.

        `retries` (default: the client's) bounds the attempts after a transport failure.

        Uses `prompt_async` (the turn's progress arrives on the event stream). After an
        unclear failure (the connection broke, no answer) the server may or may not have
        the message: ask for it by id, and resend only if it is not there — the server
        does not make a resend idempotent itself.
        """
        message_id = message_id or ids.message_id()
        # Parts get client-made ids too: a resend then rewrites the same parts instead of
        # appending copies (the server was seen doubling a resent text part otherwise).
        parts = [part if "id" in part else {**part, "id": ids.part_id()} for part in parts]
        body: JSON = {"messageID": message_id, "parts": parts}
        if model is not None:
            body["model"] = model
        if agent is not None:
            body["agent"] = agent
        backoff = Backoff(base=0.25, cap=4.0)
        attempt = 0
        maybe_sent = False
        while True:
            try:
                await self.request(
                    "POST", f"/session/{session_id}/prompt_async", json=body, idempotent=False
                )
                return message_id
            except Unreachable as exc:
                maybe_sent = maybe_sent or exc.maybe_sent
                attempt += 1
                if attempt > (self.retries if retries is None else retries):
                    exc.maybe_sent = maybe_sent  # any attempt may have got through
                    raise
            await anyio.sleep(backoff.next())
            if await self._has_message(session_id, message_id):
                return message_id

    async def _has_message(self, session_id: str, message_id: str) -> bool:
        try:
            await self.message(session_id, message_id)
        except NotFound:
            return False
        return True

    async def abort(self, session_id: str) -> None:
        await self.request("POST", f"/session/{session_id}/abort", idempotent=True)

    async def revert(self, session_id: str, message_id: str, part_id: str | None = None) -> JSON:
        """Take back the session from `message_id` (or its part `part_id`) on."""
        body = {"messageID": message_id, **({"partID": part_id} if part_id else {})}
        session: JSON = await self._json(
            "POST", f"/session/{session_id}/revert", json=body, idempotent=True
        )
        return session

    async def unrevert(self, session_id: str) -> JSON:
        session: JSON = await self._json("POST", f"/session/{session_id}/unrevert", idempotent=True)
        return session

    async def reply_permission(self, session_id: str, request_id: str, reply: str) -> None:
        """`reply`: once | always | reject. Newer servers have /permission/{id}/reply."""
        try:
            await self.request(
                "POST", f"/permission/{request_id}/reply", json={"reply": reply}, idempotent=True
            )
        except (NotFound, ServerError) as exc:
            # Older servers lack the route: 1.0.x answers it with a 500, not a 404.
            try:
                await self.request(
                    "POST",
                    f"/session/{session_id}/permissions/{request_id}",
                    json={"response": reply},
                    idempotent=True,
                )
            except NotFound:
                raise exc from None

    async def reply_question(self, request_id: str, answers: list[list[str]]) -> None:
        await self.request(
            "POST", f"/question/{request_id}/reply", json={"answers": answers}, idempotent=True
        )

    async def reject_question(self, request_id: str) -> None:
        await self.request("POST", f"/question/{request_id}/reject", idempotent=True)

    async def sync_history(self, sequences: Mapping[str, int]) -> list[JSON]:
        """Durable events after each aggregate's `seq` (1.4.7+). Aggregates not named come
        back whole, so name every session known."""
        items: list[JSON] = await self._json(
            "POST", "/sync/history", json=dict(sequences), idempotent=True
        )
        return items
