"""The semantic index for real: embeddings on insert, examples, few_shot, feedback, the
annotation queue, review samples, golden sets and the cache."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import fewshot_embedder as fe
import numpy as np
import psycopg
import pytest

QUESTIONS = [
    "How do I reset my password?",
    "What is the capital of France?",
    "How many flights leave Boston on Monday?",
    "Which authors wrote about machine learning?",
    "Explain quantum field theory to a high-school student.",
    "Write a haiku about kubernetes.",
]


def traces(db: psycopg.Connection, app: str, inputs: list[str | None], output: str = "an answer") -> list[int]:
    rows = db.execute(
        "INSERT INTO flywheel.traces (app, input, output, model, prompt_version)"
        " SELECT %s, i, %s || ' ' || o, 'm', 'v1' FROM unnest(%s::text[]) WITH ORDINALITY AS u(i, o)"
        " RETURNING id",
        (app, output, inputs),
    ).fetchall()
    return [r[0] for r in rows]


def label(db: psycopg.Connection, trace_id: int, validator: str = "helpful", verdict: str = "pass") -> None:
    db.execute(
        "INSERT INTO flywheel.labels (trace_id, app, validator, verdict) VALUES (%s, '', %s, %s)",
        (trace_id, validator, verdict),
    )


def vector(db: psycopg.Connection, trace_id: int) -> np.ndarray:
    row = db.execute(
        "SELECT embedding::text FROM flywheel.embeddings WHERE trace_id = %s AND embedder = flywheel._active_embedder()",
        (trace_id,),
    ).fetchone()
    assert row is not None, f"trace {trace_id} has no embedding"
    return np.array([float(x) for x in row[0].strip("[]").split(",")])


# --- embeddings in the insert path -------------------------------------------------------

def test_every_inserted_trace_is_embedded_like_the_python_package_does(db: psycopg.Connection, app_name: str) -> None:
    ids = traces(db, app_name, [*QUESTIONS, None])
    stored = db.execute(
        "SELECT trace_id, embedder FROM flywheel.embeddings WHERE trace_id = ANY(%s)", (ids,)
    ).fetchall()
    assert {r[1] for r in stored} == {fe.NAME}
    assert sorted(r[0] for r in stored) == ids[:-1]  # a NULL input has nothing to embed
    expected = fe.embed_batch(QUESTIONS)
    for trace_id, want in zip(ids, expected, strict=False):
        assert np.allclose(vector(db, trace_id), want, atol=1e-6)  # Debian's numpy in PL/Python, ours here


def test_ordinary_traces_are_not_in_the_hnsw_index(db: psycopg.Connection, app_name: str) -> None:
    ids = traces(db, app_name, QUESTIONS)
    assert db.execute("SELECT count(*) FROM flywheel.examples WHERE trace_id = ANY(%s)", (ids,)).fetchone() == (0,)
    indexed = db.execute(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam"
        " WHERE a.amname = 'hnsw' AND c.relnamespace = 'flywheel'::regnamespace"
    ).fetchall()
    assert indexed == [("examples_embedding",)]


def test_a_failing_embedder_never_aborts_the_insert_and_is_filled_in_later(db: psycopg.Connection, app_name: str) -> None:
    # Break storing embeddings (a constraint no row satisfies); the application's INSERT still works.
    db.execute("ALTER TABLE flywheel.embeddings ADD CONSTRAINT test_broken CHECK (trace_id < 0) NOT VALID")
    try:
        ids = traces(db, app_name, QUESTIONS[:3])
    finally:
        db.execute("ALTER TABLE flywheel.embeddings DROP CONSTRAINT test_broken")
    assert db.execute("SELECT count(*) FROM flywheel.traces WHERE id = ANY(%s)", (ids,)).fetchone() == (3,)
    backlog = db.execute(
        "SELECT trace_id, reason, last_error FROM flywheel.embedding_backlog WHERE trace_id = ANY(%s) ORDER BY 1", (ids,)
    ).fetchall()
    assert [r[0] for r in backlog] == ids and {r[1] for r in backlog} == {"failed"}
    assert "test_broken" in backlog[0][2]
    assert db.execute("SELECT flywheel.embed_backlog()").fetchone()[0] >= 3  # type: ignore[index]
    assert db.execute("SELECT count(*) FROM flywheel.embedding_backlog WHERE trace_id = ANY(%s)", (ids,)).fetchone() == (0,)
    assert np.allclose(vector(db, ids[0]), fe.embed_batch([QUESTIONS[0]])[0], atol=1e-6)


def test_an_embedder_error_inside_python_is_recorded_too(db: psycopg.Connection, app_name: str) -> None:
    # A registered in-database embedder the module does not know: every trace goes to the backlog.
    db.execute("INSERT INTO flywheel.embedders (name, runs_in, state) VALUES ('test-unknown', 'database', 'building')")
    try:
        ids = traces(db, app_name, ["hello there"])
        row = db.execute(
            "SELECT last_error FROM flywheel.embedding_backlog WHERE trace_id = %s AND embedder = 'test-unknown'",
            (ids[0],),
        ).fetchone()
        assert row is not None and "LookupError" in row[0]
        assert db.execute(  # the active embedder was not disturbed
            "SELECT count(*) FROM flywheel.embeddings WHERE trace_id = %s AND embedder = %s", (ids[0], fe.NAME)
        ).fetchone() == (1,)
    finally:
        db.execute("DELETE FROM flywheel.embedders WHERE name = 'test-unknown'")


# --- examples and few_shot -----------------------------------------------------------------

def test_a_label_makes_an_example_searchable_at_once(db: psycopg.Connection, app_name: str) -> None:
    ids = traces(db, app_name, QUESTIONS)
    label(db, ids[0], "helpful", "pass")
    rows = db.execute("SELECT trace_id, label, similarity FROM flywheel.few_shot(%s, 3, app => %s)",
                      ("how can I reset my password", app_name)).fetchall()
    assert [r[0] for r in rows] == [ids[0]] and rows[0][1] == "pass" and rows[0][2] > 0.4
    db.execute("DELETE FROM flywheel.labels WHERE trace_id = %s", (ids[0],))  # no longer an example
    assert db.execute("SELECT count(*) FROM flywheel.few_shot(%s, 3, app => %s)",
                      ("reset password", app_name)).fetchone() == (0,)


def test_a_correction_is_an_example_with_the_corrected_output(db: psycopg.Connection, app_name: str) -> None:
    ids = traces(db, app_name, QUESTIONS[:2])
    db.execute("SELECT flywheel.record_feedback(%s, 'correction', corrected_output => 'Paris, of course')", (ids[1],))
    rows = db.execute("SELECT trace_id, output FROM flywheel.few_shot('capital of France', 5, app => %s)",
                      (app_name,)).fetchall()
    assert rows == [(ids[1], "Paris, of course")]


def test_score_favours_corrections_disagreements_and_recent_labels(db: psycopg.Connection, app_name: str) -> None:
    same = "How do I reset my password?"
    plain, corrected, disputed, old = traces(db, app_name, [same] * 4)
    for t in (plain, corrected, disputed, old):
        label(db, t, "fs_polite", "pass")
    db.execute("UPDATE flywheel.labels SET created_at = now() - interval '120 days' WHERE trace_id = %s", (old,))
    db.execute("SELECT flywheel._sync_examples(ARRAY[%s]::bigint[])", (old,))
    db.execute("SELECT flywheel.record_feedback(%s, 'correction', corrected_output => 'Use the link')", (corrected,))
    validator_id = db.execute(
        "INSERT INTO flywheel.validators (name, kind, enabled) VALUES ('fs_polite', 'sql', false)"  # results written by hand
        " ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind RETURNING id"
    ).fetchone()[0]  # type: ignore[index]
    db.execute(
        "INSERT INTO flywheel.validation_results (trace_id, validator_id, validator_version, status, judged_by)"
        " VALUES (%s, %s, 1, 'fail', 'llm')", (disputed, validator_id),
    )
    flags = dict(db.execute(
        "SELECT trace_id, disagreement FROM flywheel.examples WHERE trace_id = ANY(%s)", ([plain, disputed],)
    ).fetchall())
    assert flags == {plain: False, disputed: True}
    assert db.execute("SELECT trace_id FROM flywheel.disagreements WHERE trace_id = ANY(%s)",
                      ([plain, disputed],)).fetchall() == [(disputed,)]
    ranked = db.execute("SELECT trace_id, similarity, score FROM flywheel.few_shot(%s, 4, app => %s)",
                        (same, app_name)).fetchall()
    assert {r[0] for r in ranked[:2]} == {corrected, disputed}
    assert [r[0] for r in ranked[2:]] == [plain, old]
    assert all(abs(r[1] - 1) < 1e-6 for r in ranked)  # all equally similar: the score decides


@pytest.fixture(scope="module")
def crowd(dsn: str) -> Iterator[dict[str, object]]:
    """3000 labelled examples in a big app, 60 in a small one (2% selectivity)."""
    big, small = f"big-{uuid.uuid4().hex[:6]}", f"small-{uuid.uuid4().hex[:6]}"
    words = ("password account login billing invoice refund shipping order delivery flight hotel booking "
             "author paper citation query table join index kubernetes haiku physics").split()
    rng = np.random.default_rng(7)
    texts = [" ".join(rng.choice(words, 6)) + f" case {i}" for i in range(3060)]
    with psycopg.connect(dsn, autocommit=True) as db:
        ids = traces(db, big, texts[:3000]) + traces(db, small, texts[3000:])
        db.execute("INSERT INTO flywheel.labels (trace_id, app, validator, verdict)"
                   " SELECT i, '', 'helpful', 'pass' FROM unnest(%s::bigint[]) i", (ids,))
        db.execute("ANALYZE flywheel.examples")
    yield {"big": big, "small": small, "ids": ids}


def exact_top(db: psycopg.Connection, query: str, k: int, app: str | None) -> list[int]:
    return [r[0] for r in db.execute(
        "SELECT trace_id FROM flywheel.examples WHERE embedder = (SELECT flywheel._active_embedder())"
        " AND (%s::text IS NULL OR app = %s) ORDER BY (embedding <=> flywheel._embed_query(%s)) + 0 LIMIT %s",
        (app, app, query, k)).fetchall()]


@pytest.mark.parametrize("exact_below", ["5000", "0"], ids=["exact-scan", "hnsw-iterative-scan"])
def test_a_selective_filter_still_returns_k_rows(db: psycopg.Connection, crowd: dict[str, object], exact_below: str) -> None:
    db.execute("SELECT set_config('flywheel.few_shot_exact_below', %s, false)", (exact_below,))
    try:
        for query in ("refund for my order", "flight hotel booking", "kubernetes haiku"):
            rows = db.execute("SELECT trace_id FROM flywheel.few_shot(%s, 10, app => %s)",
                              (query, crowd["small"])).fetchall()
            assert len(rows) == 10
            assert set(r[0] for r in rows) <= set(crowd["ids"][3000:])  # type: ignore[index]
            assert len({r[0] for r in rows} & set(exact_top(db, query, 10, crowd["small"]))) >= 9  # type: ignore[arg-type]
    finally:
        db.execute("RESET flywheel.few_shot_exact_below")


def test_unfiltered_few_shot_uses_the_index_and_finds_the_true_neighbours(
    db: psycopg.Connection, crowd: dict[str, object]
) -> None:
    hits = 0
    queries = ("refund for my order", "login password account", "author citation paper", "physics table join")
    for query in queries:
        got = {r[0] for r in db.execute("SELECT trace_id FROM flywheel.few_shot(%s, 10, half_life => '1000 years')",
                                        (query,)).fetchall()}
        hits += len(got & set(exact_top(db, query, 10, None)))
    assert hits / (10 * len(queries)) >= 0.9
    plan = "\n".join(r[0] for r in db.execute(
        "EXPLAIN SELECT trace_id FROM flywheel.examples WHERE embedder = flywheel._active_embedder()"
        " ORDER BY embedding <=> (SELECT embedding FROM flywheel.examples LIMIT 1) LIMIT 40").fetchall())
    assert "examples_embedding" in plan


def test_few_shot_rejects_nonsense(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.RaiseException, match="k must be between 1 and 1000"):
        db.execute("SELECT * FROM flywheel.few_shot('x', 0)")
    with pytest.raises(psycopg.errors.RaiseException, match="half_life must be a positive interval"):
        db.execute("SELECT * FROM flywheel.few_shot('x', 3, half_life => '-1 day')")


# --- feedback --------------------------------------------------------------------------------

def test_record_feedback_by_id_uid_or_text(db: psycopg.Connection, app_name: str) -> None:
    (trace_id,) = traces(db, app_name, ["q"])
    # The application's own id for the trace, given at insert (here: set afterwards).
    uid = db.execute("UPDATE flywheel.traces SET uid = gen_random_uuid() WHERE id = %s RETURNING uid",
                     (trace_id,)).fetchone()[0]  # type: ignore[index]
    db.execute("SELECT flywheel.record_feedback(%s, 'thumbs', 1)", (trace_id,))
    db.execute("SELECT flywheel.record_feedback(%s::uuid, 'rating', 4)", (uid,))
    db.execute(f"SELECT flywheel.record_feedback('{uid}', 'dwell', 12.5)")
    db.execute(f"SELECT flywheel.record_feedback('{trace_id}', 'click')")
    db.execute("SELECT flywheel.record_feedback(%s, 'comment', comment => 'nice')", (trace_id,))
    kinds = db.execute("SELECT kind, app FROM flywheel.feedback WHERE trace_id = %s ORDER BY id", (trace_id,)).fetchall()
    assert kinds == [(k, app_name) for k in ("thumbs", "rating", "dwell", "click", "comment")]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("SELECT flywheel.record_feedback(-42, 'thumbs', 1)", "trace -42 does not exist"),
        (f"SELECT flywheel.record_feedback('{uuid.uuid4()}'::uuid, 'thumbs', 1)", "no trace has uid"),
        ("SELECT flywheel.record_feedback('not-a-trace', 'thumbs', 1)", "neither a trace id nor a trace uid"),
        ("SELECT flywheel.record_feedback({id}, 'rating', 6)", "a rating is between 1 and 5, not 6"),
        ("SELECT flywheel.record_feedback({id}, 'thumbs', 0)", "thumbs takes value 1 \\(up\\) or -1 \\(down\\)"),
        ("SELECT flywheel.record_feedback({id}, 'applause', 1)", "unknown kind 'applause'; use one of thumbs"),
        ("SELECT flywheel.record_feedback({id}, 'correction')", "a correction needs corrected_output"),
    ],
)
def test_bad_feedback_is_a_clear_error_and_writes_nothing(
    db: psycopg.Connection, app_name: str, call: str, message: str
) -> None:
    (trace_id,) = traces(db, app_name, ["q"])
    before = db.execute("SELECT count(*) FROM flywheel.feedback").fetchone()
    with pytest.raises(psycopg.Error, match=message):
        db.execute(call.replace("{id}", str(trace_id)))
    assert db.execute("SELECT count(*) FROM flywheel.feedback").fetchone() == before


# --- roles -----------------------------------------------------------------------------------

def test_an_application_sees_only_its_own_examples(db: psycopg.Connection, login_role, app_name: str) -> None:  # type: ignore[no-untyped-def]
    mine, theirs = app_name + "-a", app_name + "-b"
    alpha = login_role("flywheel_app", mine)
    (own,) = traces(alpha, mine, ["How do I reset my password?"])
    (other,) = traces(db, theirs, ["How do I reset my password?"])
    alpha.execute("SELECT flywheel.record_feedback(%s, 'correction', corrected_output => 'mine')", (own,))
    label(db, other)
    seen = alpha.execute("SELECT trace_id FROM flywheel.few_shot('reset my password', 10)").fetchall()
    assert seen == [(own,)]
    assert alpha.execute("SELECT trace_id FROM flywheel.few_shot('reset my password', 10, app => %s)",
                         (theirs,)).fetchall() == []
    # Passing another role's name to the internal function gains nothing.
    assert alpha.execute("SELECT count(*) FROM flywheel._few_shot(flywheel._embed_query('reset'), 5, NULL, NULL,"
                         " '30 days', 'postgres')").fetchone() == (0,)
    for forbidden in ("SELECT * FROM flywheel.examples", "SELECT * FROM flywheel.annotation_queue",
                      "SELECT flywheel.promote_to_golden(1, 'x')", "SELECT flywheel.set_embedder('x')"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            alpha.execute(forbidden)


# --- labelling -------------------------------------------------------------------------------

def test_annotation_queue_puts_bad_novel_traces_before_known_ones(db: psycopg.Connection, app_name: str) -> None:
    known, duplicate, novel_bad = traces(db, app_name, [
        "How do I reset my password?", "How do I reset my password?", "Zebras migrate across the Serengeti plains"])
    label(db, known)
    db.execute("SELECT flywheel.record_feedback(%s, 'thumbs', -1)", (novel_bad,))
    queue = db.execute(
        "SELECT trace_id, priority, novelty, badness, reasons FROM flywheel.annotation_queue WHERE trace_id = ANY(%s)",
        ([known, duplicate, novel_bad],),
    ).fetchall()
    assert [r[0] for r in queue] == [novel_bad, duplicate]  # the labelled one is not in the queue
    assert queue[0][3] == 0.5 and "bad" in queue[0][4] and queue[0][2] > queue[1][2]
    assert queue[1][2] < 0.01  # identical to an existing example: nothing new


def test_sample_for_labeling_covers_every_stratum(db: psycopg.Connection, app_name: str) -> None:
    validator_id = db.execute(
        "INSERT INTO flywheel.validators (name, kind, enabled) VALUES ('fs_sampled', 'sql', false)"  # results written by hand
        " ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind RETURNING id").fetchone()[0]  # type: ignore[index]
    ids = []
    for model in ("m-a", "m-b"):
        for status, count in (("pass", 30), ("fail", 3)):
            rows = db.execute(
                "INSERT INTO flywheel.traces (app, input, model, prompt_version)"
                " SELECT %s, 'q' || g, %s, 'v1' FROM generate_series(1, %s) g RETURNING id", (app_name, model, count)
            ).fetchall()
            db.execute("INSERT INTO flywheel.validation_results (trace_id, validator_id, validator_version, status)"
                       " SELECT unnest(%s::bigint[]), %s, 1, %s", ([r[0] for r in rows], validator_id, status))
            ids += [r[0] for r in rows]
    sample = db.execute("SELECT model, verdict FROM flywheel.sample_for_labeling('fs_sampled', 4)").fetchall()
    assert sorted(sample) == [("m-a", "fail"), ("m-a", "pass"), ("m-b", "fail"), ("m-b", "pass")]
    bigger = db.execute("SELECT verdict FROM flywheel.sample_for_labeling('fs_sampled', 22)").fetchall()
    assert sum(1 for r in bigger if r[0] == "pass") >= 16  # then in proportion to the strata
    with pytest.raises(psycopg.errors.RaiseException, match="no validator named 'nope'"):
        db.execute("SELECT * FROM flywheel.sample_for_labeling('nope', 3)")


# --- golden sets -----------------------------------------------------------------------------

def test_golden_sets_grow_from_labels_and_keep_their_versions(db: psycopg.Connection, app_name: str) -> None:
    name = f"gold-{uuid.uuid4().hex[:8]}"
    bad, other, unlabelled = traces(db, app_name, ["Which river flows through Paris?", "2+2?", "hello"])
    label(db, bad, "factual", "fail")
    assert db.execute("SELECT flywheel.promote_to_golden(%s, %s)", (bad, name)).fetchone() == (1,)
    assert db.execute("SELECT flywheel.promote_to_golden(%s, %s, '{\"factual\": \"pass\"}', '4')",
                      (other, name)).fetchone() == (2,)
    with pytest.raises(psycopg.errors.RaiseException, match="has nothing to expect"):
        db.execute("SELECT flywheel.promote_to_golden(%s, %s)", (unlabelled, name))
    with pytest.raises(psycopg.errors.RaiseException, match='must be "pass" or "fail"'):
        db.execute("SELECT flywheel.promote_to_golden(%s, %s, '{\"factual\": \"maybe\"}')", (unlabelled, name))
    assert db.execute("SELECT flywheel.remove_from_golden(%s, %s)", (bad, name)).fetchone() == (3,)
    current = db.execute("SELECT trace_id, expected_verdicts, expected_output FROM flywheel.golden_set_traces(%s)",
                         (name,)).fetchall()
    assert current == [(other, {"factual": "pass"}, "4")]
    v1 = db.execute("SELECT trace_id, expected_verdicts FROM flywheel.golden_set_traces(%s, 1)", (name,)).fetchall()
    assert v1 == [(bad, {"factual": "fail"})]
    # A golden trace is an example, with its expected output.
    assert db.execute("SELECT golden, output FROM flywheel.examples WHERE trace_id = %s", (other,)).fetchone() == (True, "4")
    with pytest.raises(psycopg.errors.RaiseException, match="no golden set named"):
        db.execute("SELECT * FROM flywheel.golden_set_traces('no-such-set')")


# --- the cache -------------------------------------------------------------------------------

def test_cache_serves_only_safe_answers(db: psycopg.Connection, app_name: str) -> None:
    q = f"What is the opening time of store {uuid.uuid4().hex[:6]}?"
    (good,) = traces(db, app_name, [q], output="9 am")
    validator_id = db.execute(
        "INSERT INTO flywheel.validators (name, kind, enabled) VALUES ('fs_cache', 'sql', false)"  # results written by hand
        " ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind RETURNING id").fetchone()[0]  # type: ignore[index]
    lookup = "SELECT trace_id, matched FROM flywheel.cache_lookup(%s, 0.97)"
    db.execute("DELETE FROM flywheel.validation_results WHERE trace_id = %s", (good,))  # whatever validators ran
    assert db.execute(lookup, (q,)).fetchall() == []  # never validated: not served
    db.execute("INSERT INTO flywheel.validation_results (trace_id, validator_id, validator_version, status)"
               " VALUES (%s, %s, 1, 'pass')", (good, validator_id))
    assert db.execute(lookup, ("  " + q.upper() + " ",)).fetchall() == [(good, "exact")]
    assert db.execute(lookup, (q + " And on Sunday?",)).fetchall() == []  # similar, but not an example
    label(db, good, "fs_cache", "pass")
    near = db.execute("SELECT trace_id, matched, similarity FROM flywheel.cache_lookup(%s, 0.9)", (q + "!!",)).fetchall()
    assert near and near[0][0] == good
    db.execute("SELECT flywheel.record_feedback(%s, 'thumbs', -1)", (good,))
    assert db.execute(lookup, (q,)).fetchall() == []  # negative feedback: never again
    with pytest.raises(psycopg.errors.RaiseException, match="threshold must be between 0.9 and 1"):
        db.execute("SELECT * FROM flywheel.cache_lookup('x', 0.5)")


# --- switching embedders ---------------------------------------------------------------------

def test_a_new_embedder_is_back_filled_while_the_old_one_serves(
    db: psycopg.Connection, dsn: str, app_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dbflywheel import embeddings

    ids = traces(db, app_name, QUESTIONS)
    label(db, ids[0])
    assert "already the active embedder" in db.execute("SELECT flywheel.set_embedder(%s)", (fe.NAME,)).fetchone()[0]  # type: ignore[index]
    db.execute("SELECT flywheel.set_embedder('test-worker-384', 'worker')")
    try:
        (new,) = traces(db, app_name, ["How do I reset my password?"])
        assert db.execute("SELECT reason FROM flywheel.embedding_backlog WHERE trace_id = %s", (new,)).fetchone() == ("worker",)
        # While it builds, the old vectors serve.
        assert db.execute("SELECT flywheel._active_embedder()").fetchone() == (fe.NAME,)
        assert db.execute("SELECT trace_id FROM flywheel.few_shot('reset password', 1, app => %s)",
                          (app_name,)).fetchall() == [(ids[0],)]
        with pytest.raises(Exception, match="cannot run it"):
            embeddings.run(dsn, until_done=True)
        monkeypatch.setattr(embeddings, "python_embedders", lambda: {"test-worker-384": embeddings.embed})
        result = embeddings.run(dsn, batch=500, until_done=True)
        assert result.activated == "test-worker-384"
        status = dict(db.execute("SELECT embedder, state FROM flywheel.embedding_status").fetchall())
        assert status["test-worker-384"] == "active" and status[fe.NAME] == "retired"
        assert db.execute("SELECT embedder FROM flywheel.examples WHERE trace_id = %s", (ids[0],)).fetchall() == [
            ("test-worker-384",)]
        # The application's few_shot(vector) with the worker's vector finds the same example.
        q = "[" + ",".join(map(str, embeddings.embed(["reset password"])[0])) + "]"  # type: ignore[arg-type]
        assert db.execute("SELECT trace_id FROM flywheel.few_shot(%s::vector, 1, app => %s)",
                          (q, app_name)).fetchall() == [(ids[0],)]
        with pytest.raises(psycopg.errors.RaiseException, match="runs in the worker"):
            db.execute("SELECT * FROM flywheel.few_shot('reset password')")
    finally:
        # Back to the built-in one: its vectors are still there, so the back-fill is quick.
        db.execute("SELECT flywheel.set_embedder(%s)", (fe.NAME,))
        while db.execute("SELECT flywheel.embed_backlog(5000)").fetchone()[0]:  # type: ignore[index]
            pass
        db.execute("DELETE FROM flywheel.embedders WHERE name = 'test-worker-384'")
    assert db.execute("SELECT flywheel._active_embedder()").fetchone() == (fe.NAME,)
    assert db.execute("SELECT trace_id FROM flywheel.few_shot('reset password', 1, app => %s)",
                      (app_name,)).fetchall() == [(ids[0],)]
