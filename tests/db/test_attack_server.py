"""Attacks on the server's SQL: keys, the server's login, and span linking across apps."""

from __future__ import annotations

import os
from collections.abc import Callable

import psycopg
import pytest
from psycopg.conninfo import make_conninfo


def test_the_server_login_reaches_no_data_and_no_admin_function(db: psycopg.Connection, dsn: str, app_name: str) -> None:
    db.execute("SELECT flywheel.create_api_key(%s, %s)", (app_name, f"k-{app_name}"))
    (role,) = db.execute("SELECT flywheel._api_role_of(%s)", (app_name,)).fetchone()  # type: ignore[misc]
    with psycopg.connect(make_conninfo(dsn, user="flywheel_server"), autocommit=True) as server:
        for query in ("SELECT count(*) FROM flywheel.traces", "SELECT count(*) FROM flywheel._api_keys",
                      "SELECT count(*) FROM flywheel.api_keys", "SELECT flywheel.revoke_api_key('x')",
                      "SELECT flywheel.create_api_key('a', 'b')", "SELECT flywheel.grant_app('flywheel_server', 'x')",
                      "SELECT flywheel.record_feedback(1::bigint, 'thumbs', 1)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                server.execute(query)
        # it may SET ROLE to an app's role, whose rights then apply (and only those)
        with server.transaction():
            server.execute("SELECT set_config('role', %s, true)", (role,))
            assert server.execute("SELECT flywheel._app_of(current_user)").fetchone() == (app_name,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                server.execute("SELECT count(*) FROM flywheel._api_keys")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            server.execute("SET ROLE flywheel_admin")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            server.execute("SET ROLE flywheel_owner")


def test_an_app_cannot_authenticate_keys_or_link_another_apps_spans(
        db: psycopg.Connection, login_role: Callable[..., psycopg.Connection], app_name: str) -> None:
    victim = login_role("flywheel_app", app=app_name)
    attacker = login_role("flywheel_app", app=app_name + "-evil")
    tid, parent, child = os.urandom(16).hex(), os.urandom(8).hex(), os.urandom(8).hex()
    for span, par in ((child, parent), (parent, None)):
        (row,) = victim.execute("INSERT INTO flywheel.traces (node) VALUES ('s') RETURNING id").fetchone()  # type: ignore[misc]
        victim.execute("INSERT INTO flywheel.otel_spans (otel_trace_id, span_id, trace_row, parent_span_id)"
                       " VALUES (%s, %s, %s, %s)", (tid, span, row, par))
    victim_role = victim.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
    assert attacker.execute("SELECT flywheel._link_otel_parents(%s, %s)", ([tid], victim_role)).fetchone() == (0,)
    assert attacker.execute("SELECT flywheel.link_otel_parents(%s)", ([tid],)).fetchone() == (0,)
    assert attacker.execute("SELECT count(*) FROM flywheel.otel_spans").fetchone() == (0,)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        attacker.execute("INSERT INTO flywheel.otel_spans (app, otel_trace_id, span_id, trace_row) VALUES (%s, %s, %s, 1)",
                         (app_name, tid, os.urandom(8).hex()))
    for query in ("SELECT * FROM flywheel._authenticate_api_key('fwk_x')", "SELECT flywheel._api_take_rows(1, 1)",
                  "SELECT * FROM flywheel._api_keys", "SELECT * FROM flywheel.api_keys"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            attacker.execute(query)
    assert victim.execute("SELECT flywheel.link_otel_parents(%s)", ([tid],)).fetchone() == (1,)


def test_create_api_key_refuses_bad_input_in_one_line(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="non-empty"):
        db.execute("SELECT flywheel.create_api_key('', 'x')")
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("SELECT flywheel.create_api_key('a', %s, requests_per_s => -1)", (os.urandom(4).hex(),))


def test_a_forged_trace_row_never_links_another_apps_trace(
        db: psycopg.Connection, login_role: Callable[..., psycopg.Connection], app_name: str) -> None:
    victim = login_role("flywheel_app", app=app_name)
    attacker = login_role("flywheel_app", app=app_name + "-evil")
    (theirs,) = victim.execute("INSERT INTO flywheel.traces (node) VALUES ('v') RETURNING id").fetchone()  # type: ignore[misc]
    (mine,) = attacker.execute("INSERT INTO flywheel.traces (node) VALUES ('a') RETURNING id").fetchone()  # type: ignore[misc]
    tid, parent = os.urandom(16).hex(), os.urandom(8).hex()
    attacker.execute("INSERT INTO flywheel.otel_spans (otel_trace_id, span_id, trace_row, parent_span_id)"
                     " VALUES (%s, %s, %s, %s), (%s, %s, %s, NULL)",
                     (tid, os.urandom(8).hex(), theirs, parent, tid, parent, mine))
    assert attacker.execute("SELECT flywheel.link_otel_parents(%s)", ([tid],)).fetchone() == (0,)
    assert db.execute("SELECT parent_id FROM flywheel.traces WHERE id = %s", (theirs,)).fetchone() == (None,)
