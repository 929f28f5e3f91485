"""Bearer tokens: created by the CLI, stored sha256-hashed in state.db, checked on every request.

Roles: agent (check, send, close), admin (everything), auditor (read-only: audit, reports,
conversations), platform (inbound webhooks only, so the credential put in a Chatwoot webhook URL
can do nothing else). A token belongs to one tenant; the tenant of everything it does.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from dataclasses import dataclass
from typing import Callable, Literal

from aiohttp import web

from .errors import Forbidden, TokenExpired, Unauthorized
from .state_sql import StateDB

__all__ = ["PRINCIPAL", "ROLES", "Principal", "TokenStore", "create_token", "require_role", "token_from_request"]

Role = Literal["agent", "admin", "auditor", "platform"]
ROLES: tuple[str, ...] = ("agent", "admin", "auditor", "platform")
_PREFIX = "ast_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id (never the token), role, tenant and agent id."""

    token_id: str
    role: str
    tenant: str
    agent_id: str | None = None
    expires_at: float | None = None

    @property
    def actor(self) -> str:
        """How the audit names this caller."""
        return f"{self.role}:{self.agent_id}" if self.agent_id else f"{self.role}:{self.token_id}"


PRINCIPAL = web.RequestKey("principal", Principal)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(
    db: StateDB, *, role: str, tenant: str, agent_id: str | None, ttl_hours: float | None, now: float
) -> tuple[str, Principal]:
    """Store a new token's hash and return the token (shown once) with its principal."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    token_id = secrets.token_hex(4)
    token = f"{_PREFIX}{token_id}_{secrets.token_urlsafe(24)}"
    expires = now + ttl_hours * 3600 if ttl_hours is not None else None

    def insert(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO tokens (id, hash, role, tenant, agent_id, created_at, expires_at) VALUES (?,?,?,?,?,?,?)",
            (token_id, _hash(token), role, tenant, agent_id, now, expires),
        )

    db.run_sync(insert)
    return token, Principal(token_id, role, tenant, agent_id, expires)


def token_from_request(request: web.Request, *, allow_query: bool = False) -> str | None:
    """The bearer token from the Authorization header (or `access_token` query for webhooks)."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("Authorization header must be 'Bearer <token>'", code="invalid_token")
        return value.strip()
    if allow_query:
        return request.query.get("access_token") or None
    return None


class TokenStore:
    """Looks tokens up by hash, with a small cache of known-good ones (expiry checked every time)."""

    def __init__(self, db: StateDB, *, clock: Callable[[], float]) -> None:
        self._db = db
        self._clock = clock
        self._cache: dict[str, Principal] = {}
        # token -> its sha256 hex, for the few tokens in current use: hashing was ~2 % of a
        # request's CPU. A pure function of the token, so nothing about checking changes.
        self._digests: dict[str, str] = {}

    async def principal(self, token: str | None) -> Principal:
        """The token's principal; Unauthorized if missing/unknown/revoked, TokenExpired if past expiry."""
        if not token:
            raise Unauthorized("this endpoint needs 'Authorization: Bearer <token>'", code="missing_token")
        digest = self._digests.get(token)
        if digest is None:
            digest = _hash(token)
        found = self._cache.get(digest)
        if found is None:
            row = self._db.read(
                lambda c: c.execute("SELECT * FROM tokens WHERE hash = ? AND revoked = 0", (digest,)).fetchone()
            )
            if row is None:
                raise Unauthorized("the token is not known", code="invalid_token")
            found = Principal(row["id"], row["role"], row["tenant"], row["agent_id"], row["expires_at"])
            if len(self._cache) < 10_000:
                self._cache[digest] = found
            if len(self._digests) < 1024:  # known tokens only, so unknown ones cannot fill it
                self._digests[token] = digest
        if found.expires_at is not None and self._clock() >= found.expires_at:
            raise TokenExpired("the token has expired; create a new one with `assist token create`",
                               details=[{"token_id": found.token_id}])
        return found


def require_role(request: web.Request, *roles: str) -> Principal:
    """The request's principal if its role is one of `roles` (admin always passes); else 403."""
    principal = request.get(PRINCIPAL)
    if principal is None:
        raise Unauthorized("this endpoint needs a bearer token", code="missing_token")
    if principal.role != "admin" and principal.role not in roles:
        raise Forbidden(
            f"role '{principal.role}' may not do this",
            details=[{"allowed_roles": sorted({*roles, "admin"})}],
        )
    return principal
