"""Reviewers' passwords and sign-in for the review web app (sql/630-reviewers.sql).

Passwords are argon2id hashes (argon2-cffi). Sign-in answers the same way whatever was wrong
(no such reviewer, wrong password, locked out), and costs one hash verification in every case,
so neither the answer nor its time tells which."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

MAX_FAILURES = 5  # failed sign-ins in a row before the account locks
LOCK_MINUTES = 15
SESSION_HOURS = 12
MIN_PASSWORD = 10

_hasher: Any = None
_dummy_hash: str | None = None


def _argon() -> Any:
    global _hasher, _dummy_hash
    if _hasher is None:
        from argon2 import PasswordHasher

        _hasher = PasswordHasher()  # argon2id, the library's recommended cost
        _dummy_hash = _hasher.hash(secrets.token_urlsafe(16))
    return _hasher


def hash_password(plpy: Any, password: str | None) -> str:
    if password is None or len(password) < MIN_PASSWORD:
        plpy.error(f"create_reviewer: a password needs at least {MIN_PASSWORD} characters",
                   sqlstate="22023", hint="choose a longer password (a passphrase is fine)")
    return str(_argon().hash(password))


def _verify(stored: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return bool(_argon().verify(stored, password))
    except (VerificationError, InvalidHashError):
        return False


def sign_in(plpy: Any, name: str | None, password: str | None) -> list[dict[str, Any]]:
    """One row (session token, CSRF token, reviewer, role) on success; no row otherwise."""
    hasher = _argon()
    rows = plpy.execute(plpy.prepare(
        "SELECT r.name, r.role_name, r.password_hash, r.failed_attempts,"
        " coalesce(r.locked_until > now(), false) AS locked"
        " FROM flywheel.reviewers r WHERE r.name = $1", ["text"]), [name or ""])
    if not rows:
        _verify(_dummy_hash or hasher.hash("x"), password or "")  # the same cost as a real check
        return []
    row = rows[0]
    good = _verify(row["password_hash"], password or "")
    if row["locked"] or not good:
        if not row["locked"]:
            plpy.execute(plpy.prepare(
                "UPDATE flywheel.reviewers SET"
                " failed_attempts = CASE WHEN failed_attempts + 1 >= $2 THEN 0 ELSE failed_attempts + 1 END,"
                " locked_until = CASE WHEN failed_attempts + 1 >= $2 THEN now() + make_interval(mins => $3)"
                " ELSE locked_until END WHERE name = $1", ["text", "integer", "integer"]),
                [row["name"], MAX_FAILURES, LOCK_MINUTES])
        return []
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    plpy.execute(plpy.prepare(
        "UPDATE flywheel.reviewers SET failed_attempts = 0, locked_until = NULL WHERE name = $1", ["text"]),
        [row["name"]])
    plpy.execute("DELETE FROM flywheel.web_sessions WHERE expires_at < now()")
    plpy.execute(plpy.prepare(
        "INSERT INTO flywheel.web_sessions (token_sha256, reviewer, csrf_token, expires_at)"
        " VALUES ($1, $2, $3, now() + make_interval(hours => $4))", ["bytea", "text", "text", "integer"]),
        [hashlib.sha256(token.encode()).digest(), row["name"], csrf, SESSION_HOURS])
    return [{"session_token": token, "csrf_token": csrf, "reviewer": row["name"], "role_name": row["role_name"]}]
