"""`make demo`: insert a few traces into the flywheel and show what the database made of them."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from dbflywheel.install import connect

SAMPLE_TRACES = [
    ("What is the capital of France?", "The capital of France is Paris.", "gpt-4o-mini", "v1.0"),
    ("Summarise our refund policy.", "As an AI language model, I cannot access your policy.", "gpt-4o-mini", "v1.0"),
    ("List three prime numbers.", "2, 3 and 5.", "llama-3-8b", "v1.1"),
]


def run_demo(dsn: str) -> None:
    console = Console()
    with connect(dsn) as conn:
        version = conn.execute("SELECT flywheel.version()").fetchone()[0]  # type: ignore[index]
        console.print(f"[bold]dbflywheel {version}[/bold]: inserting {len(SAMPLE_TRACES)} traces")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO flywheel.traces (app, input, output, model, prompt_version)"
                " VALUES ('demo', %s, %s, %s, %s)",
                SAMPLE_TRACES,
            )
        rows = conn.execute(
            "SELECT id, model, prompt_version, left(input, 40), left(output, 50)"
            " FROM flywheel.traces WHERE app = 'demo' ORDER BY id DESC LIMIT 10"
        ).fetchall()
    table = Table(title="latest demo traces")
    for column in ("id", "model", "prompt", "input", "output"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(v) for v in row))
    console.print(table)
