"""The libraries PL/Python imports from the package folder (plpython/requirements.txt) run on
Debian's python3.11 with Debian's numpy, and give the database the same answers as the venv."""

from __future__ import annotations

import json

import numpy as np
import psycopg
import scipy.stats as st


def test_scipy_comes_from_the_folder_and_numpy_from_debian(db: psycopg.Connection) -> None:
    env = db.execute("SELECT flywheel.python_environment()").fetchone()[0]  # type: ignore[index]
    assert env["missing"] == [] and env["packages"]["scipy"] == "1.15.3"
    # In the same session, after the boot function installed the folder's finder: a wrong numpy
    # (a wheel that --no-deps keeps out of the folder) fails this DO block.
    db.execute("""DO LANGUAGE plpython3u $$
import numpy, scipy.stats
assert numpy.__file__.startswith('/usr/lib/python3/dist-packages/'), numpy.__file__
assert not scipy.__file__.startswith('/usr/lib/python3/'), scipy.__file__
$$""")


def test_the_exact_ks_test_in_the_database_is_scipys(db: psycopg.Connection) -> None:
    rng = np.random.default_rng(18)
    a, b = rng.normal(0, 1, 700).round(6).tolist(), rng.normal(0.15, 1, 900).round(6).tolist()
    db.execute("SELECT flywheel.python_environment()")  # the folder's finder, as every function installs it
    samples = json.dumps([a, b])  # digits, brackets and commas only: safe inside the DO body
    db.execute("DO LANGUAGE plpython3u $$\n"
               "import json\n"
               "from dbflywheel_plpython import metrics_stats\n"  # the package the boot function serves
               f"d, p = metrics_stats.ks_2samp(*json.loads('{samples}'))\n"
               "plpy.execute(\"SELECT set_config('test.ks', '%r %r', false)\" % (d, p))\n"
               "$$")
    d, p = map(float, db.execute("SELECT current_setting('test.ks')").fetchone()[0].split())  # type: ignore[index]
    expected = st.ks_2samp(a, b)
    assert abs(d - expected.statistic) < 1e-12
    assert abs(p - expected.pvalue) <= 1e-9 * expected.pvalue and 0 < p < 0.05
