"""Attacks between applications: what one app (or a reader) could learn of another app's data,
or forge in its name, through the SQL functions and views. Each test is an attack that worked
before its fix (issue 12, least privilege)."""

from __future__ import annotations

import json
import time
import uuid

import psycopg
import pytest
from judges_support import make_judge

EMAIL = "alice.secret@example.com"


def other_app() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


def role_name(conn: psycopg.Connection) -> str:
    row = conn.execute("SELECT current_user").fetchone()
    assert row is not None
    return str(row[0])


def trace(db: psycopg.Connection, app: str, **columns: object) -> int:
    columns = {"app": app, **columns}
    names = ", ".join(columns)
    marks = ", ".join(["%s"] * len(columns))
    row = db.execute(f"INSERT INTO flywheel.traces ({names}) VALUES ({marks}) RETURNING id",  # names: ours
                     [json.dumps(v) if isinstance(v, dict) else v for v in columns.values()]).fetchone()
    assert row is not None
    return int(row[0])


# --- 1. an application runs only its own app's guards ------------------------------------

def test_the_internal_check_input_refuses_another_apps_guards(login_role, app_name: str) -> None:  # type: ignore[no-untyped-def]
    app = login_role("flywheel_app", app_name)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute("SELECT * FROM flywheel._check_input('hi', %s)", (other_app(),))
    # its own app still works, through either name
    assert app.execute("SELECT count(*) FROM flywheel._check_input('hi', %s)", (app_name,)).fetchone() is not None
    assert app.execute("SELECT count(*) FROM flywheel.check_input('hi')").fetchone() is not None


# --- 2. a judge's examples come from the judged trace's app ------------------------------

def test_judge_examples_never_carry_another_apps_labels(db: psycopg.Connection, app_name: str) -> None:
    victim = other_app()
    _, name = make_judge(db, app=None, few_shot=3)
    try:
        secret = trace(db, victim, input="victim's private question", output="victim's private answer")
        db.execute("INSERT INTO flywheel.labels (trace_id, app, validator, verdict, comment)"
                   " VALUES (%s, '', %s, 'pass', 'victim comment')", (secret, name))
        judged = trace(db, app_name, input="an unrelated question about kubernetes", output="x")
        examples = db.execute("SELECT input, output, comment FROM flywheel._judge_examples(%s, %s, 3)",
                              (name, judged)).fetchall()
        assert all("victim" not in str(e) for e in examples), examples
        # the judged trace's own app's labels are still used
        own = trace(db, app_name, input="own labelled question", output="own answer")
        db.execute("INSERT INTO flywheel.labels (trace_id, app, validator, verdict) VALUES (%s, '', %s, 'fail')",
                   (own, name))
        examples = db.execute("SELECT input FROM flywheel._judge_examples(%s, %s, 3)", (name, judged)).fetchall()
        assert ("own labelled question",) in examples
    finally:
        db.execute("UPDATE flywheel.validators SET enabled = false WHERE name = %s", (name,))


# --- 3. an app role learns only its own apps ---------------------------------------------

def test_an_app_cannot_learn_another_roles_apps(login_role, app_name: str) -> None:  # type: ignore[no-untyped-def]
    victim_app = other_app()
    victim = login_role("flywheel_app", victim_app)
    attacker = login_role("flywheel_app", app_name)
    victim_role = role_name(victim)
    for fn in ("_apps_of", "_app_of"):
        row = attacker.execute(f"SELECT flywheel.{fn}(%s)::text", (victim_role,)).fetchone()
        assert row is not None and victim_app not in str(row[0]), (fn, row)
    assert attacker.execute("SELECT flywheel._apps_of(current_user)").fetchone() == ([app_name],)
    assert attacker.execute("SELECT flywheel._app_of(current_user)").fetchone() == (app_name,)
    # row-level security still works with it
    attacker.execute("INSERT INTO flywheel.traces (input) VALUES ('mine')")
    assert attacker.execute("SELECT DISTINCT app FROM flywheel.traces").fetchall() == [(app_name,)]


# --- 4. NOTIFY flywheel_alerts carries no other app's data -------------------------------

