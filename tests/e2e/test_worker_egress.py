"""A real `dbflywheel worker` against judge configs an admin controls and provider answers a
server controls: the key goes only where the worker's operator allows, and every job ends as
a verdict, a retry or a dead letter, never as a lease held forever."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess

import psycopg
from fake_openai import FakeOpenAI, Reply
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from judges_support import DBFLYWHEEL, add_traces, enqueue, make_judge, only_these_validators, results

from dbflywheel.providers import Allowlist
from dbflywheel.worker import Worker

FAST = ["--poll-seconds", "0.1"]
# Only these variables reach the worker (so that it has no others to leak), and the package's path.
_PYTHONPATH = {k: v for k, v in os.environ.items() if k == "PYTHONPATH"}


def run_once(dsn: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DBFLYWHEEL, "worker", "--dsn", dsn, "--once", "--concurrency", "4", *FAST, *args],
                          capture_output=True, text=True, timeout=90, env={**_PYTHONPATH, "PATH": "", **(env or {})})


def ended(db: psycopg.Connection, vid: int, traces: list[int]) -> dict[int, str]:
    """How each trace's job ended: 'pass'/'fail'/'skipped' (a verdict) or 'dead'; asserts that no
    job is left in the queue (pending or leased)."""
    left = db.execute("SELECT trace_id, status, leased_by FROM flywheel.judge_jobs WHERE validator_id = %s",
                      (vid,)).fetchall()
    assert left == [], f"jobs left in the queue: {left}"
    out = {t: s[0] for t, s in results(db, vid).items() if len(s) == 1}
    for (t,) in db.execute("SELECT trace_id FROM flywheel.judge_dead_letters WHERE validator_id = %s", (vid,)):
        assert t not in out, f"trace {t}: a verdict and a dead letter"
        out[t] = "dead"
    assert sorted(out) == sorted(traces)
    return out


def test_a_judge_pointed_at_an_unallowed_server_sends_it_nothing(db: psycopg.Connection, dsn: str, app_name: str) -> None:
    env = {"FAKE_JUDGE_KEY": "sk-secret", "PGPASSWORD": "db-secret", "HOME": "/home/secret"}
    with FakeOpenAI() as allowed, FakeOpenAI() as attacker:
        stolen, _ = make_judge(db, app=app_name, provider="openai", model="m", base_url=attacker.url,
                               api_key_env="FAKE_JUDGE_KEY")
        home, _ = make_judge(db, app=app_name, provider="openai", model="m", base_url=allowed.url, api_key_env="HOME")
        pgpass, _ = make_judge(db, app=app_name, provider="openai", model="m", base_url=allowed.url,
                               api_key_env="PGPASSWORD")
        fine, _ = make_judge(db, app=app_name, provider="openai", model="m", base_url=allowed.url,
                             api_key_env="FAKE_JUDGE_KEY")
        traces = add_traces(db, app_name, [{"input": "q", "output": "a"}])
        for vid in (stolen, home, pgpass, fine):
            enqueue(db, vid, traces)
        only_these_validators(db, [stolen, home, pgpass, fine])
        done = run_once(dsn, "--allow-base-url", allowed.url, "--allow-key-env", "FAKE_JUDGE_KEY", env=env)
        assert done.returncode == 0, done.stderr
        assert attacker.hits == []  # no request at all, so no Authorization header either
        assert allowed.hits == [("POST", "/v1/chat/completions", "Bearer sk-secret")]  # the allowed judge's only
    assert ended(db, fine, traces) == {traces[0]: "pass"}
    for vid, why in ((stolen, "base_url"), (home, "api_key_env 'HOME'"), (pgpass, "api_key_env 'PGPASSWORD'")):
        assert ended(db, vid, traces) == {traces[0]: "dead"}
        attempts, error = db.execute("SELECT attempts, error FROM flywheel.judge_dead_letters WHERE validator_id = %s",
                                     (vid,)).fetchone() or (None, "")
        assert attempts == 1  # refused at once: retrying cannot help
        assert why in error and "not allowed by this worker" in error and "\n" not in error, error
        assert "sk-secret" not in error and "db-secret" not in error


def test_a_redirect_to_another_server_carries_no_key(db: psycopg.Connection, dsn: str, app_name: str) -> None:
    with FakeOpenAI() as attacker:
        target = attacker.url + "/chat/completions"
        with FakeOpenAI(reply=lambda body: Reply(307, b"", {"Location": target})) as server:
            vid, _ = make_judge(db, app=app_name, provider="openai", model="m", base_url=server.url,
                                api_key_env="FAKE_JUDGE_KEY", max_attempts=1)
            traces = add_traces(db, app_name, [{"input": "q", "output": "a"}])
            enqueue(db, vid, traces)
            only_these_validators(db, [vid])
            done = run_once(dsn, "--allow-base-url", server.url, "--allow-key-env", "FAKE_JUDGE_KEY",
                            env={"FAKE_JUDGE_KEY": "sk-secret"})
            assert done.returncode == 0, done.stderr
        assert attacker.hits == []
    assert ended(db, vid, traces) == {traces[0]: "dead"}


def test_a_bad_allowlist_rule_stops_the_worker_in_one_line() -> None:
    for args in (["--allow-base-url", "http://user:pw@host/v1"], ["--allow-key-env", "HOME;rm"]):
        done = run_once("postgresql://nobody@127.0.0.1:1/none", *args)
        assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert done.stderr.startswith(f"dbflywheel: {args[0]} "), done.stderr


def _answer(content: object, usage: object) -> bytes:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}], "usage": usage}).encode()


VERDICT = json.dumps({"verdict": "pass", "reason": "ok"})
# What a hostile or broken provider answers, chosen per trace by the marker in its output.
HOSTILE = {
    "tokens-string": Reply(200, _answer(VERDICT, {"prompt_tokens": "many", "completion_tokens": "few"})),
    "tokens-negative": Reply(200, _answer(VERDICT, {"prompt_tokens": -5, "completion_tokens": -1})),
    "tokens-huge": Reply(200, _answer(VERDICT, {"prompt_tokens": 2**63, "completion_tokens": 10**40})),
    "tokens-nested": Reply(200, _answer(VERDICT, {"prompt_tokens": {"n": 1}, "completion_tokens": [1, 2]})),
    "tokens-float": Reply(200, _answer(VERDICT, {"prompt_tokens": 1.5, "completion_tokens": float("nan")})),
    "usage-list": Reply(200, _answer(VERDICT, [1, 2, 3])),
    "nul-reason": Reply(200, _answer(json.dumps({"verdict": "fail", "reason": "bad\u0000\u0000 answer"}), {})),
    "surrogate-reason": Reply(200, _answer(json.dumps({"verdict": "fail", "reason": "bad \ud800 answer"}), {})),
    "nested-reason": Reply(200, _answer(json.dumps({"verdict": "pass", "reason": {"a": ["\u0000"]}}), {})),
    "huge-reason": Reply(200, _answer(json.dumps({"verdict": "pass", "reason": "x" * 200_000}), {})),
    "nul-content": Reply(200, _answer("\u0000" * 10, {})),
    "content-object": Reply(200, _answer({"verdict": "pass"}, {})),
    "missing-choices": Reply(200, b'{"usage": {"prompt_tokens": 1}}'),
    "empty-choices": Reply(200, b'{"choices": []}'),
    "not-json": Reply(200, b"<html>\x00 oops</html>"),
    "nul-in-error": Reply(500, b"server \x00 exploded \xff\xfe"),
    "error-object": Reply(200, b'{"error": {"message": "quota exceeded \\u0000", "type": "insufficient_quota"}}'),
    "huge-body": Reply(200, _answer(json.dumps({"verdict": "pass", "reason": "y" * 3_000_000}), {})),
    "deep-json": Reply(200, b"[" * 100_000 + b"]" * 100_000),
    "slow": Reply(200, _answer(VERDICT, {}), drip_seconds=0.2),
    "retry-after-nonsense": Reply(429, b"{}", {"Retry-After": "1e400"}),
}


def _pick(body: dict[str, object]) -> Reply | None:
    item = str(body["messages"][-1]["content"])  # type: ignore[index]
    for marker, reply in HOSTILE.items():
        if f"<output>\n{marker}\n" in item:
            return reply
    return None


def test_every_hostile_answer_ends_as_a_verdict_or_a_dead_letter(db: psycopg.Connection, dsn: str, app_name: str) -> None:
    with FakeOpenAI(reply=_pick) as server:
        vid, _ = make_judge(db, app=app_name, provider="openai", model="m", base_url=server.url, max_attempts=2,
                            retry_base_seconds=0.05, timeout_seconds=1)
        traces = add_traces(db, app_name, [{"input": f"q{i}", "output": m} for i, m in enumerate(HOSTILE)])
        enqueue(db, vid, traces)
        only_these_validators(db, [vid])
        done = run_once(dsn, "--allow-base-url", server.url)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr and "crashed" not in done.stderr, done.stderr
    how = dict(zip(HOSTILE, (ended(db, vid, traces)[t] for t in traces), strict=True))
    assert {k for k, v in how.items() if v != "dead"} == {
        "tokens-string", "tokens-negative", "tokens-huge", "tokens-nested", "tokens-float", "usage-list",
        "nul-reason", "surrogate-reason", "nested-reason", "huge-reason"}, how
    calls = db.execute("SELECT tokens_in, tokens_out FROM flywheel.judge_calls WHERE validator_id = %s AND ok",
                       (vid,)).fetchall()
    assert all(t is None for row in calls for t in row)  # none of those counts was a usable number
    reasons = [r for (r,) in db.execute("SELECT details ->> 'reason' FROM flywheel.validation_results"
                                        " WHERE validator_id = %s", (vid,))]
    assert "bad answer" in reasons and "bad ? answer" in reasons and max(map(len, reasons)) <= 2000
    errors = [e for (e,) in db.execute("SELECT error FROM flywheel.judge_dead_letters WHERE validator_id = %s", (vid,))]
    assert all("\n" not in e and len(e) <= 1100 for e in errors), errors
    assert any("quota exceeded" in e for e in errors) and any("too large" in e for e in errors)
    assert any("timeout after 1" in e for e in errors)


_any_reply = st.builds(
    Reply,
    st.sampled_from([200, 200, 200, 500, 429, 302]),
    st.one_of(
        st.builds(_answer,
                  st.one_of(st.sampled_from([VERDICT, '{"verdict": "fail", "reason": "\\u0000"}', "\x00", "{"]),
                            st.text(max_size=20), st.none(), st.integers()),
                  st.one_of(st.fixed_dictionaries({"prompt_tokens": st.one_of(st.integers(-(2**65), 2**65), st.text(max_size=5),
                                                                              st.floats(), st.none(), st.booleans()),
                                                   "completion_tokens": st.one_of(st.integers(-(2**65), 2**65), st.text(max_size=5))}),
                            st.none(), st.text(max_size=5), st.lists(st.integers(), max_size=2))),
        st.binary(max_size=40)),
    st.sampled_from([{}, {"Retry-After": "0"}, {"Retry-After": "nan"}, {"Retry-After": "-1"}]),
)


def test_a_worker_never_leaves_a_job_leased_whatever_the_answer(db: psycopg.Connection, dsn: str, app_name: str) -> None:
    current: list[Reply] = []
    with FakeOpenAI(reply=lambda body: current[-1]) as server:
        vid, _ = make_judge(db, app=app_name, provider="openai", model="m", base_url=server.url, max_attempts=1,
                            timeout_seconds=2)
        only_these_validators(db, [vid])
        allowlist = Allowlist.from_options([server.url], [], environ={})

        @settings(derandomize=True, max_examples=25, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
        @given(reply=_any_reply)
        def one_job(reply: Reply) -> None:
            current.append(reply)
            traces = add_traces(db, app_name, [{"input": "q", "output": "a"}])
            enqueue(db, vid, traces)
            stats = asyncio.run(Worker(dsn, once=True, concurrency=1, poll_seconds=0.1, allowlist=allowlist).run())
            assert stats.done + stats.dead == 1, stats
            ended_as = db.execute(
                "SELECT (SELECT count(*) FROM flywheel.judge_jobs j WHERE j.trace_id = %(t)s AND j.validator_id = %(v)s),"
                " (SELECT count(*) FROM flywheel.validation_results r WHERE r.trace_id = %(t)s AND r.validator_id = %(v)s),"
                " (SELECT count(*) FROM flywheel.judge_dead_letters d WHERE d.trace_id = %(t)s AND d.validator_id = %(v)s)",
                {"t": traces[0], "v": vid}).fetchone()
            assert ended_as in ((0, 1, 0), (0, 0, 1)), (reply, ended_as)

        one_job()
