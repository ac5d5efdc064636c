"""python -m dbflywheel.bench [--quick] [name ...]: run benchmarks, rewrite BENCHMARKS.md."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import time

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from dbflywheel import bench
from dbflywheel.install import install


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_"))


def _fresh_database(dsn: str, name: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    fresh = make_conninfo(dsn, dbname=name)
    install(fresh)
    return fresh


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dbflywheel.bench")
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {available()})")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, numbers not written")
    args = parser.parse_args(argv)
    names = args.names or available()
    unknown = set(names) - set(available())
    if unknown:
        print(f"bench: unknown benchmark(s) {sorted(unknown)}; available: {available()}", file=sys.stderr)
        return 2
    cluster = None if os.environ.get("DBFLYWHEEL_BENCH_DSN") else bench.throwaway_cluster()
    dsn = os.environ.get("DBFLYWHEEL_BENCH_DSN") or cluster.dsn()  # type: ignore[union-attr]
    try:
        install(dsn)
        for name in names:
            module = importlib.import_module(f"dbflywheel.bench.{name}")
            print(f"bench: {name} ...", flush=True)
            # On the throw-away cluster each benchmark gets a fresh database: what one leaves
            # behind (millions of traces from the insert benchmark) must not load the next.
            ctx = bench.Context(dsn=dsn if cluster is None else _fresh_database(dsn, f"bench_{name}"),
                                cluster=cluster, quick=args.quick)
            started = time.monotonic()
            body = module.run(ctx)
            print(body)
            print(f"bench: {name} took {time.monotonic() - started:.0f} s", flush=True)
            if not args.quick:
                command = f"make bench BENCH={name}" if args.names else "make bench"
                bench.write_section(module.NAME, module.TITLE, body, command)
    finally:
        bench.cleanup(cluster)
    return 0


if __name__ == "__main__":
    sys.exit(main())