def test_alert_notifications_carry_only_the_alert_id(login_role, db: psycopg.Connection, app_name: str) -> None:  # type: ignore[no-untyped-def]
    app = login_role("flywheel_app", app_name)
    app.execute("LISTEN flywheel_alerts")
    secret = f"secret-subject-{uuid.uuid4().hex[:6]}"
    row = db.execute("SELECT flywheel._raise_alert('satisfaction_trend', %s, 'the other app is sinking')",
                     (secret,)).fetchone()
    assert row is not None
    payloads = [n.payload for n in app.notifies(timeout=2, stop_after=1)]
    assert payloads, "no notification"
    for payload in payloads:
        assert secret not in payload and "satisfaction_trend" not in payload
        assert set(json.loads(payload)) == {"id"}
    assert json.loads(payloads[-1])["id"] == row[0]
    # an app may not read the alert behind the id
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute("SELECT * FROM flywheel.alerts")


# --- 5. readers see no raw outputs -------------------------------------------------------

def test_readers_see_no_pii_in_the_classifier_metric(login_role, db: psycopg.Connection, app_name: str) -> None:  # type: ignore[no-untyped-def]
    trace(db, app_name, node_type="classifier", output=f"write to {EMAIL}", expected="billing")
    reader = login_role("flywheel_reader")
    rows = reader.execute("SELECT label FROM flywheel.metric_classifier WHERE app = %s", (app_name,)).fetchall()
    assert rows and all(EMAIL not in str(r) for r in rows), rows
    assert ("billing",) in rows


# --- 6. few_shot returns no other user's PII ---------------------------------------------

def test_few_shot_redacts_pii_of_the_examples_it_returns(login_role, db: psycopg.Connection, app_name: str) -> None:  # type: ignore[no-untyped-def]
    other_user = trace(db, app_name, input=f"my e-mail is {EMAIL}, reset my password",
                       output=f"sent a reset link to {EMAIL}", user_id="alice")
    db.execute("INSERT INTO flywheel.labels (trace_id, app, validator, verdict) VALUES (%s, '', 'helpful', 'pass')",
               (other_user,))
    app = login_role("flywheel_app", app_name)
    rows = app.execute("SELECT trace_id, input, output FROM flywheel.few_shot('reset my password', 5)").fetchall()
    assert other_user in [r[0] for r in rows]
    assert all(EMAIL not in str(r) for r in rows), rows
    assert any("[EMAIL]" in str(r) for r in rows)


# --- 7. who recorded something is what the database says ---------------------------------

def test_an_app_cannot_record_preferences_under_another_name(login_role, app_name: str) -> None:  # type: ignore[no-untyped-def]
    app = login_role("flywheel_app", app_name)
    a = app.execute("INSERT INTO flywheel.traces (input, variant) VALUES ('q', 'A') RETURNING id").fetchone()
    b = app.execute("INSERT INTO flywheel.traces (input, variant) VALUES ('q', 'B') RETURNING id").fetchone()
    assert a is not None and b is not None
    row = app.execute("INSERT INTO flywheel.preferences (trace_a, trace_b, winner, annotator, judged_by)"
                      " VALUES (%s, %s, 'a', 'chief-reviewer', 'human') RETURNING annotator, judged_by",
                      (a[0], b[0])).fetchone()
    assert row == (role_name(app), "human")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute("INSERT INTO flywheel.preferences (trace_a, trace_b, winner, judged_by, validator)"
                    " VALUES (%s, %s, 'a', 'llm', 'some_judge')", (a[0], b[0]))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute("UPDATE flywheel.preferences SET annotator = 'chief-reviewer'")


def test_an_admin_may_still_record_a_named_annotators_vote(db: psycopg.Connection, app_name: str) -> None:
    a, b = trace(db, app_name, input="q", variant="A"), trace(db, app_name, input="q", variant="B")
    row = db.execute("INSERT INTO flywheel.preferences (trace_a, trace_b, winner, annotator)"
                     " VALUES (%s, %s, 'a', 'reviewer-7') RETURNING annotator", (a, b)).fetchone()
    assert row == ("reviewer-7",)


# --- 8. a trace's links stay within its app ----------------------------------------------

