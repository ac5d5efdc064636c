"""Sign-in state of the review web app: the session cookie, the CSRF token and who is asking.

The cookie holds a random token; the database keeps only its SHA-256 (flywheel.web_sessions)
and answers, through flywheel.reviewer_session, which reviewer and role it belongs to. Every
POST carries the session's CSRF token in a form field; the sign-in form, before any session,
carries a token that must equal a cookie of its own (double submit)."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response

SESSION_COOKIE = "flywheel_session"
SIGN_IN_COOKIE = "flywheel_sign_in"
SESSION_SECONDS = 12 * 3600


@dataclass(frozen=True)
class Reviewer:
    name: str
    role: str
    csrf_token: str
    apps: list[str]


class NotSignedIn(Exception):
    """No live session: the page sends the browser to sign in (keeping what it posted)."""


class BadCsrf(Exception):
    """A POST without the session's CSRF token."""


def set_cookie(response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/ui", secure=True, httponly=True, samesite="strict")


async def reviewer_of(request: Request) -> Reviewer:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise NotSignedIn
    async with request.app.state.pool.connection() as conn:
        cur = await conn.execute("SELECT reviewer, role_name, csrf_token, apps FROM flywheel.reviewer_session(%s)",
                                 (token,))
        row = await cur.fetchone()
    if row is None:
        raise NotSignedIn
    return Reviewer(*row)


def check_csrf(expected: str, given: str | None) -> None:
    if not given or not hmac.compare_digest(expected.encode(), given.encode()):
        raise BadCsrf


def new_sign_in_token() -> str:
    return secrets.token_urlsafe(32)
