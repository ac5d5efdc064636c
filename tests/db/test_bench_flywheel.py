"""The flywheel benchmark's curve on llmfao, as demo.py can call it."""

from __future__ import annotations

import psycopg

from dbflywheel.bench.flywheel import SIZES, demo_curve
from dbflywheel.datasets.llmfao import load


def test_demo_curve_has_the_raw_judge_and_every_size(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        if conn.execute("SELECT 1 FROM flywheel.traces WHERE app = 'llmfao-curve' LIMIT 1").fetchone() is None:
            load(conn, app="llmfao-curve", judge_prefix="llmfaocurve")
            conn.commit()
        rows = demo_curve(conn, "llmfaocurve_gpt4")
    assert [(s, n) for s, n, _ in rows] == [(s, n) for s in ("random", "unseen") for n in SIZES]
    raw = {s: k for s, n, k in rows if n == 0}
    # Raw GPT-4 against the crowd majority on llmfao is about 0.18 (README).
    assert all(k is not None and 0.1 < k < 0.3 for k in raw.values()), raw
    assert all(k is None or -1 <= k <= 1 for _, _, k in rows)
