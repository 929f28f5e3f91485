"""Fixtures of the service tests: the real app on a free port, a test phrase library, tokens, a fake Chatwoot."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

# fake_chatwoot lives with the adapter tests; the service tests drive it too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapters"))

from assist.app import STATE_DB, create_app  # noqa: E402
from assist.auth import create_token  # noqa: E402
from assist.config import Settings  # noqa: E402

# Each rule drives one branch of the send path: rewrite, block (fatal), block (non-fatal,
# overridable under the default policy), warn (sent as written).
TEST_LIBRARY: dict[str, Any] = {
    "version": "test-1",
    "rules": [
        {"id": "t-dont-know", "category": "forbidden_phrase", "severity": "fatal", "action": "rewrite",
         "source": "spec 1", "phrases": ["不知道"], "replacement": "我帮您确认一下"},
        {"id": "t-cant-you-read", "category": "rhetorical_question", "severity": "fatal", "action": "block",
         "source": "spec 1", "phrases": ["你自己不会看"], "suggest": ["t-explain"]},
        {"id": "t-only-this", "category": "passive_service", "severity": "non_fatal", "action": "block",
         "source": "spec 1", "phrases": ["只能这样了"], "suggest": ["t-explain"]},
        {"id": "t-no-way", "category": "passive_service", "severity": "non_fatal", "action": "warn",
         "source": "spec 1", "phrases": ["没办法"]},
    ],
    "templates": [
        {"id": "t-explain", "situation": "explain again", "text": "我再为您详细说明一下。"},
        {"id": "closing", "situation": "closing", "text": "请问是否还有其他问题可以为您服务?感谢您的支持,祝您生活愉快!"},
        {"id": "wait-thanks", "situation": "after a wait", "text": "感谢您的耐心等待。"},
        {"id": "wait-apology", "situation": "customer waited", "text": "很抱歉让您久等了。"},
        {"id": "thanks-reply", "situation": "customer thanks", "text": "不客气。"},
    ],
}
GREETING = "您好,这里是{line}专线,客服{agent_no}为您服务。"


class OffsetClock:
    """Wall time plus an offset a test can move forward (token expiry) without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Service:
    """A running service: base URL, the app, an HTTP session and token helpers."""

    base_url: str
    app: web.Application
    settings: Settings
    session: aiohttp.ClientSession
    clock: OffsetClock

    def token(self, role: str = "agent", *, agent: str | None = "1001", tenant: str = "default",
              ttl_hours: float | None = None) -> str:
        tok, _ = create_token(self.app[STATE_DB], role=role, tenant=tenant,
                              agent_id=agent if role == "agent" else None, ttl_hours=ttl_hours, now=self.clock.now())
        return tok

    async def call(self, method: str, path: str, *, token: str | None = None, json_body: Any = None,
                   data: bytes | str | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        """One request; returns (status, parsed JSON or text, headers)."""
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        if json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False).encode()
            h.setdefault("Content-Type", "application/json")
        async with self.session.request(method, self.base_url + path, data=data, headers=h) as resp:
            text = await resp.text()
            try:
                body = json.loads(text)
            except ValueError:
                body = text
            return resp.status, body, resp.headers


def assert_error(status: int, body: Any, expected_status: int, code: str | None = None) -> None:
    """The one error shape: {"error": {"code", "message", "details"}} with the expected status."""
    assert status == expected_status, (status, body)
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"code", "message", "details"}, err
    assert isinstance(err["code"], str) and err["code"] and isinstance(err["message"], str) and err["message"]
    if code is not None:
        assert err["code"] == code, err


@pytest.fixture
def library_file(tmp_path: Path) -> Path:
    path = tmp_path / "test-library.json"
    path.write_text(json.dumps(TEST_LIBRARY, ensure_ascii=False), encoding="utf-8")
    return path


def service_settings(tmp_path: Path, library_file: Path, **overrides: Any) -> Settings:
    """Settings for a test service: its own data dir, the test library, fast retries."""
    base: dict[str, Any] = {
        "data_dir": tmp_path / "data", "port": 0, "audit_hmac_key": "test-audit-key",
        "delivery_backoff_base_s": 0.01, "delivery_backoff_max_s": 0.05, "delivery_timeout_s": 2.0,
        "tenants": {
            "default": {"library_path": str(library_file)},
            "acme": {"library_path": str(library_file), "line": "售后", "rewrite_policy": "confirm",
                     "override_allowed": ["fatal", "non_fatal"], "greeting_policy": "separate",
                     "agent_no_template": "A{agent_id}"},
        },
    }
    base.update(overrides)
    return Settings(**base)


async def wait_healthy(session: aiohttp.ClientSession, base_url: str, *, timeout_s: float = 20.0) -> None:
    """Poll /healthz until it answers 200 (start-up, not a time threshold)."""
    import asyncio

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            async with session.get(base_url + "/healthz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"{base_url} never became healthy")


@pytest.fixture
async def start_service(tmp_path: Path, library_file: Path) -> AsyncIterator[Callable[..., Awaitable[Service]]]:
    """Factory: start create_app(settings) on 127.0.0.1:0 and return a Service; all stopped at the end."""
    runners: list[web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(**overrides: Any) -> Service:
        settings = service_settings(tmp_path, library_file, **overrides)
        clock = OffsetClock()
        app = create_app(settings, clock=clock)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        session = aiohttp.ClientSession()
        sessions.append(session)
        base_url = f"http://127.0.0.1:{port}"
        await wait_healthy(session, base_url)
        return Service(base_url, app, settings, session, clock)

    yield start
    for session in sessions:
        await session.close()
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
async def svc(start_service: Callable[..., Awaitable[Service]]) -> Service:
    """The service on the demo platform."""
    return await start_service()