@pytest.mark.parametrize("link", ["parent_id", "shadow_of"])
def test_a_trace_cannot_link_to_another_apps_trace(login_role, db: psycopg.Connection, app_name: str, link: str) -> None:  # type: ignore[no-untyped-def]
    victim = trace(db, other_app(), input="victim", output="victim's answer")
    app = login_role("flywheel_app", app_name)
    column, value = ("parent_id", victim) if link == "parent_id" else ("metadata", json.dumps({"shadow_of": str(victim)}))
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="not a trace of app"):
        app.execute(f"INSERT INTO flywheel.traces ({column}, shadow, input) VALUES (%s, %s, 'x')",  # column: ours
                    (value, link == "shadow_of"))
    # in a batch, too: one bad row fails the statement
    own = app.execute("INSERT INTO flywheel.traces (input) VALUES ('parent') RETURNING id").fetchone()
    assert own is not None
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        app.execute("INSERT INTO flywheel.traces (parent_id, input) VALUES (%s, 'a'), (%s, 'b')", (own[0], victim))
    # links within the app (also to a trace of the same statement) are fine
    app.execute("INSERT INTO flywheel.traces (parent_id, metadata, shadow, input) VALUES (%s, %s, true, 'c')",
                (own[0], json.dumps({"shadow_of": own[0]})))


def test_runs_and_shadows_are_read_within_their_app(db: psycopg.Connection, app_name: str) -> None:
    victim_app = other_app()
    run = f"run-{uuid.uuid4().hex[:8]}"
    victim_step = trace(db, victim_app, run_id=run, node="victim_node", input="v")
    trace(db, app_name, run_id=run, node="my_node", input="m")
    rows = db.execute("SELECT app, steps FROM flywheel.metric_pipeline_runs WHERE run_id = %s ORDER BY app",
                      (run,)).fetchall()
    assert sorted(rows) == sorted([(app_name, 1), (victim_app, 1)])
    # a link written before the insert check (or by an admin) is not followed across apps
    db.execute("SET session_replication_role = replica")
    try:
        trace(db, app_name, shadow=True, metadata={"shadow_of": str(victim_step)}, input="s", output="o")
    finally:
        db.execute("SET session_replication_role = origin")
    assert db.execute("SELECT count(*) FROM flywheel.metric_shadow_comparison WHERE app IN (%s, %s)",
                      (app_name, victim_app)).fetchone() == (0,)


# --- 9. one app's votes cannot make the ranking slow for every reader --------------------

def test_pairwise_ranking_cost_is_bounded(login_role, db: psycopg.Connection, app_name: str) -> None:  # type: ignore[no-untyped-def]
    db.execute("INSERT INTO flywheel.traces (app, input, variant) SELECT %s, 'q', 'v' || i FROM generate_series(1, 400) i",
               (app_name,))
    db.execute("""INSERT INTO flywheel.preferences (trace_a, trace_b, winner)
                  SELECT a.id, b.id, CASE WHEN a.variant < b.variant THEN 'a' ELSE 'b' END
                  FROM (SELECT id, variant, row_number() OVER (ORDER BY id) AS n FROM flywheel.traces WHERE app = %s) a
                  JOIN (SELECT id, variant, row_number() OVER (ORDER BY id) AS n FROM flywheel.traces WHERE app = %s) b
                    ON b.n IN (a.n + 1, a.n + 7, a.n + 31)""", (app_name, app_name))
    reader = login_role("flywheel_reader")
    started = time.monotonic()
    rows = reader.execute("SELECT name FROM flywheel.pairwise_ranking WHERE app = %s AND dimension = 'variant'",
                          (app_name,)).fetchall()
    elapsed = time.monotonic() - started
    assert 0 < len(rows) <= 100
    assert elapsed < 5, elapsed


# --- found on the way: an app chose a trace id another app's trace already has -----------

def test_an_app_cannot_reuse_another_apps_trace_id(login_role, db: psycopg.Connection, app_name: str) -> None:  # type: ignore[no-untyped-def]
    # traces' key is (id, created_at): the same id with another time is a second trace, which
    # everything keyed by trace_id alone (results, embeddings, examples, jobs) mixes with the first
    victim = trace(db, other_app(), input="victim", output="victim's answer")
    app = login_role("flywheel_app", app_name)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute("INSERT INTO flywheel.traces (id, input) VALUES (%s, 'mine now')", (victim,))
