"""API keys: `Authorization: Bearer <key>` (or Basic, Langfuse's public:secret pair, the secret being the key).

The server's login (flywheel_server) asks flywheel._authenticate_api_key, which returns the key's app
role and takes one request from the key's bucket in the database (shared by every process and machine)."""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass

from fastapi import HTTPException, Request

from dbflywheel.server import metrics


@dataclass(frozen=True)
class Key:
    id: int
    role: str
    app: str


class Unauthorized(HTTPException):
    def __init__(self) -> None:
        super().__init__(401, "missing, unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})


def too_many(retry_after: float, what: str) -> HTTPException:
    metrics.REJECTS.inc("429")
    return HTTPException(429, f"over this key's rate limit ({what})",
                         headers={"Retry-After": str(max(1, math.ceil(retry_after)))})


def token_of(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":  # Langfuse: base64(public_key:secret_key); the secret is the key
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


async def authenticate(request: Request) -> Key:
    """The request's key (a FastAPI dependency): 401 when there is none, 429 when over its request rate."""
    token = token_of(request.headers.get("authorization"))
    if token is None:
        metrics.REJECTS.inc("401")
        raise Unauthorized()
    async with request.app.state.pool.connection() as conn:
        cur = await conn.execute("SELECT * FROM flywheel._authenticate_api_key(%s)", (token,))
        key_id, role, app, retry_after = await cur.fetchone()
    if key_id is None:
        metrics.REJECTS.inc("401")
        raise Unauthorized()
    request.state.key = Key(key_id, role, app)
    if retry_after > 0:
        raise too_many(retry_after, "requests per second")
    return request.state.key


async def take_rows(request: Request, key: Key, n: int) -> None:
    """Takes n rows from the key's row bucket, or raises 429."""
    async with request.app.state.pool.connection() as conn:
        cur = await conn.execute("SELECT flywheel._api_take_rows(%s, %s)", (key.id, n))
        (wait,) = await cur.fetchone()
    if wait is None:
        raise Unauthorized()
    if wait > 0:
        raise too_many(wait, "rows per second")
