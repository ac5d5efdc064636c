"""A stand-in for PL/Python's `plpy`, so plpython/*.py run and are tested outside the database.

It records every query and notice; `results` maps a query substring to the rows to return.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


class SPIError(Exception):
    pass


class StubPlpy:
    SPIError = SPIError

    def __init__(self, results: dict[str, list[dict[str, Any]]] | None = None) -> None:
        self.results = results or {}
        self.queries: list[tuple[str, list[Any] | None]] = []
        self.notices: list[tuple[str, str]] = []

    def execute(self, query: Any, args: list[Any] | None = None, limit: int = 0) -> list[dict[str, Any]]:
        text = query if isinstance(query, str) else query.query
        self.queries.append((text, args))
        for fragment, rows in self.results.items():
            if fragment in text:
                return rows
        return []

    def prepare(self, query: str, argtypes: list[str] | None = None) -> Any:
        plan = type("Plan", (), {})()
        plan.query = query  # type: ignore[attr-defined]
        plan.argtypes = argtypes or []  # type: ignore[attr-defined]
        return plan

    @contextlib.contextmanager
    def subtransaction(self) -> Iterator[None]:
        yield

    def _log(self, level: str, msg: str) -> None:
        self.notices.append((level, msg))

    def debug(self, msg: str) -> None:
        self._log("debug", msg)

    def info(self, msg: str) -> None:
        self._log("info", msg)

    def notice(self, msg: str) -> None:
        self._log("notice", msg)

    def warning(self, msg: str) -> None:
        self._log("warning", msg)

    def error(self, msg: str) -> None:
        raise SPIError(msg)

    @staticmethod
    def quote_ident(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    @staticmethod
    def quote_literal(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"


def signed(config: dict[str, Any]) -> dict[str, Any]:
    """A python validator's config as create_validator stores it: with its body's signature (unit
    tests sign in-process, under a key of their own, never with the server's key file)."""
    import os

    import python_bodies

    if python_bodies._key is None:
        python_bodies._key = os.urandom(32)
    return {**config, "signature": python_bodies.signature(config["body"])}
