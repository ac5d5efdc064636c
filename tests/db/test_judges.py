"""The judge queue in the database: config checks, claims and leases, idempotent results,
backoff and dead letters, budgets, pairing, few-shot examples, alignment and its alert."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from judges_support import add_traces, enqueue, make_judge, only_these_validators
from psycopg.types.json import Jsonb


def claim(db: psycopg.Connection, worker: str = "w1", n: int = 10, lease: str = "60 seconds") -> list[dict]:
    cur = db.cursor(row_factory=psycopg.rows.dict_row)
    return cur.execute("SELECT * FROM flywheel._claim_judge_jobs(%s, %s, %s::interval)", (worker, n, lease)).fetchall()


def complete(db: psycopg.Connection, job: dict, worker: str = "w1", status: str = "pass", label: str | None = None) -> bool:
    row = db.execute(
        "SELECT flywheel._complete_judge_job(%s, %s, %s, %s, NULL, %s, %s, 100, 20, 5.0)",
        (job["job_id"], worker, job["validator_id"], status, label,
         Jsonb({"pair_trace_id": job["pair_trace_id"]} if job["pair_trace_id"] else {})),
    ).fetchone()
    return bool(row and row[0])


def fail(db: psycopg.Connection, job: dict, worker: str = "w1", error: str = "HTTP 500", retry_after: float | None = None) -> str:
    row = db.execute("SELECT flywheel._fail_judge_job(%s, %s, %s, %s, %s)",
                     (job["job_id"], worker, job["validator_id"], error, retry_after)).fetchone()
    assert row is not None
    return row[0]


@pytest.fixture
def judge(db: psycopg.Connection, app_name: str):  # type: ignore[no-untyped-def]
    """A judge with 3 queued traces; only its jobs are in the queue."""
    vid, name = make_judge(db, app=app_name, max_attempts=2, retry_base_seconds=10)
    traces = add_traces(db, app_name, [{"input": f"q{i}", "output": f"a{i}"} for i in range(3)])
    enqueue(db, vid, traces)
    only_these_validators(db, [vid])
    yield vid, name, traces
    db.execute("UPDATE flywheel.validators SET enabled = false WHERE id = %s", (vid,))
    db.execute("DELETE FROM flywheel.judge_jobs WHERE validator_id = %s", (vid,))


# -- config -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("kind", "config", "message"),
    [("llm_judge", {}, "needs a criterion"),
     ("llm_judge", {"criterion": "x", "api_key": "sk-1"}, "must not be stored in the database"),
     ("llm_judge", {"criterion": "x", "temprature": 0}, 'unknown key "temprature"'),
     ("llm_judge", {"criterion": "x", "scale": "1-10"}, "scale must be binary or 1-5"),
     ("llm_judge", {"criterion": "x", "provider": "openai"}, "needs a model"),
     ("llm_judge", {"criterion": "x", "few_shot": -1}, "few_shot must be a number in 0..50"),
     ("llm_judge", {"criterion": "x", "redact_pii": "no"}, "redact_pii must be true or false"),
     ("llm_judge", {"criterion": "x", "agreement_window": "soon"}, "agreement_window must be an interval"),
     ("llm_judge", {"criterion": "x", "budget": {"jobs_per_day": 5}}, 'unknown budget key "jobs_per_day"'),
     ("llm_pairwise", {"scale": "1-5"}, "scale does not apply")],
)
def test_a_bad_judge_config_is_refused_with_a_clear_message(db: psycopg.Connection, kind: str, config: dict, message: str) -> None:
    with pytest.raises(psycopg.errors.RaiseException, match=message):
        db.execute("SELECT flywheel._check_llm_judge_config(%s, %s)", (kind, Jsonb(config)))


def test_a_good_judge_config_passes(db: psycopg.Connection) -> None:
    config = {"criterion": "Polite?", "provider": "openai", "model": "gpt-4o-mini", "base_url": "http://localhost:1/v1",
              "api_key_env": "MY_KEY", "scale": "1-5", "pass_threshold": 4, "few_shot": 3, "redact_pii": True,
              "agreement_floor": 0.8, "agreement_window": "14 days", "budget": {"jobs_per_hour": 100, "usd_per_day": 5}}
    db.execute("SELECT flywheel._check_llm_judge_config('llm_judge', %s)", (Jsonb(config),))
    db.execute("SELECT flywheel._check_llm_judge_config('llm_pairwise', '{}')")


# -- the queue --------------------------------------------------------------------------------

def test_two_workers_claim_disjoint_jobs_and_each_claim_is_an_attempt(db: psycopg.Connection, dsn: str, judge) -> None:  # type: ignore[no-untyped-def]
    vid, name, traces = judge
    with psycopg.connect(dsn) as other:  # a transaction held open: its locked rows are skipped
        other_rows = other.execute("SELECT job_id FROM flywheel._claim_judge_jobs('w2', 2, '60 seconds')").fetchall()
        mine = claim(db, "w1")
        other.commit()
    assert len(other_rows) == 2 and len(mine) == 1
    assert {r[0] for r in other_rows}.isdisjoint({mine[0]["job_id"]})
    assert mine[0]["validator"] == name and mine[0]["attempts"] == 1 and mine[0]["input"].startswith("q")
    assert claim(db, "w3") == []  # everything is leased
    leased = db.execute("SELECT leased_by, count(*) FROM flywheel.judge_jobs WHERE validator_id = %s GROUP BY 1 ORDER BY 1",
                        (vid,)).fetchall()
    assert leased == [("w1", 1), ("w2", 2)]


def test_a_result_is_written_once_even_when_two_workers_finish_the_same_job(db: psycopg.Connection, judge) -> None:  # type: ignore[no-untyped-def]
    vid, _, traces = judge
    jobs = claim(db, "w1", lease="0 seconds")  # the lease expires at once: as if w1 had died
    assert claim(db, "w2") == []  # until a heartbeat releases expired leases
    db.execute("SELECT flywheel._judge_heartbeat('w2', 'host', 1, 4, 0, 0, 0, '60 seconds')")
    stolen = claim(db, "w2")
    assert sorted(j["job_id"] for j in stolen) == sorted(j["job_id"] for j in jobs)
    assert all(j["attempts"] == 2 for j in stolen)
    assert complete(db, stolen[0], "w2", "pass") is True
    assert complete(db, jobs[0], "w1", "fail") is False  # the late worker writes nothing
    assert db.execute("SELECT status, judged_by FROM flywheel.validation_results WHERE trace_id = %s AND validator_id = %s",
                      (stolen[0]["trace_id"], vid)).fetchall() == [("pass", "llm")]
    assert db.execute("SELECT count(*) FROM flywheel.judge_jobs WHERE id = %s", (stolen[0]["job_id"],)).fetchone() == (0,)
    calls = db.execute("SELECT count(*), sum(tokens_in) FROM flywheel.judge_calls WHERE job_id = %s",
                       (stolen[0]["job_id"],)).fetchone()
    assert calls == (2, 200)  # both provider calls are counted: they were made


def test_a_failed_job_backs_off_then_goes_to_dead_letters_and_can_be_requeued(db: psycopg.Connection, judge) -> None:  # type: ignore[no-untyped-def]
    vid, name, _ = judge
    job = claim(db, n=1)[0]
    assert fail(db, job, "someone-else") == "gone"  # only the lease holder reports
    assert fail(db, job, error="HTTP 500 from fake") == "retry"
    wait = db.execute("SELECT status, extract(epoch FROM run_after - now()), last_error FROM flywheel.judge_jobs WHERE id = %s",
                      (job["job_id"],)).fetchone()
    assert wait is not None and wait[0] == "pending" and 5 <= wait[1] <= 15 and wait[2] == "HTTP 500 from fake"  # 10 s x jitter
    assert all(j["job_id"] != job["job_id"] for j in claim(db, n=10))  # not due yet
    db.execute("UPDATE flywheel.judge_jobs SET run_after = now() WHERE id = %s", (job["job_id"],))
    again = [j for j in claim(db, "w9", n=10) if j["job_id"] == job["job_id"]][0]
    assert again["attempts"] == 2
    assert fail(db, again, "w9", error="HTTP 429", retry_after=120) == "dead"  # max_attempts = 2
    dead = db.execute("SELECT attempts, error FROM flywheel.judge_dead_letters WHERE id = %s", (job["job_id"],)).fetchone()
    assert dead == (2, "HTTP 429")
    status = db.execute("SELECT dead, leased FROM flywheel.queue_status WHERE validator = %s", (name,)).fetchone()
    assert status == (1, 2)
    assert db.execute("SELECT flywheel.requeue_dead(%s)", (name,)).fetchone() == (1,)
    back = db.execute("SELECT status, attempts, last_error FROM flywheel.judge_jobs WHERE id = %s", (job["job_id"],)).fetchone()
    assert back == ("pending", 0, "requeued after: HTTP 429")
    assert db.execute("SELECT count(*) FROM flywheel.judge_dead_letters WHERE id = %s", (job["job_id"],)).fetchone() == (0,)


def test_retry_after_from_the_provider_wins_over_a_shorter_backoff(db: psycopg.Connection, judge) -> None:  # type: ignore[no-untyped-def]
    job = claim(db, n=1)[0]
    assert fail(db, job, retry_after=100) == "retry"
    wait = db.execute("SELECT extract(epoch FROM run_after - now()) FROM flywheel.judge_jobs WHERE id = %s",
                      (job["job_id"],)).fetchone()
    assert wait is not None and 99 <= wait[0] <= 101


def test_queue_status_counts_pending_leased_done_and_oldest_age(db: psycopg.Connection, judge) -> None:  # type: ignore[no-untyped-def]
    vid, name, _ = judge
    jobs = claim(db, n=2)
    complete(db, jobs[0])
    row = db.execute("SELECT pending, leased, done, dead, oldest_pending_age > interval '0', waiting_reason"
                     " FROM flywheel.queue_status WHERE validator = %s", (name,)).fetchone()
    assert row == (1, 1, 1, 0, True, None)


def test_a_budget_of_jobs_per_hour_holds_jobs_and_says_why(db: psycopg.Connection, app_name: str) -> None:
    vid, name = make_judge(db, app=app_name, budget={"jobs_per_hour": 2})
    enqueue(db, vid, add_traces(db, app_name, [{"output": str(i)} for i in range(4)]))
    only_these_validators(db, [vid])
    first = claim(db, n=10)
    assert len(first) == 2  # leased jobs count against the budget
    complete(db, first[0])
    complete(db, first[1])
    assert claim(db, n=10) == []  # two calls in the last hour
    row = db.execute("SELECT pending, waiting_reason FROM flywheel.queue_status WHERE validator = %s", (name,)).fetchone()
    assert row == (2, "budget: 2 jobs per hour reached; jobs wait")
    db.execute("UPDATE flywheel.judge_calls SET called_at = now() - interval '2 hours' WHERE validator_id = %s", (vid,))
    assert len(claim(db, n=10)) == 2
    db.execute("DELETE FROM flywheel.judge_jobs WHERE validator_id = %s", (vid,))


def test_a_budget_in_dollars_per_day_counts_token_costs(db: psycopg.Connection, app_name: str) -> None:
    vid, name = make_judge(db, app=app_name, budget={"usd_per_day": 0.001, "usd_per_1m_tokens_in": 5,
                                                     "usd_per_1m_tokens_out": 15})
    enqueue(db, vid, add_traces(db, app_name, [{"output": str(i)} for i in range(3)]))
    only_these_validators(db, [vid])
    complete(db, claim(db, n=1)[0])  # 100 tokens in, 20 out: $0.0005 + $0.0003
    cost = db.execute("SELECT cost_usd FROM flywheel.judge_calls WHERE validator_id = %s", (vid,)).fetchone()
    assert cost is not None and abs(cost[0] - 0.0008) < 1e-12
    complete(db, claim(db, n=1)[0])
    assert claim(db, n=10) == []
    reason = db.execute("SELECT waiting_reason FROM flywheel.queue_status WHERE validator = %s", (name,)).fetchone()
    assert reason is not None and reason[0].startswith("budget: $0.0016 of $0.001 per day spent")
    db.execute("DELETE FROM flywheel.judge_jobs WHERE validator_id = %s", (vid,))


def test_a_pairwise_job_compares_with_the_latest_earlier_trace_of_another_model(db: psycopg.Connection, app_name: str) -> None:
    vid, name = make_judge(db, "llm_pairwise", app=app_name)
    first, same_model, other_input, second = add_traces(db, app_name, [
        {"input": "Name a prime.", "output": "2", "model": "m1"},
        {"input": "Name a prime.", "output": "3", "model": "m1"},
        {"input": "Name an even number.", "output": "4", "model": "m2"},
        {"input": "Name a prime.", "output": "5", "model": "m2"},
    ])
    enqueue(db, vid, [first, second])
    only_these_validators(db, [vid])
    jobs = {j["trace_id"]: j for j in claim(db)}
    assert jobs[first]["pair_trace_id"] is None  # nothing earlier: judged when its pair arrives
    assert jobs[second]["pair_trace_id"] == same_model  # the latest earlier trace of another model
    assert jobs[second]["pair_output"] == "3" and jobs[second]["kind"] == "llm_pairwise"
    assert complete(db, jobs[second], status="pass", label="a")
    assert complete(db, jobs[first], status="skipped")
    prefs = db.execute("SELECT trace_a, trace_b, winner, judged_by, validator, validator_version FROM flywheel.preferences"
                       " WHERE validator = %s", (name,)).fetchall()
    assert prefs == [(second, same_model, "a", "llm", name, 1)]


def test_the_prompt_gets_k_labelled_examples_of_the_validator_never_the_trace_itself(db: psycopg.Connection, app_name: str) -> None:
    vid, name = make_judge(db, app=app_name, few_shot=2)
    old, mid, new, target = add_traces(db, app_name, [{"input": f"q{i}", "output": f"a{i}"} for i in range(4)])
    for trace, verdict in ((old, "pass"), (mid, "fail"), (new, "pass")):
        db.execute("INSERT INTO flywheel.labels (trace_id, validator, verdict, comment) VALUES (%s, %s, %s, 'why')",
                   (trace, name, verdict))
    db.execute("INSERT INTO flywheel.labels (trace_id, validator, verdict) VALUES (%s, %s, 'fail')", (target, name))
    enqueue(db, vid, [target])
    only_these_validators(db, [vid])
    examples = [j for j in claim(db) if j["trace_id"] == target][0]["examples"]
    labelled = {"q0": "pass", "q1": "fail", "q2": "pass"}  # which two: the semantic index decides (see below)
    assert len(examples) == 2 and all(labelled[e["input"]] == e["verdict"] and e["comment"] == "why" for e in examples)
    db.execute("DELETE FROM flywheel.judge_jobs WHERE validator_id = %s", (vid,))


def test_text_is_redacted_before_it_leaves_the_database(db: psycopg.Connection, app_name: str) -> None:
    if db.execute("SELECT to_regprocedure('flywheel.redact_pii(text)')").fetchone() == (None,):
        pytest.skip("flywheel.redact_pii() comes with the validators branch")
    vid, _ = make_judge(db, app=app_name, redact_pii=True)
    raw_vid, _ = make_judge(db, app=app_name, redact_pii=False)
    [trace] = add_traces(db, app_name, [{"input": "Mail me at jane.doe@example.com", "output": "Sure, jane.doe@example.com"}])
    enqueue(db, vid, [trace])
    enqueue(db, raw_vid, [trace])
    only_these_validators(db, [vid, raw_vid])
    jobs = {j["validator_id"]: j for j in claim(db)}
    assert "jane.doe@example.com" not in jobs[vid]["input"] + jobs[vid]["output"]
    assert "jane.doe@example.com" in jobs[raw_vid]["input"]
    db.execute("DELETE FROM flywheel.judge_jobs WHERE validator_id IN (%s, %s)", (vid, raw_vid))


# -- alignment --------------------------------------------------------------------------------

def kappa(pairs: list[tuple[str, str]]) -> float:
    n = len(pairs)
    p_o = sum(h == j for h, j in pairs) / n
    cats = {c for p in pairs for c in p}
    p_e = sum((sum(h == c for h, _ in pairs) / n) * (sum(j == c for _, j in pairs) / n) for c in cats)
    return (p_o - p_e) / (1 - p_e)


def test_alignment_of_a_pass_fail_judge_matches_a_computation_by_hand(db: psycopg.Connection, app_name: str) -> None:
    vid, name = make_judge(db, app=app_name)
    # (human, judge): 5 agree on pass, 2 agree on fail, 1 false failure, 2 missed failures.
    pairs = [("pass", "pass")] * 5 + [("fail", "fail")] * 2 + [("pass", "fail")] + [("fail", "pass")] * 2
    traces = add_traces(db, app_name, [{"output": str(i)} for i in range(len(pairs) + 1)])
    for trace, (human, judge_says) in zip(traces, pairs, strict=False):
        db.execute("INSERT INTO flywheel.validation_results (trace_id, validator_id, validator_version, status, judged_by)"
                   " VALUES (%s, %s, 1, %s, 'llm')", (trace, vid, judge_says))
        # an older, superseded label says the opposite: the latest label counts
        db.execute("INSERT INTO flywheel.labels (trace_id, validator, verdict, created_at) VALUES (%s, %s, %s, now() - interval '1 day')",
                   (trace, name, "fail" if human == "pass" else "pass"))
        db.execute("INSERT INTO flywheel.labels (trace_id, validator, verdict) VALUES (%s, %s, %s)", (trace, name, human))
    db.execute("INSERT INTO flywheel.validation_results (trace_id, validator_id, validator_version, status, judged_by)"
               " VALUES (%s, %s, 1, 'fail', 'llm')", (traces[-1], vid))  # judged, not labelled: not counted
    row = db.execute("SELECT validator_version, n, agreement, coverage, false_failure_rate, kappa"
                     " FROM flywheel.validator_alignment WHERE validator = %s", (name,)).fetchone()
    assert row is not None
    assert row[:2] == (1, 10)
    assert row[2] == pytest.approx(0.7) and row[3] == pytest.approx(2 / 4) and row[4] == pytest.approx(1 / 6)
    assert row[5] == pytest.approx(kappa(pairs))
    weekly = db.execute("SELECT sum(n) FROM flywheel.validator_alignment_weekly WHERE validator = %s", (name,)).fetchone()
    assert weekly == (10,)


def test_pairwise_alignment_uses_the_human_majority_and_ties_between_top_answers(db: psycopg.Connection, app_name: str) -> None:
    judge = f"pairjudge_{app_name[-10:]}"
    t = add_traces(db, app_name, [{"output": str(i), "model": f"m{i}"} for i in range(6)])
    votes = {  # pair -> human votes (winner seen from trace_a), the judge's verdict
        (t[0], t[1]): (["a", "a", "b"], "a"),       # majority a; judge agrees
        (t[2], t[3]): (["a", "b"], "tie"),          # a tie between the top answers: 'tie'; judge agrees
        (t[4], t[5]): (["b", "b", "tie"], "a"),     # majority b; judge disagrees
    }
    for (a, b), (humans, verdict) in votes.items():
        for i, w in enumerate(humans):
            db.execute("INSERT INTO flywheel.preferences (trace_a, trace_b, winner, annotator) VALUES (%s, %s, %s, %s)",
                       (a, b, w, f"p{i}"))
        # the judge saw the pair the other way round: its winner is flipped back
        flipped = {"a": "b", "b": "a", "tie": "tie"}[verdict]
        db.execute("INSERT INTO flywheel.preferences (trace_a, trace_b, winner, judged_by, validator) VALUES (%s, %s, %s, 'llm', %s)",
                   (b, a, flipped, judge))
    row = db.execute("SELECT n, agreement, coverage, kappa FROM flywheel.validator_alignment WHERE validator = %s",
                     (judge,)).fetchone()
    pairs = [("a", "a"), ("tie", "tie"), ("b", "a")]
    assert row is not None and row[0] == 3 and row[1] == pytest.approx(2 / 3) and row[2] is None
    assert row[3] == pytest.approx(kappa(pairs))


def test_an_alert_fires_once_when_agreement_falls_below_the_floor(db: psycopg.Connection, app_name: str) -> None:
    vid, name = make_judge(db, app=app_name, agreement_floor=0.8, agreement_min_n=4, agreement_window="1 day")
    traces = add_traces(db, app_name, [{"output": str(i)} for i in range(4)])
    for i, trace in enumerate(traces):  # agrees on 2 of 4
        db.execute("INSERT INTO flywheel.validation_results (trace_id, validator_id, validator_version, status, judged_by)"
                   " VALUES (%s, %s, 1, 'pass', 'llm')", (trace, vid))
        db.execute("INSERT INTO flywheel.labels (trace_id, validator, verdict) VALUES (%s, %s, %s)",
                   (trace, name, "pass" if i < 2 else "fail"))
    listener = psycopg.connect(db.info.dsn, autocommit=True)
    listener.execute("LISTEN flywheel_alerts")
    raised = db.execute("SELECT validator, n, agreement, agreement_floor FROM flywheel.check_judge_agreement()"
                        " WHERE validator = %s", (name,)).fetchall()
    assert raised == [(name, 4, 0.5, 0.8)]
    alert = db.execute("SELECT kind, message, details ->> 'n' FROM flywheel.alerts WHERE subject = %s", (name,)).fetchall()
    assert alert == [("judge_agreement", f"judge {name} agrees with people on 50.0% of 4 items over the last 1 day, "
                      "below its floor of 80.0%", "4")]
    # the notification names the alert by id only (any role may LISTEN); the admin reads the rest
    ids = [json.loads(n.payload)["id"] for n in listener.notifies(timeout=2, stop_after=5)]
    assert db.execute("SELECT count(*) FROM flywheel.alerts WHERE id = ANY (%s) AND subject = %s",
                      (ids, name)).fetchone() == (1,)
    listener.close()
    assert db.execute("SELECT count(*) FROM flywheel.check_judge_agreement() WHERE validator = %s", (name,)).fetchone() == (0,)
    db.execute("UPDATE flywheel.validators SET enabled = false WHERE id = %s", (vid,))


# -- privileges -------------------------------------------------------------------------------

def test_an_app_records_human_preferences_only_and_a_reader_sees_alignment(db: psycopg.Connection, dsn: str, app_name: str) -> None:
    from psycopg.conninfo import make_conninfo

    role = f"r_{app_name[-10:]}"
    db.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
    try:
        db.execute("SELECT flywheel.grant_app(%s, %s)", (role, app_name))
        a, b = add_traces(db, app_name, [{"model": "x"}, {"model": "y"}])
        with psycopg.connect(make_conninfo(dsn, user=role, password="pw"), autocommit=True) as app:
            app.execute("INSERT INTO flywheel.preferences (trace_a, trace_b, winner) VALUES (%s, %s, 'a')", (a, b))
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute("INSERT INTO flywheel.preferences (trace_a, trace_b, winner, judged_by, validator)"
                            " VALUES (%s, %s, 'a', 'llm', 'fake')", (a, b))
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute("SELECT flywheel.requeue_dead()")
        db.execute(f"GRANT flywheel_reader TO {role}")
        with psycopg.connect(make_conninfo(dsn, user=role, password="pw"), autocommit=True) as reader:
            reader.execute("SELECT * FROM flywheel.validator_alignment").fetchall()
            reader.execute("SELECT * FROM flywheel.queue_status").fetchall()
            assert reader.execute("SELECT count(*) > 0 FROM flywheel.pairwise_ranking WHERE app = %s",
                                  (app_name,)).fetchone() == (True,)
    finally:
        db.execute("DELETE FROM flywheel.app_roles WHERE role_name = %s", (role,))
        db.execute(f"DROP OWNED BY {role}")
        db.execute(f"DROP ROLE {role}")


def test_judge_examples_come_from_the_semantic_index_not_recency(db: psycopg.Connection, app_name: str) -> None:
    validator = f"judge_{uuid.uuid4().hex[:8]}"
    texts = ["How do I reset my password?", "My password reset link has expired", "What is the capital of France?"]
    ids = [db.execute("INSERT INTO flywheel.traces (app, input, output) VALUES (%s, %s, 'an answer') RETURNING id",
                      (app_name, text)).fetchone()[0] for text in texts]  # type: ignore[index]
    for trace_id, verdict in zip(ids, ["fail", "pass", "pass"], strict=True):  # France is labelled last
        db.execute("INSERT INTO flywheel.labels (trace_id, app, validator, verdict) VALUES (%s, '', %s, %s)",
                   (trace_id, validator, verdict))
    (new,) = db.execute("INSERT INTO flywheel.traces (app, input, output) VALUES (%s, 'I need to reset my password',"
                        " 'x') RETURNING id", (app_name,)).fetchone()  # type: ignore[misc]
    examples = db.execute("SELECT input, verdict FROM flywheel._judge_examples(%s, %s, 2)", (validator, new)).fetchall()
    assert {e[0] for e in examples} == set(texts[:2])  # the password ones, not the most recent label
    assert dict(examples)["How do I reset my password?"] == "fail"
