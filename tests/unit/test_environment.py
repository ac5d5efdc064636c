"""plpython/environment.py under the stub plpy: the same module the database runs."""

from __future__ import annotations

import json
import sys

import environment
from plpy_stub import StubPlpy


class _Finder:
    dbflywheel = True
    python_path = "/opt/x"


def test_describe_reports_versions_and_the_install_time_path() -> None:
    plpy = StubPlpy({})
    sys.meta_path.append(_Finder())  # type: ignore[arg-type]
    try:
        info = json.loads(environment.describe(plpy))
    finally:
        sys.meta_path.pop()
    assert info["python_path"] == "/opt/x"
    assert set(info["packages"]) == set(environment.REQUIRED)
    assert info["missing"] == sorted(n for n, v in info["packages"].items() if v is None)
    assert plpy.queries == []  # nothing a session can set is read
