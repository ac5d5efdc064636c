"""Fixtures for the database tests."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest


@pytest.fixture
def only_the_test_validators(db: psycopg.Connection) -> Iterator[None]:
    """These tests count results they insert themselves: the default validators, which run on
    every insert, are paused during each test and enabled again afterwards."""
    paused = [r[0] for r in db.execute("SELECT name FROM flywheel.validators WHERE enabled")]
    for name in paused:
        db.execute("SELECT flywheel.set_validator_enabled(%s, false)", (name,))
    try:
        yield
    finally:
        for name in paused:
            db.execute("SELECT flywheel.set_validator_enabled(%s, true)", (name,))
