"""The REST commands a view sends through the bridge (see docs/BRIDGE.md).

Each is a thin step: check the body, call the OpenCode client, put what the answer tells
into the store at once (the event stream will say the same later; the store does not
apply it twice). Failures of the server come back as JSON `{"error", "hint"}` with a
status that says whose fault it was.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from openchamber import ids
from openchamber.bridge.feed import Feed
from openchamber.client import (
    AuthRefused,
    NotFound,
    OpenCodeClient,
    OpenCodeError,
    RequestTimeout,
    Unreachable,
)
from openchamber.outbox import Outbox

JSON = dict[str, Any]
Handler = Callable[[Request], Awaitable[Response]]

_PAGE_LIMIT = 1000  # the most messages one "load older" may ask for
_MAX_BODY = 1024 * 1024  # a prompt larger than this is a mistake, not a message


class BadRequest(Exception):
    """The view's request is wrong; the message says how."""


def _error(status: int, message: str, hint: str | None = None) -> JSONResponse:
    body: JSON = {"error": message}
    if hint:
        body["hint"] = hint
    return JSONResponse(body, status_code=status)


def _upstream_error(exc: OpenCodeError) -> JSONResponse:
    match exc:
        case NotFound():
            return _error(404, str(exc))
        case RequestTimeout():
            return _error(504, str(exc))
        case Unreachable():
            return _error(503, str(exc), "the OpenCode server is down or unreachable")
        case AuthRefused():
            return _error(502, str(exc), "the bridge's OpenCode password is wrong")
        case _:
            return _error(502, str(exc))


async def _body(request: Request) -> JSON:
    raw = await request.body()
    if len(raw) > _MAX_BODY:
        raise BadRequest(f"request body over {_MAX_BODY} bytes")
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def _text(body: JSON) -> str:
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("`text` must be a non-empty string")
    return text


def _required(body: JSON, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"`{key}` must be a non-empty string")
    return value


def _optional(body: JSON, key: str) -> str | None:
    return None if body.get(key) is None else _required(body, key)


