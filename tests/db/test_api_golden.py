"""The public SQL surface and its privileges against golden files, so an accidental change shows.

After a deliberate change: DBFLYWHEEL_UPDATE_GOLDEN=1 pytest tests/db/test_api_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg

GOLDEN = Path(__file__).resolve().parents[1] / "golden"

API_QUERY = """
SELECT 'function ' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') -> '
       || coalesce(pg_get_function_result(p.oid), 'procedure')
       || CASE p.prosecdef WHEN true THEN ' [security definer]' ELSE '' END
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'flywheel' AND p.proname !~ '^_'
UNION ALL
SELECT CASE c.relkind WHEN 'r' THEN 'table ' WHEN 'p' THEN 'table ' WHEN 'v' THEN 'view '
                      WHEN 'm' THEN 'materialized view ' END
       || c.relname || '(' || string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum) || ')'
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = 'flywheel' AND c.relname !~ '^_' AND c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition
  AND c.relname !~ '^metric_custom_'
GROUP BY c.relkind, c.relname
ORDER BY 1
"""

PRIVILEGES_QUERY = """
WITH roles(role) AS (VALUES ('flywheel_app'), ('flywheel_reader'), ('flywheel_admin'), ('public'))
SELECT r.role || ' ' || kind || ' ' || object || ': ' || string_agg(privilege, ',' ORDER BY privilege)
FROM roles r
CROSS JOIN LATERAL (
    SELECT 'table' AS kind, c.relname::text AS object, p.privilege
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
         unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS p(privilege)
    WHERE n.nspname = 'flywheel' AND c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition
      AND c.relname !~ '^metric_custom_'
      AND has_table_privilege(r.role, c.oid, p.privilege)
    UNION ALL
    SELECT 'function', p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')', 'EXECUTE'
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'flywheel' AND has_function_privilege(r.role, p.oid, 'EXECUTE')
) grants
WHERE r.role <> 'flywheel_admin'  -- the admin has everything; listing it would only add noise
GROUP BY r.role, kind, object
ORDER BY 1
"""


def _compare(db: psycopg.Connection, query: str, name: str) -> None:
    lines = [r[0] for r in db.execute(query)]
    text = "\n".join(lines) + "\n"
    path = GOLDEN / name
    if os.environ.get("DBFLYWHEEL_UPDATE_GOLDEN"):
        path.write_text(text)
    expected = path.read_text() if path.exists() else ""
    assert text == expected, f"{name} changed; if on purpose, rerun with DBFLYWHEEL_UPDATE_GOLDEN=1"


def test_public_api_matches_golden(db: psycopg.Connection) -> None:
    _compare(db, API_QUERY, "api.txt")


def test_privileges_match_golden(db: psycopg.Connection) -> None:
    _compare(db, PRIVILEGES_QUERY, "privileges.txt")


def test_admin_has_every_privilege(db: psycopg.Connection) -> None:
    missing = db.execute(
        """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'flywheel' AND c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition
             AND NOT has_table_privilege('flywheel_admin', c.oid, 'SELECT')"""
    ).fetchall()
    assert missing == []


def test_security_definer_functions_pin_their_search_path(db: psycopg.Connection) -> None:
    unpinned = db.execute(
        """SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = 'flywheel' AND p.prosecdef
             AND NOT coalesce(p.proconfig::text LIKE '%search_path=pg_catalog, pg_temp%', false)"""
    ).fetchall()
    assert unpinned == []
