"""Install or upgrade dbflywheel in a PostgreSQL database by applying the shipped script."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import psycopg

from dbflywheel import __version__
from dbflywheel.build import DEFAULT_PL_PYTHON_PATH, PYTHON_PATH_LINE, script_checksum, shipped_script
from dbflywheel.errors import FlywheelError

REQUIRED_EXTENSIONS = {
    "plpython3u": "install postgresql-plpython3-15 on the database server (make setup does)",
    "vector": "install pgvector on the database server (make setup builds it from Debian's source)",
}


@dataclass
class InstallResult:
    version: str
    previous_version: str | None
    migrations_applied: list[str]
    changed: bool

    def describe(self) -> str:
        if not self.changed:
            return f"dbflywheel {self.version} is already installed and up to date; nothing changed"
        what = f"{len(self.migrations_applied)} migration(s) applied"
        if self.previous_version is None:
            return f"installed dbflywheel {self.version} ({what})"
        return f"upgraded dbflywheel {self.previous_version} -> {self.version} ({what})"


def connect(dsn: str, **kwargs: object) -> psycopg.Connection:
    """A connection, or a FlywheelError that says in one line why there is none."""
    try:
        return psycopg.connect(dsn, connect_timeout=10, **kwargs)  # type: ignore[arg-type]
    except psycopg.ProgrammingError as e:
        raise FlywheelError(f"invalid DSN {dsn!r}: {_first_line(e)}") from e
    except psycopg.OperationalError as e:
        raise FlywheelError(
            f"cannot connect to {_redact(dsn)}: {_first_line(e)} "
            "(is the server running? `dbflywheel up` starts a local one)"
        ) from e


def installed_version(conn: psycopg.Connection) -> str | None:
    row = conn.execute("SELECT to_regclass('flywheel._install') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return None
    found = conn.execute("SELECT version FROM flywheel._install").fetchone()
    return found[0] if found else None


def _check_server(conn: psycopg.Connection) -> None:
    if conn.info.server_version < 150000:
        raise FlywheelError(f"PostgreSQL {conn.info.server_version // 10000} is too old: dbflywheel needs 15 or newer")
    available = {r[0] for r in conn.execute("SELECT name FROM pg_available_extensions")}
    for ext, how in REQUIRED_EXTENSIONS.items():
        if ext not in available:
            raise FlywheelError(f"the server has no {ext} extension available: {how}")
    superuser = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    if not superuser or not superuser[0]:
        raise FlywheelError(
            "installing needs a superuser (plpython3u is an untrusted language): connect as one"
        )


def _enable_pg_cron(conn: psycopg.Connection) -> None:
    """pg_cron schedules refreshes where it is preloaded and this is its database; elsewhere
    `dbflywheel refresh --loop` does the same work."""
    row = conn.execute(
        "SELECT current_setting('shared_preload_libraries') ~ 'pg_cron',"
        " coalesce(current_setting('cron.database_name', true), 'postgres') = current_database()"
    ).fetchone()
    if row and row[0] and row[1]:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")


def _place(script: str, vector_schema: str, python_path: str) -> str:
    """The script for this server: pgvector's schema and PL/Python's package folder filled in."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", vector_schema):
        raise FlywheelError(f"pgvector is installed in schema {vector_schema!r}: dbflywheel names it unquoted, "
                            "so it must be a plain lower-case name")
    if not python_path.startswith("/") or any(c in python_path for c in "'\"\\\n$"):
        raise FlywheelError(
            f"--python-path {python_path!r} must be absolute folder(s), separated by ':', without quotes")
    default_line = PYTHON_PATH_LINE.format(path=DEFAULT_PL_PYTHON_PATH)
    return (script.replace("@extschema:vector@", vector_schema)
            .replace(default_line, PYTHON_PATH_LINE.format(path=python_path)))


def install(dsn: str, *, force: bool = False, python_path: str | None = None) -> InstallResult:
    """Install or upgrade. python_path: the folder(s) PL/Python imports its packages from (fixed
    into the install: only a superuser, installing again, changes it)."""
    python_path = python_path or os.environ.get("DBFLYWHEEL_PL_PYTHON_DIR") or DEFAULT_PL_PYTHON_PATH
    template = shipped_script()
    with connect(dsn) as conn:
        _check_server(conn)
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        vector_schema = conn.execute(
            "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'vector'").fetchone()[0]  # type: ignore[index]
        script = _place(template, vector_schema, python_path)
        checksum = script_checksum(script)
        previous = installed_version(conn)
        if previous is not None and not force:
            row = conn.execute("SELECT script_sha256 FROM flywheel._install").fetchone()
            if row and row[0] == checksum:
                return InstallResult(__version__, previous, [], changed=False)
        conn.commit()
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('dbflywheel install'))")
                before = _applied_migrations(conn)
                _enable_pg_cron(conn)
                conn.execute(script.encode())
                conn.execute(
                    "INSERT INTO flywheel._install (version, script_sha256) VALUES (%s, %s)"
                    " ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version,"
                    " script_sha256 = EXCLUDED.script_sha256, installed_at = now()",
                    (__version__, checksum),
                )
                applied = sorted(_applied_migrations(conn) - before)
        except psycopg.Error as e:
            diag = e.diag
            hint = f" ({diag.message_hint})" if diag and diag.message_hint else ""
            raise FlywheelError(f"install failed, nothing was changed: {_first_line(e)}{hint}") from e
    return InstallResult(__version__, previous, applied, changed=True)


def _applied_migrations(conn: psycopg.Connection) -> set[str]:
    if not conn.execute("SELECT to_regclass('flywheel._migrations') IS NOT NULL").fetchone()[0]:  # type: ignore[index]
        return set()
    return {r[0] for r in conn.execute("SELECT name FROM flywheel._migrations")}


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    dsn = re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", dsn)
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", dsn)
