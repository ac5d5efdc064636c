"""`dbflywheel eval`: run the validators over a golden set and gate a release on the pass rate."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from dbflywheel.errors import FlywheelError
from dbflywheel.install import connect


@dataclass
class ValidatorScore:
    validator: str
    cases: int = 0
    passed: int = 0
    errors: int = 0
    missing: int = 0
    failures: list[int] = field(default_factory=list)  # trace ids that did not meet the expectation

    @property
    def pass_rate(self) -> float:
        return self.passed / self.cases if self.cases else 1.0


@dataclass
class EvalReport:
    set_name: str
    version: int
    traces: int
    min_pass_rate: float
    scores: list[ValidatorScore]

    @property
    def cases(self) -> int:
        return sum(s.cases for s in self.scores)

    @property
    def pass_rate(self) -> float:
        return sum(s.passed for s in self.scores) / self.cases if self.cases else 1.0

    @property
    def passed(self) -> bool:
        """The gate: every validator, and the whole set, at or above the threshold."""
        return self.cases > 0 and all(s.pass_rate >= self.min_pass_rate for s in self.scores) \
            and self.pass_rate >= self.min_pass_rate

    def table(self) -> str:
        header = f"{'validator':<28} {'cases':>6} {'passed':>7} {'errors':>7} {'missing':>8} {'pass rate':>10}  gate"
        lines = [f"golden set {self.set_name} v{self.version}: {self.traces} trace(s), "
                 f"min pass rate {self.min_pass_rate:.2f}", header, "-" * len(header)]
        for s in self.scores:
            gate = "ok" if s.pass_rate >= self.min_pass_rate else "FAIL"
            lines.append(f"{s.validator:<28} {s.cases:>6} {s.passed:>7} {s.errors:>7} {s.missing:>8}"
                         f" {s.pass_rate:>10.3f}  {gate}")
            if gate == "FAIL":
                shown = ", ".join(map(str, s.failures[:10])) + (" ..." if len(s.failures) > 10 else "")
                lines.append(f"{'':<28} failing traces: {shown}")
        lines.append("-" * len(header))
        verdict = "PASS" if self.passed else "FAIL"
        lines.append(f"{'all':<28} {self.cases:>6} {sum(s.passed for s in self.scores):>7}"
                     f" {sum(s.errors for s in self.scores):>7} {sum(s.missing for s in self.scores):>8}"
                     f" {self.pass_rate:>10.3f}  {verdict}")
        return "\n".join(lines)


def run_eval(dsn: str, set_name: str, min_pass_rate: float, version: int | None = None) -> EvalReport:
    """Runs flywheel.validate_traces over the set's traces now and compares each result with the
    expected verdict: a trace's expected verdict per validator, else 'pass' for every validator
    that applies to it. An error, or no result for an expected validator, counts as a miss."""
    if not 0 <= min_pass_rate <= 1:
        raise FlywheelError(f"--min-pass-rate is a fraction between 0 and 1, not {min_pass_rate}")
    with connect(dsn, autocommit=True) as conn:
        has = conn.execute(
            "SELECT to_regprocedure('flywheel.validate_traces(bigint[], text[])') IS NOT NULL"
        ).fetchone()
        if not has or not has[0]:
            raise FlywheelError("this database has no flywheel.validate_traces(): install a dbflywheel with validators")
        items = conn.execute(
            "SELECT trace_id, expected_verdicts, set_version FROM flywheel.golden_set_traces(%s, %s)",
            (set_name, version),
        ).fetchall()
        if not items:
            raise FlywheelError(f"golden set {set_name} is empty: add traces with flywheel.promote_to_golden()")
        results: dict[int, dict[str, str]] = defaultdict(dict)
        for trace_id, validator, status in conn.execute(
            "SELECT trace_id, validator, status FROM flywheel.validate_traces(%s, NULL)", ([i[0] for i in items],)
        ):
            results[trace_id][validator] = status
    scores: dict[str, ValidatorScore] = {}
    for trace_id, expected, _ in items:
        expectations = dict(expected) or {v: "pass" for v, s in results[trace_id].items() if s != "skipped"}
        for validator, want in expectations.items():
            score = scores.setdefault(validator, ValidatorScore(validator))
            got = results[trace_id].get(validator)
            if got == "skipped":  # the validator does not apply to this trace
                continue
            score.cases += 1
            if got == want:
                score.passed += 1
                continue
            score.failures.append(trace_id)
            if got is None:
                score.missing += 1
            elif got == "error":
                score.errors += 1
    ordered = sorted(scores.values(), key=lambda s: s.validator)
    return EvalReport(set_name, items[0][2], len(items), min_pass_rate, ordered)
