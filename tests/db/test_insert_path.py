"""The insert path after its performance work: the setting that moves the embedder to a
worker, the cascades that replaced foreign keys, and results still written per (trace, validator)."""

from __future__ import annotations

import fewshot_embedder as fe
import psycopg

from dbflywheel import embeddings


def _insert(db: psycopg.Connection, app: str, inputs: list[str]) -> list[int]:
    rows = db.execute(
        "INSERT INTO flywheel.traces (app, input, output, model) SELECT %s, i, 'an answer ' || i, 'm'"
        " FROM unnest(%s::text[]) i RETURNING id", (app, inputs)).fetchall()
    return [r[0] for r in rows]


def test_the_active_embedder_moves_to_a_worker_and_back(db: psycopg.Connection, dsn: str, app_name: str) -> None:
    said = db.execute("SELECT flywheel.set_embedder(%s, 'worker')", (fe.NAME,)).fetchone()[0]  # type: ignore[index]
    try:
        assert "now runs in the worker" in said
        ids = _insert(db, app_name, ["How do I reset my password?", "Where is my invoice?"])
        # The insert only queued them: no vector yet, a 'worker' backlog row each.
        assert db.execute("SELECT count(*) FROM flywheel.embeddings WHERE trace_id = ANY(%s)", (ids,)).fetchone() == (0,)
        assert db.execute("SELECT array_agg(reason ORDER BY trace_id) FROM flywheel.embedding_backlog"
                          " WHERE trace_id = ANY(%s)", (ids,)).fetchone() == (["worker", "worker"],)
        assert db.execute("SELECT flywheel._active_embedder()").fetchone() == (fe.NAME,)  # still the one few_shot uses
        assert embeddings.run(dsn, until_done=True).embedded >= 2
        assert db.execute("SELECT count(*) FROM flywheel.embeddings WHERE trace_id = ANY(%s)", (ids,)).fetchone() == (2,)
        assert db.execute("SELECT count(*) FROM flywheel.embedding_backlog WHERE trace_id = ANY(%s)",
                          (ids,)).fetchone() == (0,)
    finally:
        back = db.execute("SELECT flywheel.set_embedder(%s, 'database')", (fe.NAME,)).fetchone()[0]  # type: ignore[index]
    assert "now runs in the database" in back
    (again,) = _insert(db, app_name, ["Embedded at insert again"])
    assert db.execute("SELECT count(*) FROM flywheel.embeddings WHERE trace_id = %s", (again,)).fetchone() == (1,)
    assert "already the active embedder" in db.execute("SELECT flywheel.set_embedder(%s)", (fe.NAME,)).fetchone()[0]  # type: ignore[index]


def test_deleting_an_embedder_still_deletes_its_embeddings_and_backlog(db: psycopg.Connection, app_name: str) -> None:
    (trace,) = _insert(db, app_name, ["What is the capital of France?"])
    db.execute("INSERT INTO flywheel.embedders (name, runs_in, state) VALUES ('test-gone', 'worker', 'retired')")
    db.execute("INSERT INTO flywheel.embeddings (trace_id, embedder, app, embedding)"
               " SELECT trace_id, 'test-gone', app, embedding FROM flywheel.embeddings WHERE trace_id = %s", (trace,))
    db.execute("INSERT INTO flywheel.embedding_backlog (trace_id, embedder, reason) VALUES (%s, 'test-gone', 'worker')",
               (trace,))
    db.execute("DELETE FROM flywheel.embedders WHERE name = 'test-gone'")
    assert db.execute("SELECT count(*) FROM flywheel.embeddings WHERE embedder = 'test-gone'").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM flywheel.embedding_backlog WHERE embedder = 'test-gone'").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM flywheel.embeddings WHERE trace_id = %s", (trace,)).fetchone() == (1,)


def test_every_trace_still_gets_one_result_per_enabled_validator(db: psycopg.Connection, app_name: str) -> None:
    ids = _insert(db, app_name, [f"Ticket {n}: call me at +1 (555) 123-{n:04d}" for n in range(1000, 1050)])
    per_trace = db.execute(
        "SELECT count(*) FROM flywheel.validation_results r WHERE r.trace_id = ANY(%s) GROUP BY r.trace_id",
        (ids,)).fetchall()
    # The same number for every trace: at least the six default validators that apply to any trace.
    assert len(per_trace) == 50 and len(set(per_trace)) == 1 and per_trace[0][0] >= 6
    # pii still finds the phone number behind its cheaper pre-filter.
    assert db.execute(
        "SELECT count(*) FROM flywheel.validation_results r JOIN flywheel.validators v ON v.id = r.validator_id"
        " WHERE v.name = 'pii' AND r.trace_id = ANY(%s) AND r.status = 'fail' AND r.label = 'phone'", (ids,)
    ).fetchone() == (50,)
