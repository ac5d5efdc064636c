"""Counters of this process for GET /metrics (Prometheus text format); the queue depth is the database's."""

from __future__ import annotations

import threading
from collections import defaultdict


class Counter:
    def __init__(self, name: str, help_text: str, label: str) -> None:
        self.name, self.help, self.label = name, help_text, label
        self._values: defaultdict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    def inc(self, label_value: str, by: float = 1) -> None:
        with self._lock:
            self._values[label_value] += by

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            for value, n in sorted(self._values.items()):
                escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
                lines.append(f'{self.name}{{{self.label}="{escaped}"}} {n:g}')
        return lines


REQUESTS = Counter("dbflywheel_http_requests_total", "HTTP requests answered, by status code.", "status")
REJECTS = Counter("dbflywheel_http_rejects_total", "Requests refused (401, 413, 429, 400), by status code.", "status")
ROWS = Counter("dbflywheel_rows_ingested_total", "Rows written: traces from OTLP spans, feedback.", "table")


def render(queue_depth: int | None) -> str:
    lines = [*REQUESTS.render(), *REJECTS.render(), *ROWS.render()]
    if queue_depth is not None:
        lines += ["# HELP dbflywheel_judge_queue_depth Judge jobs waiting or leased.",
                  "# TYPE dbflywheel_judge_queue_depth gauge", f"dbflywheel_judge_queue_depth {queue_depth}"]
    return "\n".join(lines) + "\n"
