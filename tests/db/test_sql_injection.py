"""Every public function that takes text, called with a corpus of SQL-injection strings.

The functions are discovered from the catalog, so new ones are covered as they are added.
Each call runs in a savepoint that is rolled back; an error is a fine answer, but a
payload must never change anything outside what the function is for.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import sql

CORPUS = [
    line.replace("\\x00", "\x01")  # PostgreSQL text cannot hold NUL; \x01 keeps the spirit
    for line in (Path(__file__).resolve().parents[1] / "data" / "sql_injection.txt").read_text().splitlines()
    if line and not line.startswith("# ")
]
TEXT_TYPES = {"text", "name", "character varying"}


def _public_functions(db: psycopg.Connection) -> list[tuple[str, str, list[str], int]]:
    return [
        (r[0], r[1], r[2], r[3])
        for r in db.execute(
            """SELECT p.proname, p.prokind::text,
                      ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) t),
                      p.pronargdefaults
               FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
               WHERE n.nspname = 'flywheel' AND p.proname !~ '^_' AND p.prokind IN ('f', 'p')
                 AND p.prorettype <> 'trigger'::regtype
               ORDER BY 1"""
        )
    ]


@pytest.fixture(scope="module")
def canary(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS public.flywheel_canary, public.pwned")
        conn.execute("CREATE TABLE public.flywheel_canary (x int)")
        conn.execute("INSERT INTO public.flywheel_canary VALUES (1)")


def test_the_corpus_is_loaded() -> None:
    assert len(CORPUS) >= 30


def test_no_payload_escapes_any_function(db: psycopg.Connection, canary: None) -> None:
    functions = [f for f in _public_functions(db) if TEXT_TYPES & set(f[2])]
    assert functions, "no public function takes text?"
    attempts = 0
    db.autocommit = False
    db.execute("SET statement_timeout = '3s'")
    for name, kind, argtypes, _ in functions:
        for payload in CORPUS:
            args = [sql.Literal(payload) if t in TEXT_TYPES else sql.SQL("NULL") for t in argtypes]
            call = sql.SQL("CALL flywheel.{}({})" if kind == "p" else "SELECT flywheel.{}({})").format(
                sql.Identifier(name), sql.SQL(", ").join(args)
            )
            attempts += 1
            db.execute("SAVEPOINT attempt")
            try:
                db.execute(call)
            except psycopg.Error:
                db.execute("ROLLBACK TO SAVEPOINT attempt")  # refusing bad input is a right answer
                continue
            # The call succeeded: whatever it did is still visible inside the savepoint.
            try:
                _assert_untouched(db, name, payload)
            finally:
                db.execute("ROLLBACK TO SAVEPOINT attempt")
    db.rollback()
    assert attempts >= len(CORPUS)
    assert not Path("/tmp/pwned").exists()


def _assert_untouched(db: psycopg.Connection, name: str, payload: str) -> None:
    rows = db.execute("SELECT array_agg(x) FROM public.flywheel_canary").fetchone()
    assert rows == ([1],), f"flywheel.{name} let {payload!r} change the canary"
    assert db.execute("SELECT to_regclass('public.pwned')").fetchone() == (None,), (name, payload)


def test_a_payload_is_stored_as_plain_data(db: psycopg.Connection, canary: None) -> None:
    """The positive control: where a function accepts the text, it keeps it verbatim."""
    db.execute("DROP ROLE IF EXISTS injection_probe")
    db.execute("CREATE ROLE injection_probe")
    try:
        for payload in CORPUS:
            db.execute("SELECT flywheel.grant_app('injection_probe', %s)", (payload,))
            stored = db.execute("SELECT app FROM flywheel.app_roles WHERE role_name = 'injection_probe'").fetchone()
            assert stored == (payload,)
            _assert_untouched(db, "grant_app", payload)
    finally:
        db.execute("DELETE FROM flywheel.app_roles WHERE role_name = 'injection_probe'")
        db.execute("DROP ROLE injection_probe")
