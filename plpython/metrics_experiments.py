"""flywheel.experiment_results(): each variant's metrics against the baseline variant, with a
confidence interval and a p-value (two-proportion z-test for rates, Welch's t-test for means)."""

from __future__ import annotations

from typing import Any

# Per variant: counts for the rates, n/mean/sample variance for the means.
_SUMMARY = """
WITH e AS (SELECT * FROM flywheel.experiments WHERE name = $1),
tr AS (
    SELECT t.id, t.variant, t.latency_ms, t.cost_usd
    FROM flywheel.traces t, e
    WHERE t.variant IN (SELECT jsonb_object_keys(e.variants)) AND NOT t.shadow
      AND (t.metadata->>'experiment' = e.name OR (t.metadata->>'experiment' IS NULL AND t.created_at >= e.started_at)))
SELECT tr.variant,
       count(*) AS traces,
       count(v.trace_id) FILTER (WHERE v.verdicts > 0) AS judged,
       count(v.trace_id) FILTER (WHERE v.verdicts > 0 AND NOT v.failed) AS passed,
       (SELECT count(*) FROM flywheel.feedback f JOIN tr x ON x.id = f.trace_id
        WHERE x.variant = tr.variant AND f.kind = 'thumbs') AS thumbs,
       (SELECT count(*) FROM flywheel.feedback f JOIN tr x ON x.id = f.trace_id
        WHERE x.variant = tr.variant AND f.kind = 'thumbs' AND f.value > 0) AS thumbs_up,
       (SELECT count(*) FROM flywheel.feedback f JOIN tr x ON x.id = f.trace_id
        WHERE x.variant = tr.variant AND f.kind = 'rating') AS ratings,
       (SELECT avg(f.value) FROM flywheel.feedback f JOIN tr x ON x.id = f.trace_id
        WHERE x.variant = tr.variant AND f.kind = 'rating') AS rating_mean,
       (SELECT var_samp(f.value) FROM flywheel.feedback f JOIN tr x ON x.id = f.trace_id
        WHERE x.variant = tr.variant AND f.kind = 'rating') AS rating_var,
       count(tr.latency_ms) AS latency_n, avg(tr.latency_ms) AS latency_mean, var_samp(tr.latency_ms) AS latency_var,
       count(tr.cost_usd) AS cost_n, avg(tr.cost_usd) AS cost_mean, var_samp(tr.cost_usd) AS cost_var
FROM tr LEFT JOIN flywheel._trace_verdicts v ON v.trace_id = tr.id
GROUP BY tr.variant
"""

_RATES = [("pass_rate", "passed", "judged"), ("positive_share", "thumbs_up", "thumbs")]
_MEANS = [("mean_rating", "ratings", "rating_mean", "rating_var"),
          ("latency_ms", "latency_n", "latency_mean", "latency_var"),
          ("cost_usd", "cost_n", "cost_mean", "cost_var")]


def results(plpy: Any, experiment: str, confidence: float = 0.95) -> list[dict[str, Any]]:
    import metrics_stats

    found = plpy.execute(plpy.prepare("SELECT variants, baseline FROM flywheel.experiments WHERE name = $1", ["text"]),
                         [experiment])
    if not found:
        plpy.error(f"experiment_results: no experiment named {experiment!r}")
    baseline = found[0]["baseline"]
    rows = {r["variant"]: r for r in plpy.execute(plpy.prepare(_SUMMARY, ["text"]), [experiment])}
    base = rows.get(baseline)
    out: list[dict[str, Any]] = []
    for variant in sorted(rows, key=lambda v: (v != baseline, v)):
        r = rows[variant]
        for metric, hits, total in _RATES:
            n = int(r[total] or 0)
            row = {"metric": metric, "variant": variant, "n": n, "value": (r[hits] / n) if n else None,
                   "baseline": baseline, "test": "two-proportion z-test"}
            if variant != baseline and base is not None:
                row.update(metrics_stats.two_proportion_test(int(base[hits] or 0), int(base[total] or 0),
                                                             int(r[hits] or 0), n, confidence))
            out.append(row)
        for metric, count, mean, var in _MEANS:
            n = int(r[count] or 0)
            row = {"metric": metric, "variant": variant, "n": n, "value": r[mean], "baseline": baseline,
                   "test": "Welch's t-test"}
            if variant != baseline and base is not None and r[mean] is not None and base[mean] is not None:
                row.update(metrics_stats.welch_test(int(base[count]), float(base[mean]), float(base[var] or 0),
                                                    n, float(r[mean]), float(r[var] or 0), confidence))
            out.append(row)
    for row in out:
        for key in ("difference", "ci_low", "ci_high", "p_value"):
            row[key] = None if row.get(key) is None else float(row[key])
    return out
