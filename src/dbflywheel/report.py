"""An HTML report of the flywheel, read from its views: one self-contained file, SVG charts."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import psycopg

from dbflywheel import charts

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1360px; color: #111827; }
h1 { margin-bottom: .2rem; } .sub { color: #6b7280; margin-top: 0; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(650px, 1fr)); gap: 1.5rem; }
section { border: 1px solid #e5e7eb; border-radius: 8px; padding: 1rem; }
table { border-collapse: collapse; font-size: 13px; margin-top: .5rem; }
td, th { border-bottom: 1px solid #e5e7eb; padding: 3px 10px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.kpis { display: flex; gap: 2rem; margin: 1rem 0 1.5rem; }
.kpi b { display: block; font-size: 1.6rem; }
"""


def _table(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3f}"
        return escape("" if v is None else str(v))

    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def pass_rate_over_time(conn: psycopg.Connection, apps: tuple[str, ...]) -> str:
    rows = conn.execute(
        """SELECT to_char(date_trunc('week', day), 'MM-DD') AS week, prompt_version,
                  sum(passed)::float8 / nullif(sum(passed + failed), 0)
           FROM flywheel.metric_pass_rate WHERE app = ANY(%s)
           GROUP BY 1, 2 ORDER BY 1, 2""",
        (list(apps),),
    ).fetchall()
    weeks = sorted({r[0] for r in rows})
    series: dict[str, list[float | None]] = {}
    for week, version, rate in rows:
        series.setdefault(version or "none", [None] * len(weeks))[weeks.index(week)] = rate
    return charts.line_chart("Pass rate per week and prompt version (all validators)", weeks, series,
                             y_min=0.5, y_max=1.0)


def judge_agreement(conn: psycopg.Connection, judges: tuple[str, ...]) -> tuple[str, str]:
    rows = conn.execute(
        "SELECT validator, n, agreement, kappa, coverage, false_failure_rate FROM flywheel.validator_alignment"
        " WHERE validator = ANY(%s) ORDER BY validator",
        (list(judges),),
    ).fetchall()
    chart = charts.paired_bar_chart(
        "Judges against people: agreement and Cohen's kappa",
        [(r[0], r[2] or 0.0, max(r[3] or 0.0, 0.0)) for r in rows], ("agreement", "kappa"))
    table = _table(["judge", "n", "agreement", "kappa", "coverage", "false failure rate"], rows)
    return chart, table


def model_ranking(conn: psycopg.Connection, app: str, judge: str, top: int = 15) -> str:
    rows = conn.execute(
        """SELECT name, human_score, judge_score FROM flywheel.pairwise_ranking
           WHERE app = %s AND dimension = 'model' AND judge = %s AND human_rank IS NOT NULL
           ORDER BY human_rank LIMIT %s""",
        (app, judge, top),
    ).fetchall()
    return charts.paired_bar_chart(
        f"Model ranking (Bradley-Terry), top {top} by the crowd",
        [(r[0], r[1] or 0.0, r[2] or 0.0) for r in rows], ("crowd", judge), y_format="{:.3f}")


def drift(conn: psycopg.Connection) -> tuple[str, str]:
    span = conn.execute(
        "SELECT min(created_at), max(created_at) FROM flywheel.traces WHERE created_at < now()"
    ).fetchone()
    if not span or span[0] is None:
        return charts.bar_chart("Drift", []), ""
    start, end = span
    middle = start + (end - start) / 2
    rows = []
    for feature in ("latency", "output_length", "embedding"):
        rows += conn.execute(
            "SELECT feature, reference_n, current_n, ks_statistic, p_value, psi FROM flywheel.drift("
            "%s, tstzrange(%s, %s), tstzrange(%s, %s, '[]'))",
            (feature, start, middle, middle, end),
        ).fetchall()
    chart = charts.bar_chart("Drift, second half against first half: KS statistic",
                             [(f"{r[0]}", r[3] or 0.0) for r in rows], y_max=1.0, y_format="{:.3f}")
    table = _table(["feature", "reference n", "current n", "KS", "p-value", "PSI"], rows)
    return chart, table


def write_report(conn: psycopg.Connection, folder: Path, *, apps: tuple[str, ...], judges: tuple[str, ...]) -> Path:
    """Writes folder/index.html and returns its path."""
    kpis = conn.execute(
        """SELECT count(*), count(*) FILTER (WHERE EXISTS (SELECT 1 FROM flywheel.labels l WHERE l.trace_id = t.id)),
                  (SELECT count(*) FROM flywheel.feedback f WHERE f.app = ANY(%s))
           FROM flywheel.traces t WHERE t.app = ANY(%s)""",
        (list(apps), list(apps)),
    ).fetchone() or (0, 0, 0)
    agreement_chart, agreement_table = judge_agreement(conn, judges)
    drift_chart, drift_table = drift(conn)
    ranking_judge = next((j for j in judges if j.endswith("gpt4")), judges[-1])
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    html = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>dbflywheel report</title><style>{STYLE}</style></head><body>
<h1>dbflywheel report</h1>
<p class="sub">Generated {generated} from the flywheel's views. Apps: {escape(", ".join(apps))}.</p>
<div class="kpis"><div class="kpi"><b>{kpis[0]}</b>traces</div><div class="kpi"><b>{kpis[1]}</b>labelled</div>
<div class="kpi"><b>{kpis[2]}</b>feedback rows</div></div>
<div class="grid">
<section>{pass_rate_over_time(conn, apps)}</section>
<section>{agreement_chart}{agreement_table}</section>
<section>{model_ranking(conn, apps[0], ranking_judge)}</section>
<section>{drift_chart}{drift_table}</section>
</div></body></html>"""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "index.html"
    path.write_text(html)
    return path.resolve()
