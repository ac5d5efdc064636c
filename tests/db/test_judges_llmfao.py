"""The real llmfao data: GPT-4's agreement with the crowd and both Bradley-Terry rankings, as
the views compute them, against a computation done here from the shipped files alone."""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict

import numpy as np
import psycopg
import pytest
from scipy.optimize import minimize

from dbflywheel.datasets.llmfao import DATA, load
from dbflywheel.errors import FlywheelError


def read(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(newline="") as f:
        return list(csv.DictReader(f))


def expected_alignment(judge_file: str) -> tuple[int, float, float]:
    """Crowd majority per pair (a tie between the top answers is 'tie') against the judge, both
    as the files give them: left is model_x, as the judge was shown it."""
    votes: dict[tuple[str, str, str], Counter[str]] = defaultdict(Counter)
    for row in read("crowd-comparisons.csv"):
        votes[(row["prompt"], row["model_x"], row["model_y"])][row["winner"]] += 1
    majority = {}
    for key, counter in votes.items():
        top = max(counter.values())
        winners = [w for w, c in counter.items() if c == top]
        majority[key] = winners[0] if len(winners) == 1 else "tie"
    judge = {(r["prompt"], r["model_x"], r["model_y"]): r["winner"] for r in read(judge_file)}
    items = [(majority[k], judge[k]) for k in majority if k in judge]
    n = len(items)
    p_o = sum(h == j for h, j in items) / n
    p_e = sum((sum(h == c for h, _ in items) / n) * (sum(j == c for _, j in items) / n)
              for c in ("left", "right", "tie"))
    return n, p_o, (p_o - p_e) / (1 - p_e)


def expected_bradley_terry(rows: list[dict[str, str]]) -> dict[str, float]:
    """Maximum likelihood by scipy (ties as half a win each), models named as in models.jsonl."""
    names = {str(m["id"]): m["name"] for m in map(json.loads, (DATA / "models.jsonl").read_text().splitlines())}
    models = sorted({r[c] for r in rows for c in ("model_x", "model_y")})
    index = {m: i for i, m in enumerate(models)}
    i = np.array([index[r["model_x"]] for r in rows])
    j = np.array([index[r["model_y"]] for r in rows])
    w = np.array([{"left": 1.0, "right": 0.0, "tie": 0.5}[r["winner"]] for r in rows])

    def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
        d = theta[i] - theta[j]
        value = float(np.sum(w * np.logaddexp(0, -d) + (1 - w) * np.logaddexp(0, d)))
        g = (1 / (1 + np.exp(-d))) - w  # d nll / d d
        grad = np.zeros_like(theta)
        np.add.at(grad, i, g)
        np.add.at(grad, j, -g)
        return value, grad

    theta = minimize(nll, np.zeros(len(models)), jac=True, method="L-BFGS-B",
                     options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 10000}).x
    p = np.exp(theta - theta.max())
    p /= p.sum()
    return {names[m]: float(p[index[m]]) for m in models}


@pytest.fixture(scope="module")
def llmfao(dsn: str) -> tuple[str, str]:
    app, prefix = "llmfao-test", "llmfaotest"
    with psycopg.connect(dsn) as conn:
        if conn.execute("SELECT 1 FROM flywheel.traces WHERE app = %s LIMIT 1", (app,)).fetchone() is None:
            result = load(conn, app=app, judge_prefix=prefix)
            assert (result.traces, result.human_votes) == (1133, 8931)
            assert result.judge_verdicts == {f"{prefix}_gpt4": 3236, f"{prefix}_gpt35": 2139}
    return app, prefix


def test_the_responses_are_traces_with_model_prompt_and_latency(db: psycopg.Connection, llmfao: tuple[str, str]) -> None:
    app, _ = llmfao
    row = db.execute("SELECT count(*), count(DISTINCT model), count(DISTINCT input), sum(latency_ms)"
                     " FROM flywheel.traces WHERE app = %s", (app,)).fetchone()
    results = [json.loads(line) for line in (DATA / "results.jsonl").read_text().splitlines()]
    assert row == (1133, 70, 19, pytest.approx(sum(r["duration"] for r in results)))
    with pytest.raises(FlywheelError, match="already has traces"):
        load(db, app=app)


def test_gpt4_agreement_and_kappa_with_the_crowd_match_an_independent_computation(db: psycopg.Connection, llmfao: tuple[str, str]) -> None:
    _, prefix = llmfao
    for judge, file in ((f"{prefix}_gpt4", "gpt4-comparisons.csv"), (f"{prefix}_gpt35", "gpt3-crowd-comparisons.csv")):
        n, agreement, kappa = expected_alignment(file)
        row = db.execute("SELECT n, agreement, kappa, coverage FROM flywheel.validator_alignment WHERE validator = %s",
                         (judge,)).fetchone()
        assert row is not None
        assert row[0] == n == 2139
        assert row[1] == pytest.approx(agreement, abs=1e-12) and row[2] == pytest.approx(kappa, abs=1e-12)
        assert row[3] is None


def test_both_bradley_terry_rankings_match_a_maximum_likelihood_fit(db: psycopg.Connection, llmfao: tuple[str, str]) -> None:
    app, prefix = llmfao
    rows = db.execute("SELECT name, human_score, judge_score, human_rank, judge_rank FROM flywheel.pairwise_ranking"
                      " WHERE app = %s AND dimension = 'model' AND judge = %s", (app, f"{prefix}_gpt4")).fetchall()
    human = expected_bradley_terry(read("crowd-comparisons.csv"))
    judge = expected_bradley_terry(read("gpt4-comparisons.csv"))
    assert len(rows) == len(judge) == 70 and len(human) == 59  # the crowd was not asked about code prompts
    for name, human_score, judge_score, _, _ in rows:
        assert human_score == (pytest.approx(human[name], abs=1e-6) if name in human else None)
        assert judge_score == pytest.approx(judge[name], abs=1e-6)
    by_human = [r[0] for r in sorted((r for r in rows if r[3] is not None), key=lambda r: r[3])]
    assert by_human[:5] == sorted(human, key=human.__getitem__, reverse=True)[:5]
