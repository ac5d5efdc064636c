"""`make bench`: every benchmark of the project in one run, written into BENCHMARKS.md.

A benchmark is a module here with `NAME`, `TITLE` and `run(ctx) -> str` (the Markdown body of
its section). Every number it reports is a ratio to a baseline measured in the same run,
because these machines are shared and noisy.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dbflywheel.build import REPO_ROOT
from dbflywheel.cluster import Cluster, find_bindir

BENCHMARKS_MD = REPO_ROOT / "BENCHMARKS.md"


@dataclass
class Context:
    dsn: str
    cluster: Cluster | None  # None when run on DBFLYWHEEL_BENCH_DSN
    quick: bool  # smaller sizes, for a smoke run

    def pgbench(self, script: str, *, clients: int, seconds: int, transactions_per_client: int | None = None) -> float:
        """Transactions per second of a custom pgbench script (no vacuum, no init)."""
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
            f.write(script)
        os.chmod(f.name, 0o644)
        try:
            limit = ["-t", str(transactions_per_client)] if transactions_per_client else ["-T", str(seconds)]
            out = subprocess.run(
                [str(find_bindir() / "pgbench"), "-n", "-f", f.name, "-c", str(clients), "-j", str(min(clients, 2)),
                 *limit, self.dsn],
                capture_output=True, text=True, check=True,
            ).stdout
        finally:
            os.unlink(f.name)
        match = re.search(r"tps = ([\d.]+)", out)
        if not match:
            raise RuntimeError(f"pgbench printed no tps: {out[-500:]}")
        return float(match.group(1))


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB"


def write_section(name: str, title: str, body: str, command: str) -> None:
    """Replace (or append) the section of one benchmark in BENCHMARKS.md."""
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    section = (
        f"<!-- bench:{name} -->\n## {title}\n\nReproduce: `{command}`  \nMachine: {machine()}\n\n"
        f"{body.strip()}\n<!-- /bench:{name} -->"
    )
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    BENCHMARKS_MD.write_text(text)


def throwaway_cluster() -> Cluster:
    home = Path(tempfile.mkdtemp(prefix="dbflywheel-bench-"))
    cluster = Cluster(home, fast=True)
    cluster.up()
    return cluster


def cleanup(cluster: Cluster | None) -> None:
    if cluster is not None:
        home = cluster.home
        cluster.destroy()
        shutil.rmtree(home, ignore_errors=True)
