"""plpython/environment.py under the stub plpy: the same module the database runs."""

from __future__ import annotations

import json

import environment
from plpy_stub import StubPlpy


def test_describe_reports_versions_and_the_path_setting() -> None:
    plpy = StubPlpy({"flywheel.python_path": [{"path": "/opt/x"}]})
    info = json.loads(environment.describe(plpy))
    assert info["python_path_setting"] == "/opt/x"
    assert set(info["packages"]) == set(environment.REQUIRED)
    assert info["missing"] == sorted(n for n, v in info["packages"].items() if v is None)
    assert len(plpy.queries) == 1
