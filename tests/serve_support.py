"""A real `dbflywheel serve` process on a free loopback port, against the tests' cluster."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import psycopg
from judges_support import DBFLYWHEEL


@dataclass
class Served:
    url: str
    process: subprocess.Popen[str]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(dsn: str, *, workers: int = 1, env: dict[str, str] | None = None) -> Iterator[Served]:
    import os

    port = free_port()
    proc = subprocess.Popen([DBFLYWHEEL, "serve", "--dsn", dsn, "--port", str(port), "--workers", str(workers),
                             "--log-level", "warning"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"serve did not start: {proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.1)
    try:
        yield Served(url, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def new_key(db: psycopg.Connection, app: str, **limits: float) -> tuple[str, str]:
    """(name, token) of a new key of `app`."""
    name = f"k-{uuid.uuid4().hex[:10]}"
    args = ", ".join(f"{k} => %s" for k in limits)
    row = db.execute(f"SELECT flywheel.create_api_key(%s, %s{', ' + args if args else ''})",
                     (app, name, *limits.values())).fetchone()
    assert row is not None
    return name, row[0]
