"""Test fixtures: a throw-away PostgreSQL cluster (the same code as `dbflywheel up`), or the
server named by DBFLYWHEEL_TEST_DSN, with dbflywheel installed in it."""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import settings
from psycopg.conninfo import make_conninfo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plpython"))  # PL/Python modules run under the stub plpy too
sys.path.insert(0, str(REPO / "tests"))

# Property tests (tests/fuzzing.py): `make test` runs them with a fixed seed, so a fresh clone
# gets the same examples every time; `make fuzz` explores with random seeds and more examples.
settings.register_profile("repeatable", derandomize=True, database=None, print_blob=True)
settings.register_profile("fuzz", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run the long (soak) tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_slow = pytest.mark.skip(reason="long test: make soak runs it")
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "db" in parts or "e2e" in parts:
            item.add_marker(pytest.mark.db)
        if "slow" in item.keywords and not config.getoption("--run-slow"):
            item.add_marker(skip_slow)


@pytest.fixture(scope="session")
def cluster() -> Iterator[object | None]:
    """The throw-away cluster, or None when the tests run on DBFLYWHEEL_TEST_DSN."""
    if os.environ.get("DBFLYWHEEL_TEST_DSN"):
        yield None
        return
    from dbflywheel.cluster import Cluster

    home = Path(tempfile.mkdtemp(prefix="dbflywheel-test-"))
    test_cluster = Cluster(home, fast=True)
    test_cluster.up()
    try:
        yield test_cluster
    finally:
        test_cluster.destroy()


@pytest.fixture(scope="session")
def dsn(cluster: object | None) -> str:
    from dbflywheel.install import install

    target = os.environ.get("DBFLYWHEEL_TEST_DSN") or cluster.dsn()  # type: ignore[union-attr]
    install(target)
    return target


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection]:
    """A per-test autocommit connection as the installing superuser."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def app_name() -> str:
    """A fresh app name, so that a test sees only the traces it inserted."""
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def login_role(db: psycopg.Connection, dsn: str) -> Iterator[Callable[..., psycopg.Connection]]:
    """Makes login roles in a group (or mapped to an app with grant_app); drops them afterwards."""
    made: list[tuple[str, psycopg.Connection]] = []

    def make(group: str, app: str | None = None) -> psycopg.Connection:
        name = f"r_{uuid.uuid4().hex[:12]}"
        password = uuid.uuid4().hex
        db.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
        if app is not None:
            db.execute("SELECT flywheel.grant_app(%s, %s)", (name, app))
        else:
            db.execute(f"GRANT {group} TO {name}")
        conn = psycopg.connect(make_conninfo(dsn, user=name, password=password), autocommit=True)
        made.append((name, conn))
        return conn

    yield make
    for name, conn in made:
        conn.close()
        db.execute("DELETE FROM flywheel.app_roles WHERE role_name = %s", (name,))
        db.execute(f"DROP OWNED BY {name}")
        db.execute(f"DROP ROLE {name}")