class Commands:
    """The command routes over one client and one feed."""

    def __init__(self, client: OpenCodeClient, feed: Feed, outbox: Outbox) -> None:
        self.client = client
        self.feed = feed
        self.outbox = outbox

    def routes(self) -> list[Route]:
        return [
            Route("/api/snapshot", self._guard(self.snapshot), methods=["GET"]),
            Route("/api/sessions", self._guard(self.list_sessions), methods=["GET"]),
            Route("/api/sessions", self._guard(self.create_session), methods=["POST"]),
            Route("/api/sessions/{sid}", self._guard(self.delete_session), methods=["DELETE"]),
            Route("/api/sessions/{sid}/messages", self._guard(self.messages), methods=["GET"]),
            Route("/api/sessions/{sid}/messages", self._guard(self.send), methods=["POST"]),
            Route("/api/sessions/{sid}/abort", self._guard(self.abort), methods=["POST"]),
            Route("/api/outbox/{mid}", self._guard(self.edit_queued), methods=["PUT"]),
            Route("/api/outbox/{mid}", self._guard(self.cancel_queued), methods=["DELETE"]),
            Route("/api/permissions/{rid}", self._guard(self.permission), methods=["POST"]),
            Route("/api/questions/{rid}", self._guard(self.question), methods=["POST"]),
            Route("/api/ids/message", self._guard(self.new_ids), methods=["GET"]),
        ]

    @staticmethod
    def _guard(handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except BadRequest as exc:
                return _error(400, str(exc))
            except OpenCodeError as exc:
                return _upstream_error(exc)

        return guarded

    async def snapshot(self, request: Request) -> Response:
        return _json(self.feed.snapshot())

    async def list_sessions(self, request: Request) -> Response:
        return _json(self.feed.store.session_infos())

    async def create_session(self, request: Request) -> Response:
        body = await _body(request)
        info = await self.client.create_session(_optional(body, "title"))
        self.feed.change(lambda store: store.load_sessions([info]))
        return _json(info, status=201)

    async def delete_session(self, request: Request) -> Response:
        session_id = request.path_params["sid"]
        await self.client.delete_session(session_id)
        self.feed.change(lambda store: store.remove_session(session_id))
        return Response(status_code=204)

    async def messages(self, request: Request) -> Response:
        """Older messages (`before`, `limit`), merged into the store for every view."""
        session_id = request.path_params["sid"]
        before = request.query_params.get("before") or None
        try:
            limit = int(request.query_params.get("limit", "50"))
        except ValueError:
            raise BadRequest("`limit` must be a number") from None
        if not 1 <= limit <= _PAGE_LIMIT:
            raise BadRequest(f"`limit` must be between 1 and {_PAGE_LIMIT}")
        asked_at = self.feed.store.clock
        page = await self.client.messages(session_id, limit=limit, before=before)
        self.feed.change(lambda store: store.load_messages(session_id, page, as_of=asked_at))
        return _json(page)

    async def send(self, request: Request) -> Response:
        """Send a prompt: shown at once, delivered once per `messageID` however often asked,
        queued while the server is out of reach."""
        session_id = request.path_params["sid"]
        body = await _body(request)
        message_id = _optional(body, "messageID") or ids.message_id()
        part = {"id": _optional(body, "partID") or ids.part_id(), "type": "text"}
        part["text"] = _text(body)
        options: JSON = {}
        if body.get("model") is not None:
            if not isinstance(body["model"], dict):
                raise BadRequest("`model` must be an object {providerID, modelID}")
            options["model"] = body["model"]
        if body.get("agent") is not None:
            options["agent"] = _required(body, "agent")
        state = self.feed.store.local_state(message_id)
        fresh = state in (None, "failed") and await self.outbox.submit(
            session_id, message_id, [part], options, time.time_ns() // 1_000_000
        )
        state = self.feed.store.local_state(message_id)
        return _json({"messageID": message_id, "duplicate": not fresh, "state": state}, 202)

    async def edit_queued(self, request: Request) -> Response:
        """Change the text of a message that has not gone out yet."""
        message_id = request.path_params["mid"]
        found = self.feed.store.message(message_id)
        parts = found[1]["parts"] if found else []
        text_part = next((p for p in parts if p.get("type") == "text"), None)
        part = {"id": text_part["id"] if text_part else ids.part_id(), "type": "text"}
        part["text"] = _text(await _body(request))
        if not await self.outbox.edit(message_id, [part]):
            return _error(409, "that message is not waiting to be sent (sent or unknown)")
        return Response(status_code=204)

    async def cancel_queued(self, request: Request) -> Response:
        if not await self.outbox.cancel(request.path_params["mid"]):
            return _error(409, "that message is not waiting to be sent (sent or unknown)")
        return Response(status_code=204)

    async def abort(self, request: Request) -> Response:
        await self.client.abort(request.path_params["sid"])
        return Response(status_code=204)

    async def permission(self, request: Request) -> Response:
        body = await _body(request)
        reply = body.get("reply")
        if reply not in ("once", "always", "reject"):
            raise BadRequest("`reply` must be once, always or reject")
        session_id = _required(body, "sessionID")
        await self.client.reply_permission(session_id, request.path_params["rid"], reply)
        return Response(status_code=204)

    async def question(self, request: Request) -> Response:
        body = await _body(request)
        request_id = request.path_params["rid"]
        if body.get("reject") is True:
            await self.client.reject_question(request_id)
            return Response(status_code=204)
        answers = body.get("answers")
        if not (
            isinstance(answers, list)
            and all(isinstance(a, list) and all(isinstance(x, str) for x in a) for a in answers)
        ):
            raise BadRequest("`answers` must be a list of lists of strings (or `reject: true`)")
        await self.client.reply_question(request_id, answers)
        return Response(status_code=204)

    async def new_ids(self, request: Request) -> Response:
        return _json({"messageID": ids.message_id(), "partID": ids.part_id()})


def _json(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")
