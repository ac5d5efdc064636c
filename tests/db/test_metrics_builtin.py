"""The built-in metrics on small hand-computed data: satisfaction and its trend alert, latency
percentiles, failure modes, classifier precision/recall/F1, pipelines, prompt versions, shadow
traces, and drift."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from metrics_helpers import add_result, add_trace, make_validator

pytestmark = pytest.mark.usefixtures("only_the_test_validators")


def test_satisfaction_per_day_and_a_negative_trend_raises_an_alert(db: psycopg.Connection, app_name: str) -> None:
    flat = app_name + "-flat"
    for day in range(20):
        for app, ups in ((app_name, 10 - day // 2), (flat, 7)):  # app_name: 10 of 10 positive, down to 1
            for i in range(10):
                tid = add_trace(db, app)
                db.execute(
                    "INSERT INTO flywheel.feedback (trace_id, kind, value, created_at)"
                    " VALUES (%s, 'thumbs', %s, now() - make_interval(days => %s))",
                    (tid, 1 if i < ups else -1, 19 - day))
            if app == app_name:
                db.execute("INSERT INTO flywheel.feedback (trace_id, kind, value, created_at)"
                           " VALUES (%s, 'rating', 4, now() - make_interval(days => %s)),"
                           " (%s, 'rating', 5, now() - make_interval(days => %s))", (tid, 19 - day, tid, 19 - day))
    db.execute("CALL flywheel.refresh('satisfaction')")
    first = db.execute("SELECT thumbs, thumbs_up, positive_share, ratings, mean_rating FROM flywheel.metric_satisfaction"
                       " WHERE app = %s ORDER BY day LIMIT 1", (app_name,)).fetchone()
    assert first == (10, 10, 1.0, 2, 4.5)
    trend = db.execute("SELECT positive_share_30d, positive_share_slope_per_day FROM flywheel.metric_satisfaction_trend"
                       " WHERE app = %s ORDER BY day DESC LIMIT 1", (app_name,)).fetchone()
    assert trend is not None and trend[0] == pytest.approx(sum(10 - d // 2 for d in range(20)) / 200)
    assert trend[1] == pytest.approx(-0.05, abs=0.005)
    assert db.execute("SELECT flywheel.check_satisfaction_trend()").fetchone()[0] >= 1  # type: ignore[index]
    alerts = db.execute("SELECT subject, details->>'days' FROM flywheel.alerts WHERE kind = 'satisfaction_trend'"
                        " AND subject IN (%s, %s)", (app_name, flat)).fetchall()
    assert alerts == [(app_name, "20")]
    db.execute("SELECT flywheel.check_satisfaction_trend()")  # no second alert while the first is open
    assert db.execute("SELECT count(*) FROM flywheel.alerts WHERE subject = %s", (app_name,)).fetchone() == (1,)


def test_latency_tokens_and_cost_percentiles(db: psycopg.Connection, app_name: str) -> None:
    for i in range(1, 101):
        add_trace(db, app_name, model="m", node="answer", latency_ms=i, tokens_in=i, tokens_out=2 * i, cost_usd=i / 1000)
    add_trace(db, app_name, model="m", node="answer", latency_ms=99999, shadow=True)  # kept out
    row = db.execute("SELECT traces, latency_p50_ms, latency_p95_ms, tokens_out_p95, cost_usd_total FROM flywheel.metric_latency"
                     " WHERE app = %s", (app_name,)).fetchone()
    assert row == (100, 50.5, pytest.approx(95.05), pytest.approx(190.1), pytest.approx(5.05))


def test_failure_modes_from_validator_labels(db: psycopg.Connection, app_name: str) -> None:
    vid, _ = make_validator(db)
    for label, status in (("Out-of-scope", "fail"), ("hallucination", "fail"), ("hallucinated", "fail"),
                          ("refused", "fail"), ("invalid JSON", "fail"), ("rude", "fail"), (None, "error"), (None, "pass")):
        add_result(db, add_trace(db, app_name, prompt_version="v2", model="m"), vid, status, label=label)
    row = db.execute("SELECT failed_traces, out_of_scope, hallucination, refusal, format_violation, other_failures, validator_errors"
                     " FROM flywheel.metric_failure_modes WHERE app = %s AND prompt_version = 'v2'", (app_name,)).fetchone()
    assert row == (6, 1, 2, 1, 1, 1, 1)


def test_classifier_precision_recall_f1_per_node_and_label(db: psycopg.Connection, app_name: str) -> None:
    pairs = [("spam", "spam")] * 3 + [("spam", "ham")] + [("ham", "spam")] * 2 + [("ham", "ham")] * 4
    for predicted, actual in pairs:
        add_trace(db, app_name, node="router", node_type="classifier", output=predicted, expected=actual)
    rows = db.execute("SELECT label, true_positives, false_positives, false_negatives, precision, recall, f1"
                      " FROM flywheel.metric_classifier WHERE app = %s AND node = 'router' ORDER BY label", (app_name,)).fetchall()
    assert rows == [
        ("ham", 4, 2, 1, pytest.approx(4 / 6), pytest.approx(4 / 5), pytest.approx(8 / 11)),
        ("spam", 3, 1, 2, pytest.approx(3 / 4), pytest.approx(3 / 5), pytest.approx(6 / 9)),
    ]


def test_pipelines_first_failing_node_and_error_propagation(db: psycopg.Connection, app_name: str) -> None:
    vid, _ = make_validator(db)
    # Four runs of retrieve -> write -> check; a failed retrieve makes write and check fail.
    for run, retrieve_ok in enumerate((False, False, True, True)):
        run_id = f"{app_name}-run{run}"
        parent = None
        for step, node in enumerate(("retrieve", "write", "check")):
            ok = retrieve_ok or step == 0 and retrieve_ok
            if node == "check" and run == 3:
                ok = False  # a late failure on its own
            tid = add_trace(db, app_name, run_id=run_id, parent_id=parent, node=node,
                            created_at=f"2022-05-01 10:00:0{step}+00")
            add_result(db, tid, vid, "pass" if ok else "fail")
            parent = tid
    runs = db.execute("SELECT run_id, steps, failed_steps, first_failed_node FROM flywheel.metric_pipeline_runs"
                      " WHERE app = %s ORDER BY run_id", (app_name,)).fetchall()
    assert [r[1:] for r in runs] == [(3, 3, "retrieve"), (3, 3, "retrieve"), (3, 0, None), (3, 1, "check")]
    prop = db.execute("SELECT node, times_failed, times_passed, descendant_failure_rate_when_failed,"
                      " descendant_failure_rate_when_passed FROM flywheel.metric_error_propagation WHERE app = %s ORDER BY node",
                      (app_name,)).fetchall()
    assert prop == [("retrieve", 2, 2, 1.0, 0.25), ("write", 2, 2, 1.0, 0.5)]


def test_prompt_versions_side_by_side_with_the_registry(db: psycopg.Connection, app_name: str) -> None:
    vid, _ = make_validator(db)
    name = f"support-{uuid.uuid4().hex[:6]}"
    db.execute("INSERT INTO flywheel.prompt_versions (name, version, template, notes) VALUES"
               " (%s, 'v1.0', 'Answer: {q}', 'first'), (%s, 'v1.1', 'Answer briefly: {q}', 'shorter')", (name, name))
    for version, statuses in (("v1.0", ["pass", "fail"]), ("v1.1", ["pass", "pass"])):
        for status in statuses:
            tid = add_trace(db, app_name, prompt_version=f"{name}@{version}", model="m", latency_ms=100)
            add_result(db, tid, vid, status)
            db.execute("INSERT INTO flywheel.feedback (trace_id, kind, value) VALUES (%s, 'thumbs', %s)",
                       (tid, 1 if status == "pass" else -1))
    rows = db.execute("SELECT prompt_version, prompt_name, prompt_notes, traces, pass_rate, positive_share, latency_p50_ms"
                      " FROM flywheel.metric_prompt_versions WHERE app = %s ORDER BY prompt_version", (app_name,)).fetchall()
    assert rows == [(f"{name}@v1.0", name, "first", 2, 0.5, 0.5, 100.0), (f"{name}@v1.1", name, "shorter", 2, 1.0, 1.0, 100.0)]


def test_shadow_traces_are_compared_with_live_ones_and_kept_out_of_metrics(db: psycopg.Connection, app_name: str) -> None:
    vid, _ = make_validator(db)
    for i in range(4):
        live = add_trace(db, app_name, model="live-m", output="same" if i < 3 else "live", latency_ms=100)
        add_result(db, live, vid, "pass")
        shadow = add_trace(db, app_name, model="new-m", output="same" if i < 3 else "other", latency_ms=80, shadow=True,
                           metadata=psycopg.types.json.Jsonb({"shadow_of": str(live)}))
        add_result(db, shadow, vid, "pass" if i < 2 else "fail")
    row = db.execute("SELECT live_model, shadow_model, pairs, same_output_share, live_pass_rate, shadow_pass_rate,"
                     " mean_latency_diff_ms FROM flywheel.metric_shadow_comparison WHERE app = %s", (app_name,)).fetchone()
    assert row == ("live-m", "new-m", 4, 0.75, 1.0, 0.5, -20.0)
    models = db.execute("SELECT DISTINCT model FROM flywheel.metric_latency WHERE app = %s", (app_name,)).fetchall()
    assert models == [("live-m",)]
    db.execute("CALL flywheel.refresh('pass_rate')")
    assert db.execute("SELECT model, results FROM flywheel.metric_pass_rate WHERE app = %s", (app_name,)).fetchall() == [("live-m", 4)]


def test_drift_of_latency_scores_and_embeddings(db: psycopg.Connection, app_name: str) -> None:
    vid, vname = make_validator(db)
    db.execute(
        "INSERT INTO flywheel.traces (app, created_at, latency_ms, output) SELECT %s, '2030-01-01 12:00+00',"
        " 100 + (i %% 50), repeat('x', i %% 40) FROM generate_series(1, 400) i", (app_name,))
    db.execute(
        "INSERT INTO flywheel.traces (app, created_at, latency_ms, output) SELECT %s, '2030-02-01 12:00+00',"
        " 140 + (i %% 50), repeat('x', i %% 40) FROM generate_series(1, 400) i", (app_name,))
    db.execute("INSERT INTO flywheel.validation_results (trace_id, validator_id, validator_version, status, score)"
               " SELECT id, %s, 1, 'pass', CASE WHEN created_at < '2030-01-15' THEN 0.9 ELSE 0.5 END + (id %% 10) / 100.0"
               " FROM flywheel.traces WHERE app = %s", (vid, app_name))
    # far from every other test's traces: drift compares all the apps' traces
    ranges = "'[2030-01-01, 2030-01-02)'::tstzrange, '[2030-02-01, 2030-02-02)'::tstzrange"
    latency = db.execute(f"SELECT * FROM flywheel.drift('latency', {ranges})").fetchone()
    assert latency is not None and latency[0] == "latency" and latency[1] >= 400 and latency[2] >= 400
    assert latency[3] > 0.5 and latency[4] < 1e-20 and latency[5] > 0.25
    score = db.execute(f"SELECT ks_statistic, p_value FROM flywheel.drift(%s, {ranges})", (f"score:{vname}",)).fetchone()
    assert score == (1.0, pytest.approx(0.0, abs=1e-100))
    same = db.execute("SELECT ks_statistic, p_value, psi FROM flywheel.drift('output_length', '[2030-01-01, 2030-01-02)',"
                      " '[2030-01-01, 2030-01-02)')").fetchone()
    assert same is not None and same[0] == 0 and same[1] == 1 and same[2] == pytest.approx(0, abs=1e-9)
    with pytest.raises(psycopg.errors.InternalError, match="unknown feature"):
        db.execute("SELECT * FROM flywheel.drift('colour', NULL, NULL)")

    # The traces' input embeddings, set by hand: one direction before the 15th, another after.
    db.execute(
        """INSERT INTO flywheel.embeddings (trace_id, embedder, app, embedding)
           SELECT t.id, m.name, t.app, CASE WHEN t.created_at < '2030-01-15'
               THEN array_fill(0, ARRAY[383]) || ARRAY[1] ELSE ARRAY[1] || array_fill(0, ARRAY[383]) END
               ::real[]::vector
           FROM flywheel.traces t, flywheel.embedders m WHERE t.app = %s AND m.state = 'active'
           ON CONFLICT (trace_id, embedder) DO UPDATE SET embedding = EXCLUDED.embedding""",
        (app_name,),
    )
    rows = db.execute(f"SELECT feature, ks_statistic FROM flywheel.drift('embedding', {ranges})").fetchall()
    assert [r[0] for r in rows] == [f"embedding:{i}" for i in range(4)]
    assert all(r[1] == 1.0 for r in rows)


def test_the_drift_check_raises_an_alert_and_notifies(db: psycopg.Connection, dsn: str, app_name: str) -> None:
    db.execute("INSERT INTO flywheel.traces (app, created_at, tokens_out) SELECT %s, now() - interval '3 days',"
               " 10 + i %% 5 FROM generate_series(1, 300) i", (app_name,))
    db.execute("INSERT INTO flywheel.traces (app, created_at, tokens_out) SELECT %s, now() - interval '1 hour',"
               " 500 + i %% 5 FROM generate_series(1, 300) i", (app_name,))
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN flywheel_alerts")
        raised = db.execute("SELECT flywheel.check_drift()").fetchone()[0]  # type: ignore[index]
        assert raised >= 1
        notes = [json.loads(n.payload)["id"] for n in listener.notifies(timeout=2, stop_after=raised)]
    # the notification names the alert by id only (any role may LISTEN); the admin reads the rest
    assert db.execute("SELECT count(*) FROM flywheel.alerts WHERE id = ANY (%s) AND kind = 'drift'"
                      " AND subject = 'tokens_out'", (notes,)).fetchone() == (1,)
    alert = db.execute("SELECT message, details->>'psi' FROM flywheel.alerts WHERE kind = 'drift' AND subject = 'tokens_out'"
                       " ORDER BY id DESC LIMIT 1").fetchone()
    assert alert is not None and alert[0].startswith("tokens_out drifted: PSI") and float(alert[1]) > 0.25
