"""Describes the Python that runs PL/Python functions, so a DBA can see what is missing."""

from __future__ import annotations

import json
import sys
from importlib import metadata
from typing import Any

# What the PL/Python functions import beyond the standard library (see plpython/requirements.txt).
REQUIRED = ("numpy", "scipy", "sqlglot", "jsonschema", "google-re2")


def describe(plpy: Any) -> str:
    packages: dict[str, str | None] = {}
    for name in REQUIRED:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    # The package folder fixed at install time (see _python_boot in src/dbflywheel/build.py).
    path = next((getattr(f, "python_path", None) for f in sys.meta_path if getattr(f, "dbflywheel", False)), None)
    return json.dumps(
        {
            "python": sys.version.split()[0],
            "executable": sys.executable,
            "python_path": path,
            "packages": packages,
            "missing": sorted(n for n, v in packages.items() if v is None),
        }
    )
