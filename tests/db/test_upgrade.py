"""Upgrading: an older install plus the current script equals a fresh install of the current script.

tests/data/upgrade/ holds install scripts of earlier builds. An edit to a migration that such
a build already applied, or a change that only a fresh install gets, fails here.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from schema_dump import schema_dump

from dbflywheel.install import install

OLD_SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "data" / "upgrade").glob("*.sql"))


@pytest.mark.parametrize("old_script", OLD_SCRIPTS, ids=lambda p: p.stem)
def test_upgrade_equals_fresh_install(scratch_database, old_script: Path) -> None:  # type: ignore[no-untyped-def]
    upgraded, fresh = scratch_database(), scratch_database()
    with psycopg.connect(upgraded, autocommit=True) as conn:
        conn.execute(old_script.read_bytes())
        conn.execute("INSERT INTO flywheel.traces (input, output) VALUES ('kept?', 'yes')")
    assert install(upgraded).changed
    install(fresh)
    assert schema_dump(upgraded) == schema_dump(fresh)
    with psycopg.connect(upgraded) as conn:
        assert conn.execute("SELECT output FROM flywheel.traces WHERE input = 'kept?'").fetchone() == ("yes",)


def test_upgrading_the_first_release_keeps_results_and_repoints_metric_views(scratch_database) -> None:  # type: ignore[no-untyped-def]
    """The first release wrote results one row each into a table; the current one packs the insert
    path's and reads both through a view. Results, and a metric view an admin made over the old
    table, come through the upgrade."""
    dsn = scratch_database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute((OLD_SCRIPTS[0].parent / "flywheel-0.1.0-first-release.sql").read_bytes())
        conn.execute("INSERT INTO flywheel.traces (app, input, output) VALUES ('a', 'hi', 'As an AI language model, hi')")
        conn.execute("SELECT flywheel.create_metric('custom_fails', 'SELECT count(*) AS n FROM flywheel.validation_results"
                     " r WHERE r.status = ''fail''')")
        before = conn.execute("SELECT count(*) FROM flywheel.validation_results").fetchone()
        fails = conn.execute("SELECT n FROM flywheel.metric_custom_fails").fetchone()[0]  # type: ignore[index]
    assert install(dsn).changed
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM flywheel.validation_results").fetchone() == before
        conn.execute("INSERT INTO flywheel.traces (app, input, output) VALUES ('a', 'again', 'As an AI language model')")
        # The new trace's results are packed; the admin's view sees them through validation_results.
        assert conn.execute("SELECT count(*) FROM flywheel._insert_results").fetchone() == (1,)
        assert conn.execute("SELECT n FROM flywheel.metric_custom_fails").fetchone()[0] > fails  # type: ignore[index]
