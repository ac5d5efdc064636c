"""`dbflywheel serve-demo` (make demo's last step): a background server, its address and a working key."""

from __future__ import annotations

import os
import re
import signal
import subprocess

import httpx
from judges_support import DBFLYWHEEL
from serve_support import free_port


def test_serve_demo_prints_an_address_and_a_key_that_work(dsn: str) -> None:
    done = subprocess.run([DBFLYWHEEL, "serve-demo", "--dsn", dsn, "--port", str(free_port())],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    url, pid = re.search(r"serve: (http://\S+) \(pid (\d+)", done.stdout).groups()  # type: ignore[union-attr]
    key = re.search(r"\(shown once\): (\S+)", done.stdout).group(1)  # type: ignore[union-attr]
    try:
        r = httpx.post(url + "/v1/feedback", json={"question": "2+2?", "response": "4", "rating": 5},
                       headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 201, r.text
    finally:
        os.killpg(int(pid), signal.SIGTERM)
