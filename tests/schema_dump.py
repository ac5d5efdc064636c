"""The flywheel schema as pg_dump sees it, for comparing two installs."""

from __future__ import annotations

import shutil
import subprocess

from psycopg.conninfo import conninfo_to_dict


def schema_dump(dsn: str) -> list[str]:
    """Sorted lines of a schema-only dump: the order of grants in an ACL depends on the order
    they were made, which is no difference that matters; every line still has to match."""
    pg_dump = shutil.which("pg_dump") or "/usr/lib/postgresql/15/bin/pg_dump"
    out = subprocess.run(
        [pg_dump, "--schema-only", "--schema=flywheel", dsn], capture_output=True, text=True, check=True
    ).stdout
    dbname = str(conninfo_to_dict(dsn)["dbname"])
    return sorted(
        line.replace(dbname, "DB") for line in out.splitlines()
        if line.strip() and not line.startswith(("-- Dumped", "\\restrict", "\\unrestrict"))
    )
