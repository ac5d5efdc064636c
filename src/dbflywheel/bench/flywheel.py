"""The flywheel effect on llmfao: held-out kappa of GPT-4's calibrated verdicts with the crowd
majority after 0 to 1,000 labelled pairs (labels arriving in time order), on two splits."""

from __future__ import annotations

import random
import sys
from statistics import mean
from typing import Any

import psycopg
from psycopg.rows import dict_row

from dbflywheel.bench import Context
from dbflywheel.build import REPO_ROOT
from dbflywheel.datasets.llmfao import load

NAME = "flywheel"
TITLE = "The flywheel effect: GPT-4 calibrated on llmfao's crowd votes"
SIZES = (0, 50, 100, 200, 500, 1000)
SEEDS = 4


def _module() -> Any:
    # The calibration's own code (what flywheel.calibrate runs in PL/Python), imported from the tree.
    sys.path.insert(0, str(REPO_ROOT / "plpython"))
    import judges_calibration

    return judges_calibration


def items(dsn: str) -> list[dict[str, Any]]:
    """Loads llmfao, then GPT-4's verdicts with the crowd majority (see judged_pairs)."""
    with psycopg.connect(dsn) as conn:
        load(conn, app="llmfao", judge_prefix="llmfao")
        conn.commit()
        return judged_pairs(conn, "llmfao_gpt4")


def judged_pairs(conn: psycopg.Connection, judge: str) -> list[dict[str, Any]]:
    """A pairwise judge's verdicts with the people's majority and the two answers' models, in
    time order, as flywheel.calibrate reads them."""
    jc = _module()
    with conn.cursor(row_factory=dict_row) as cur:
        # The module's constant query text, the judge's name a bound parameter.
        query = ("SELECT i.*, ta.model AS model_a, tb.model AS model_b FROM ("  # noqa: S608
                 + jc.ITEMS.replace("$1", "%(judge)s") + ") i JOIN flywheel.traces ta ON ta.id = i.trace_a"
                 " JOIN flywheel.traces tb ON tb.id = i.trace_b WHERE i.human IS NOT NULL"
                 " ORDER BY least(i.trace_a, i.trace_b), greatest(i.trace_a, i.trace_b)")
        return cur.execute(query, {"judge": judge}).fetchall()


def demo_curve(conn: psycopg.Connection, judge: str = "llmfao_gpt4") -> list[tuple[str, int, float | None]]:
    """For demo.py and its report ("the judge before and after people taught it"): (split,
    labels, held-out kappa) rows, labels 0 being the raw judge, seed 0."""
    rows = judged_pairs(conn, judge)
    return [(split, n, curve(rows, split, 0)[n]) for split in ("random", "unseen") for n in SIZES]


def curve(rows: list[dict[str, Any]], split: str, seed: int) -> dict[Any, float | None]:
    """Kappa on the test pairs of one split: raw GPT-4, then calibrated after n training labels."""
    import numpy as np

    jc = _module()
    rng = random.Random(seed)
    if split == "random":
        order = list(range(len(rows)))
        rng.shuffle(order)
        test_ids = set(order[: len(rows) // 3])
        train = [r for i, r in enumerate(rows) if i not in test_ids]
        test = [r for i, r in enumerate(rows) if i in test_ids]
    else:  # the honest one: a third of the models never seen, no response shared with training pairs
        models = sorted({r["model_a"] for r in rows} | {r["model_b"] for r in rows})
        held = set(rng.sample(models, len(models) // 3))
        train = [r for r in rows if r["model_a"] not in held and r["model_b"] not in held]
        test = [r for r in rows if r["model_a"] in held and r["model_b"] in held]
    truth = [jc.CLASSES.index(r["human"]) for r in test]
    out: dict[Any, float | None] = {"n_test": len(test), "n_train": len(train),
                                    0: jc.kappa(truth, [jc.CLASSES.index(r["raw"]) for r in test])}
    for n in SIZES[1:]:
        if n > len(train):
            out[n] = None
            continue
        labelled = train[:n]
        model = jc.fit_tuned(np.array([jc.features(r) for r in labelled]),
                             np.array([jc.CLASSES.index(r["human"]) for r in labelled]))
        predicted, _ = jc.predict(model, test)
        out[n] = jc.kappa(truth, [jc.CLASSES.index(c) for c in predicted])
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| split | test pairs (mean) | " + " | ".join(f"{n} labels" for n in SIZES) + " |",
             "|---|---|" + "---|" * len(SIZES)]
    for split in ("random", "unseen models"):
        curves = [curve(rows, "random" if split == "random" else "unseen", seed) for seed in range(SEEDS)]
        cells = []
        for n in SIZES:
            values = [float(v) for c in curves if (v := c[n]) is not None]
            cells.append(f"{mean(values):.3f}" if len(values) == len(curves) else "n/a")
        lines.append(f"| {split} | {mean(float(c['n_test'] or 0) for c in curves):.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(ctx: Context) -> str:
    rows = items(ctx.dsn)
    return (
        f"Cohen's kappa of GPT-4's verdicts with the crowd majority on {len(rows)} llmfao pairs, on test pairs "
        f"whose labels the calibration never saw (mean of {SEEDS} seeds); '0 labels' is the raw judge. "
        "Training labels arrive in time order (pair order). Split 'unseen models': a third of the models held out, "
        "test pairs compare two held-out models, training pairs none (so no response is shared). "
        "'n/a': fewer training pairs than that. Target of issue 16: 0.30 on unseen-model pairs from at most "
        "500 labels (one crowd worker against the others); not reached by this calibration (see "
        "ARCHITECTURE.md, 'Calibrated judges'). The machine was shared with other engineers' test runs "
        "(kappa does not depend on load).\n\n" + table(rows)
    )
