"""Renders what the reliability suite tried (tests/reliability_counts.json, written by
tests/e2e/test_reliability.py) into the "Reliability suite" section of BENCHMARKS.md.
`make soak` runs it after the long tests; after `make test` alone the fast counts are used."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dbflywheel.bench import write_section

COUNTS = Path(__file__).resolve().parents[1] / "tests" / "reliability_counts.json"
LOADS = ["load", "load with faults", "soak", "soak with faults"]
ROWS = [  # (key, what it counts)
    ("seconds", "seconds of load (writers, workers and refreshes at once)"),
    ("drain_seconds", "seconds to drain the judge queue afterwards"),
    ("writers", "writer threads (single-row and batch INSERTs, feedback)"),
    ("workers", "`dbflywheel worker` processes (replacements included)"),
    ("transactions", "committed write transactions"),
    ("traces", "traces committed (all found, none doubled)"),
    ("feedback", "feedback rows committed (all found, none doubled)"),
    ("sync_results", "sync validator results (exactly one per trace and validator)"),
    ("validator_errors", "results of the validator that raises or loops (error, insert kept)"),
    ("judge_jobs", "sampled judge jobs (sample rate 0.5)"),
    ("judge_verdicts", "judge verdicts (exactly one per job)"),
    ("dead_letters", "dead letters (only the jobs whose provider never recovers)"),
    ("provider_failures", "provider failures served (500, 429, hang, malformed, not a verdict)"),
    ("metric_refreshes", "metric refreshes (CALL flywheel.refresh) during the load"),
    ("worker_kills", "workers killed with -9 while holding jobs"),
    ("postgres_restarts", "PostgreSQL restarts during the load"),
    ("writer_reconnects", "writer reconnections"),
    ("in_doubt_commits", "transactions cut off at COMMIT and found committed"),
    ("retried_transactions", "transactions lost with the connection and retried"),
]


def render(data: dict[str, dict[str, float]]) -> str:
    loads = [name for name in LOADS if name in data]
    lines = ["| | " + " | ".join(loads) + " |", "|---|" + "---|" * len(loads)]
    for key, label in ROWS:
        if any(key in data[name] for name in loads):
            lines.append(f"| {label} | " + " | ".join(f"{data[name].get(key, '-'):,}" if isinstance(
                data[name].get(key), int | float) else "-" for name in loads) + " |")
    rate = {name: data[name]["traces"] / data[name]["seconds"] for name in loads if data[name].get("seconds")}
    base = {name: name.split(" with ")[0] for name in rate}  # faults against the fault-free load of its session
    if any(b in rate for b in base.values()):
        lines.append("| committed traces/s (ratio to the fault-free load of the same session) | "
                     + " | ".join(f"{rate[name]:,.0f} ({rate[name] / rate[base[name]]:.2f})"
                                  if name in rate and base[name] in rate else "-" for name in loads) + " |")
    generated = data.get("generated input", {})
    security = {k: v for name in ("security probes", "security plpython", "security definer")
                for k, v in data.get(name, {}).items()}
    sql_verdicts = ", ".join(f"{k[4:]} {v}" for k, v in sorted(generated.items()) if k.startswith("sql_"))
    lines += [
        "",
        "Generated input (hypothesis, one session): "
        f"{generated.get('validator_configs_created', 0) + generated.get('validator_configs_refused', 0)} validator"
        f" definitions ({generated.get('validator_configs_created', 0)} created whole,"
        f" {generated.get('validator_configs_refused', 0)} refused with a one-line error, none half-written);"
        f" {generated.get('generated_sql', 0)} generated SQL texts through sql_codegen"
        f" ({sql_verdicts or 'verdicts not counted'};"
        " the checked schema's tables unchanged each time).",
        "Security: "
        f"{security.get('cross_app_probes', 0)} cross-app probes of few_shot, cache_lookup, their internals,"
        " record_feedback and check_input, under the app login and every role it may SET ROLE to (none returned"
        f" or wrote another app's rows); {security.get('refused_statements', 0)} attempts to reach PL/Python or"
        f" change validators refused; {security.get('security_definer_functions', 0)} SECURITY DEFINER functions,"
        " each with a pinned search_path,"
        f" {security.get('definers_superuser_owned', 0)} of them owned by a superuser"
        " (the least-privilege attacks themselves: tests/db/test_attack_*.py, tests/e2e/test_worker_egress.py).",
        "",
        "Writers pace themselves (20 ms between transactions, an application's pace that the judges can follow), so"
        " traces/s measures what the faults cost, not peak ingest (see the INSERT benchmark for that)."
        " Faults are injected in turn every 7 s (fast) or 20 s (soak): kill -9 of a worker holding leased jobs"
        " (a new one starts), then a PostgreSQL restart (`pg_ctl restart -m fast`)."
        " Writers count what committed, not what they attempted:"
        " each trace carries a uid and each feedback row a token, so a transaction cut off at COMMIT is looked up after"
        " reconnecting and retried only if it is not there. The counts are checked against the database after the"
        " queue drains (tests/reliability_load.py, `check_load`).",
    ]
    return "\n".join(lines)


def main() -> int:
    if not COUNTS.exists():
        print(f"{COUNTS} is missing: run `make test` or `make soak` first", file=sys.stderr)
        return 1
    write_section("reliability", "Reliability suite: what it tried", render(json.loads(COUNTS.read_text())),
                  "make test (fast), make soak (long), then python scripts/reliability_report.py")
    print("BENCHMARKS.md: Reliability suite section rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
