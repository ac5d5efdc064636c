"""Reviewers of the web app, in SQL: sign-in answers the same whatever was wrong, locks out after
repeated failures, and a reviewer's role sees and signs only what its apps allow (attack tests
first: each tries what a reviewer or a guesser would)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

PASSWORD = "correct horse battery"


def new_reviewer(db: psycopg.Connection, apps: list[str], password: str = PASSWORD) -> tuple[str, str]:
    name = f"r{uuid.uuid4().hex[:10]}"
    role = db.execute("SELECT flywheel.create_reviewer(%s, %s, %s)", (name, password, apps)).fetchone()[0]  # type: ignore[index]
    return name, role


def sign_in(db: psycopg.Connection, name: str, password: str) -> tuple | None:
    return db.execute("SELECT * FROM flywheel.reviewer_sign_in(%s, %s)", (name, password)).fetchone()


@pytest.fixture
def two_apps(db: psycopg.Connection) -> Iterator[tuple[str, str, int, int]]:
    a, b = f"web-a-{uuid.uuid4().hex[:6]}", f"web-b-{uuid.uuid4().hex[:6]}"
    ids = [db.execute("INSERT INTO flywheel.traces (app, input, output, model, prompt_version)"
                      " VALUES (%s, 'q', 'an answer', 'm', 'v1') RETURNING id", (app,)).fetchone()[0]  # type: ignore[index]
           for app in (a, b)]
    yield a, b, ids[0], ids[1]


def as_role(db: psycopg.Connection, role: str, query: str, params: tuple = ()) -> list[tuple]:
    with db.transaction():
        db.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        cur = db.execute(query, params)
        return cur.fetchall() if cur.description else []


def test_sign_in_opens_a_session_that_names_the_reviewer(db: psycopg.Connection) -> None:
    name, role = new_reviewer(db, ["support"])
    token, csrf, reviewer, role_name = sign_in(db, name, PASSWORD)  # type: ignore[misc]
    assert (reviewer, role_name) == (name, role) and len(token) >= 40 and len(csrf) >= 40
    assert db.execute("SELECT reviewer, role_name, csrf_token, apps FROM flywheel.reviewer_session(%s)",
                      (token,)).fetchone() == (name, role, csrf, ["support"])
    stored = db.execute("SELECT token_sha256 FROM flywheel.web_sessions WHERE reviewer = %s", (name,)).fetchone()[0]  # type: ignore[index]
    assert token.encode() not in bytes(stored)
    db.execute("SELECT flywheel.reviewer_sign_out(%s)", (token,))
    assert db.execute("SELECT * FROM flywheel.reviewer_session(%s)", (token,)).fetchone() is None


def test_wrong_password_unknown_name_and_lock_out_answer_alike(db: psycopg.Connection) -> None:
    name, _ = new_reviewer(db, ["support"])
    assert sign_in(db, name, "wrong password!") is None
    assert sign_in(db, "nobody_" + name, PASSWORD) is None
    for _ in range(4):  # five failures in a row in all
        assert sign_in(db, name, "wrong password!") is None
    assert sign_in(db, name, PASSWORD) is None  # locked: the right password is refused too
    db.execute("UPDATE flywheel.reviewers SET locked_until = now() - interval '1 second' WHERE name = %s", (name,))
    assert sign_in(db, name, PASSWORD) is not None


def test_short_passwords_and_bad_names_are_refused_in_one_line(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="at least 10 characters"):
        new_reviewer(db, ["support"], password="short")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="not a reviewer name"):
        db.execute("SELECT flywheel.create_reviewer('Robert''); DROP TABLE x; --', %s, ARRAY['a'])", (PASSWORD,))
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="at least one app"):
        db.execute("SELECT flywheel.create_reviewer('nobody_apps', %s, ARRAY[]::text[])", (PASSWORD,))


def test_a_reviewer_sees_only_its_apps_traces(db: psycopg.Connection, two_apps: tuple[str, str, int, int]) -> None:
    a, b, trace_a, trace_b = two_apps
    _, role = new_reviewer(db, [a])
    seen = as_role(db, role, "SELECT id FROM flywheel.traces WHERE id = ANY(%s)", ([trace_a, trace_b],))
    assert seen == [(trace_a,)]
    with pytest.raises(psycopg.errors.ForeignKeyViolation):  # app B's trace does not exist for it
        as_role(db, role, "INSERT INTO flywheel.labels (trace_id, validator, verdict) VALUES (%s, 'human', 'pass')", (trace_b,))
    assert db.execute("SELECT count(*) FROM flywheel.labels WHERE trace_id = %s", (trace_b,)).fetchone()[0] == 0  # type: ignore[index]


def test_labels_corrections_and_preferences_carry_the_reviewers_name(db: psycopg.Connection,
                                                                      two_apps: tuple[str, str, int, int]) -> None:
    a, _, trace_a, _ = two_apps
    other = db.execute("INSERT INTO flywheel.traces (app, input, output) VALUES (%s, 'q', 'another') RETURNING id",
                       (a,)).fetchone()[0]  # type: ignore[index]
    name, role = new_reviewer(db, [a])
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # the form cannot name the annotator
        as_role(db, role, "INSERT INTO flywheel.labels (trace_id, validator, verdict, annotator)"
                          " VALUES (%s, 'human', 'pass', 'someone_else')", (trace_a,))
    as_role(db, role, "INSERT INTO flywheel.labels (trace_id, validator, verdict) VALUES (%s, 'human', 'fail')", (trace_a,))
    as_role(db, role, "SELECT flywheel.record_feedback(%s, 'correction', corrected_output => 'better',"
                      " source => 'user', user_id => 'someone_else')", (trace_a,))
    as_role(db, role, "INSERT INTO flywheel.preferences (trace_a, trace_b, winner) VALUES (%s, %s, 'a')", (trace_a, other))
    assert db.execute("SELECT annotator FROM flywheel.labels WHERE trace_id = %s", (trace_a,)).fetchall() == [(name,)]
    assert db.execute("SELECT source, user_id FROM flywheel.feedback WHERE trace_id = %s",
                      (trace_a,)).fetchall() == [("reviewer", name)]
    assert db.execute("SELECT annotator, judged_by FROM flywheel.preferences WHERE trace_a = %s",
                      (trace_a,)).fetchall() == [(name, "human")]


def test_a_reviewer_cannot_read_sessions_or_password_hashes(db: psycopg.Connection) -> None:
    _, role = new_reviewer(db, ["support"])
    for query in ("SELECT * FROM flywheel.web_sessions", "SELECT password_hash FROM flywheel.reviewers",
                  "SELECT output FROM flywheel.examples"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_role(db, role, query)


def test_a_lease_is_held_by_one_reviewer_at_a_time(db: psycopg.Connection, two_apps: tuple[str, str, int, int]) -> None:
    a, _, trace_a, _ = two_apps
    (first, r1), (_, r2) = new_reviewer(db, [a]), new_reviewer(db, [a])
    claim = ("INSERT INTO flywheel.review_leases AS l (trace_id, reviewer, expires_at)"
             " VALUES (%s, '', now() + interval '10 minutes') ON CONFLICT (trace_id) DO UPDATE"
             " SET reviewer = EXCLUDED.reviewer, expires_at = EXCLUDED.expires_at"
             " WHERE l.expires_at < now() OR l.reviewer = EXCLUDED.reviewer RETURNING l.reviewer")
    assert as_role(db, r1, claim, (trace_a,)) == [(first,)]
    assert as_role(db, r2, claim, (trace_a,)) == []
