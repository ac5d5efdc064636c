"""Which `python` validator bodies a superuser approved on this server. The body sits in
flywheel.validators, which flywheel_owner can write; what makes it runnable is an HMAC of it under
a key that only the server's OS user can read (a file in the data directory, made on first use).
create_validator signs a body only for a superuser's login session; the insert trigger runs only
bodies whose signature matches."""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

KEY_FILE = "dbflywheel_python.key"  # in the backend's working directory: the data directory
_key: bytes | None = None


def _key_path() -> str:
    return os.environ.get("DBFLYWHEEL_PYTHON_KEY_FILE") or os.path.join(os.getcwd(), KEY_FILE)


def key() -> bytes:
    global _key
    if _key is None:
        path = _key_path()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(32))
        with open(path, "rb") as f:
            _key = f.read()
        if len(_key) < 32:
            raise RuntimeError(f"{path} is not a dbflywheel key (too short)")
    return _key


def signature(body: str) -> str:
    return hmac.new(key(), body.encode(), hashlib.sha256).hexdigest()


def approved(body: str, sig: Any) -> bool:
    return isinstance(sig, str) and hmac.compare_digest(signature(body), sig)


def sign(plpy: Any, body: str) -> str:
    """The signature of a body, for a superuser's login session only (session_user: inside a
    SECURITY DEFINER function current_user is the definer)."""
    row = plpy.execute("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = session_user")
    if not row or not row[0]["rolsuper"]:
        raise plpy.Error("only a superuser's session may approve a python validator")
    return signature(body)
