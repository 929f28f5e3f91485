"""A fake Chatwoot for tests: a real aiohttp server on localhost speaking Chatwoot's message API shapes.

Implements POST and GET /api/v1/accounts/{account_id}/conversations/{conversation_id}/messages with
the `api_access_token` header, Chatwoot's error bodies (spec chatwoot.md 5 and 7), and records every
request. Tests script failures per call: `fail_next("500", "429", "slow", "404")`. A "slow" call
stores the message first and answers late, which is how a client timeout duplicates messages on
the real platform (spec 8: no idempotency key on create-message).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["FakeChatwoot"]

_PATH = "/api/v1/accounts/{account_id}/conversations/{conversation_id}/messages"


@dataclass
class FakeChatwoot:
    """The fake platform; `messages` holds what it stored, `requests` what it was sent."""

    token: str = "cw-test-token"
    slow_s: float = 2.0
    port: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    missing_conversations: set[str] = field(default_factory=set)
    _script: deque[str] = field(default_factory=deque)
    _runner: web.AppRunner | None = None
    _next_id: int = 1000
    _release: asyncio.Event | None = None

    def fail_next(self, *behaviours: str) -> None:
        """Queue behaviours for the next POSTs: "500", "429", "404", "slow", "ok"."""
        self._script.extend(behaviours)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def posted(self, conversation_id: str | None = None) -> list[dict[str, Any]]:
        """Stored messages, optionally of one conversation."""
        return [m for m in self.messages if conversation_id is None or str(m["conversation_id"]) == conversation_id]

    async def start(self) -> FakeChatwoot:
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_post(_PATH, self._create)
        app.router.add_get(_PATH, self._list)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._release is not None:
            self._release.set()  # let slow handlers finish now, so shutdown does not wait them out
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("api_access_token") == self.token

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append({"method": "POST", "path": request.path, "headers": dict(request.headers), "json": body})
        if not self._authorised(request):
            return web.json_response({"error": "You are not authorized to do this action"}, status=401)
        cid = request.match_info["conversation_id"]
        behaviour = self._script.popleft() if self._script else "ok"
        if behaviour == "500":
            return web.Response(status=500, text="Internal Server Error")
        if behaviour == "429":
            return web.Response(status=429, text="Retry later\n")  # Rack::Attack: plain text, no JSON
        if behaviour == "404" or cid in self.missing_conversations:
            return web.json_response({"error": "Resource could not be found"}, status=404)
        if not isinstance(body.get("content"), str) or not body["content"]:
            return web.json_response({"error": "content is missing"}, status=422)
        self._next_id += 1
        message = {
            "id": self._next_id, "content": body["content"], "inbox_id": 3, "conversation_id": int(cid)
            if cid.isdigit() else cid, "message_type": 1, "content_type": body.get("content_type", "text"),
            "content_attributes": body.get("content_attributes", {}), "private": body.get("private", False),
            "created_at": int(time.time()), "sender": {"id": 7, "name": "Ana", "type": "user"},
            "account_id": int(request.match_info["account_id"]),
        }
        self.messages.append(message)
        if behaviour == "slow":  # stored, but the answer comes after the client gave up
            assert self._release is not None
            try:
                await asyncio.wait_for(self._release.wait(), self.slow_s)
            except asyncio.TimeoutError:
                pass
        return web.json_response({**message, "message_type": "outgoing"})

    async def _list(self, request: web.Request) -> web.Response:
        self.requests.append({"method": "GET", "path": request.path, "headers": dict(request.headers), "json": None})
        if not self._authorised(request):
            return web.json_response({"error": "You are not authorized to do this action"}, status=401)
        cid = request.match_info["conversation_id"]
        if cid in self.missing_conversations:
            return web.json_response({"error": "Resource could not be found"}, status=404)
        mine = [m for m in self.messages if str(m["conversation_id"]) == cid][-20:]
        return web.json_response({"meta": {"labels": [], "contact": {}, "assignee": None}, "payload": mine})
