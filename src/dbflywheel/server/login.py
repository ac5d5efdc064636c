"""The role `dbflywheel serve` logs in as: flywheel_server, never an admin or a superuser."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

SERVER_ROLE = "flywheel_server"


def server_dsn(dsn: str, say: Callable[[str], None]) -> str:
    """The DSN to serve with: as given when it logs in as flywheel_server; when it names a superuser or
    an admin (`make demo`'s embedded cluster), the same server as flywheel_server (local logins are
    trusted there; elsewhere the DBA gives flywheel_server a password and the DSN names it)."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        user, powerful = conn.execute(
            "SELECT current_user, rolsuper OR pg_has_role(current_user, 'flywheel_admin', 'MEMBER')"
            " FROM pg_catalog.pg_roles WHERE rolname = current_user").fetchone()  # type: ignore[misc]
    if user == SERVER_ROLE or not powerful:
        return dsn
    params = {k: v for k, v in conninfo_to_dict(dsn).items() if k != "password"}
    params["user"] = SERVER_ROLE
    swapped = make_conninfo(**params)  # type: ignore[arg-type]
    with psycopg.connect(swapped, connect_timeout=10):
        pass  # refuses here, in one line, when flywheel_server may not log in this way
    say(f"serving as {SERVER_ROLE}: the DSN's user {user} is an admin, and the server never uses admin rights")
    return swapped
