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

# Every public function, procedure, view and table with its catalog comment (what `\\df+` and
# `\\dv+` show): one line each, `-` for none.
COMMENTS_QUERY = """
SELECT CASE p.prokind WHEN 'p' THEN 'procedure ' ELSE 'function ' END
       || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || '): '
       || coalesce(obj_description(p.oid, 'pg_proc'), '-')
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'flywheel' AND p.proname !~ '^_'
UNION ALL
SELECT CASE c.relkind WHEN 'v' THEN 'view ' WHEN 'm' THEN 'materialized view ' ELSE 'table ' END
       || c.relname || ': ' || coalesce(obj_description(c.oid, 'pg_class'), '-')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'flywheel' AND c.relname !~ '^_' AND c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition
  AND c.relname !~ '^metric_custom_'
ORDER BY 1
"""

# Public objects defined in the insert path's files (sql/010, 100, 105, 110, 300), which the
# insert path's rewrite (issue 13) comments: the only ones allowed to have none yet.
AWAITING_COMMENTS = {
    "function check_input(input text, app text)",
    "function create_validator(name text, kind text, config jsonb, mode text, applies_to jsonb, sample_rate real)",
    "function embed_backlog(batch integer)",
    "function ensure_trace_partitions(from_month timestamp with time zone, to_month timestamp with time zone)",
    "function grant_app(role_name name, app text)",
    "function redact_pii(input text)",
    "function refresh_anomaly_baselines(lookback interval)",
    "function revalidate(name text, since timestamp with time zone)",
    "function set_embedder(name text, runs_in text)",
    "function set_validator_enabled(name text, enabled boolean)",
    "function validate_traces(trace_ids bigint[], validators text[])",
    "table app_roles",
    "table embedders",
    "table embedding_backlog",
    "table embeddings",
    "table traces",
    "table validator_versions",
    "table validators",
    "view embedding_status",
    "view validation_results",
}

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


def test_comments_match_golden(db: psycopg.Connection) -> None:
    _compare(db, COMMENTS_QUERY, "comments.txt")


def test_every_public_object_says_what_it_is_for(db: psycopg.Connection) -> None:
    """One line each, as pg_cron documents its catalog; a new public object needs its COMMENT ON."""
    lines = [r[0] for r in db.execute(COMMENTS_QUERY)]
    missing = {line.rsplit(": ", 1)[0] for line in lines if line.endswith(": -")}
    assert missing <= AWAITING_COMMENTS, f"public objects without a COMMENT ON: {sorted(missing - AWAITING_COMMENTS)}"
    described = [line for line in lines if not line.endswith(": -")]
    assert len(described) >= 60
    assert all("\n" not in line and len(line.rsplit(": ", 1)[1]) <= 200 for line in described)


def test_a_metric_view_keeps_its_comment_when_made_again(db: psycopg.Connection) -> None:
    comment = "SELECT obj_description('flywheel.metric_latency'::regclass, 'pg_class')"
    before = db.execute(comment).fetchone()
    db.execute("SELECT flywheel.set_metric_mode('latency', 'materialized')")
    try:
        assert db.execute(comment).fetchone() == before and before is not None and before[0].startswith("Per day")
    finally:
        db.execute("SELECT flywheel.set_metric_mode('latency', 'view')")
    assert db.execute(comment).fetchone() == before


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
