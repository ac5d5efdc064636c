"""`dbflywheel demo`: the whole flywheel on the shipped real data, checked end to end."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import psycopg
from rich.console import Console

from dbflywheel import demo


def failure_counts(conn: psycopg.Connection) -> Counter[str]:
    """sql-eval traces by variant and verdict of their sql_codegen validator."""
    rows = conn.execute(
        """SELECT t.metadata ->> 'variant', r.status, count(*)
           FROM flywheel.traces t JOIN flywheel.validation_results r ON r.trace_id = t.id
           JOIN flywheel.validators v ON v.id = r.validator_id AND v.kind = 'sql_codegen'
           WHERE t.app = %s GROUP BY 1, 2""",
        (demo.APP_SQL,),
    ).fetchall()
    return Counter({f"{variant}:{status}": n for variant, status, n in rows})


def test_the_demo_runs_the_flywheel_on_real_data_and_writes_a_report(dsn: str, tmp_path: Path) -> None:
    out = io.StringIO()
    summary = demo.run_demo(dsn, report_dir=tmp_path, console=Console(file=out, width=120))
    again = demo.run_demo(dsn, report_dir=tmp_path, console=Console(file=io.StringIO()))  # re-runnable

    for run in (summary, again):
        assert run.traces == 1133 + 2 * 190  # every llmfao answer; every gold query and one broken variant
        assert run.judged == 1133  # the worker drained one offline verdict per answer
        assert run.labels > 100 and run.feedback > 10000
    with psycopg.connect(dsn) as conn:
        # Every gold query passes sql_codegen, every broken one fails, and the demo's data is
        # there once: the second run forgot the first.
        counts = failure_counts(conn)
        assert counts["gold:pass"] == 190 and not any(k.startswith("gold:") and k != "gold:pass" for k in counts)
        broken = {k: n for k, n in counts.items() if not k.startswith("gold:")}
        assert sum(broken.values()) == 190 and all(k.endswith(":fail") for k in broken)
        assert conn.execute("SELECT count(*) FROM flywheel.traces WHERE user_id = %s", (demo.DEMO_USER,)).fetchone() == (
            summary.traces,)
        # GPT-4 against the crowd, as the llmfao test computes it independently.
        gpt4 = conn.execute("SELECT n, round(agreement::numeric, 3)::float8 FROM flywheel.validator_alignment"
                            " WHERE validator = 'demo_gpt4'").fetchone()
        assert gpt4 == (2139, 0.387)
    assert len(summary.few_shot) == 3
    assert "Judges against people" in out.getvalue()
    # The loop into the model: both training sets are built, each re-run a new version, and the leak
    # guard keeps the golden prompt's answers out of both.
    for run in (summary, again):
        (sft, kind_s, _, sft_rows, sft_held), (dpo, kind_p, _, dpo_rows, dpo_held) = run.training
        assert (sft, kind_s, dpo, kind_p) == ("demo-sft", "sft", "demo-dpo", "preference")
        assert sft_rows > 50 and dpo_rows > 500 and "golden" in dpo_held
    assert again.training[0][2] == summary.training[0][2] + 1
    with psycopg.connect(dsn) as conn:
        leaked = conn.execute(
            "SELECT count(*) FROM flywheel.training_set_rows(%s) r JOIN flywheel.traces t ON t.id IN (r.trace_id, r.trace_b)"
            " WHERE t.input IN (SELECT g.input FROM flywheel.golden_set_items i JOIN flywheel.traces g ON g.id = i.trace_id"
            " WHERE i.set_name = %s)", ("demo-dpo", demo.GOLDEN_SET)).fetchone()
        assert leaked == (0,)

    html = (tmp_path / "index.html").read_text()
    svgs = [ET.fromstring("<svg" + chunk.split("</svg>")[0] + "</svg>") for chunk in html.split("<svg")[1:] if chunk]
    assert len(svgs) == 4
    assert all("no data" not in ET.tostring(svg, encoding="unicode") for svg in svgs)
