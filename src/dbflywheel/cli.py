"""The `dbflywheel` command (`dbflywheel --help` lists them all):
- the embedded cluster: up, down, status, dsn;
- the extension: build, install, python-env;
- the flywheel's jobs: worker (LLM judges), embed, refresh, revalidate, validators, eval;
- the shipped data: demo, load-llmfao.
New commands go in a block at the end of this file."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from dbflywheel import __version__
from dbflywheel.errors import FlywheelError

F = TypeVar("F", bound=Callable[..., Any])


def friendly(fn: F) -> F:
    """Turn every expected failure into one line on stderr and exit code 1: no tracebacks."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import psycopg

        try:
            return fn(*args, **kwargs)
        except FlywheelError as e:
            click.echo(f"dbflywheel: {e}", err=True)
            sys.exit(1)
        except psycopg.Error as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            click.echo(f"dbflywheel: database error: {first}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("dbflywheel: interrupted", err=True)
            sys.exit(130)
        except click.ClickException:
            raise
        except Exception as e:  # a bug, not bad input: still one line, the traceback on request
            if os.environ.get("DBFLYWHEEL_DEBUG"):
                raise
            click.echo(f"dbflywheel: unexpected error: {type(e).__name__}: {e} "
                       "(rerun with DBFLYWHEEL_DEBUG=1 for the traceback)", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _cluster(home: Path | None) -> Any:
    from dbflywheel.cluster import Cluster

    return Cluster(home)


def _resolve_dsn(dsn: str | None, home: Path | None) -> str:
    """--dsn, else $DBFLYWHEEL_DSN, else the embedded cluster's."""

    return dsn or os.environ.get("DBFLYWHEEL_DSN") or _cluster(home).dsn()


home_option = click.option(
    "--home", type=click.Path(path_type=Path), default=None,
    help="Folder of the embedded cluster (default: $DBFLYWHEEL_HOME, /var/lib/dbflywheel as root, "
    "else ~/.local/share/dbflywheel).",
)
dsn_option = click.option(
    "--dsn", default=None, help="Connection string (default: $DBFLYWHEEL_DSN, else the embedded cluster)."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dbflywheel")
def main() -> None:
    """dbflywheel: the LLM data flywheel inside PostgreSQL."""


@main.command()
@home_option
@click.option("--port", type=int, default=None, help="TCP port on 127.0.0.1 (default: a free one).")
@friendly
def up(home: Path | None, port: int | None) -> None:
    """Create (first time) and start the embedded PostgreSQL, and install dbflywheel in it."""
    from dbflywheel.install import install

    cluster = _cluster(home)
    dsn = cluster.up(port)
    result = install(dsn)
    click.echo(f"dbflywheel: cluster running in {cluster.home}; {result.describe()}", err=True)
    click.echo(dsn)


@main.command()
@home_option
@friendly
def down(home: Path | None) -> None:
    """Stop the embedded PostgreSQL (its data stays)."""
    cluster = _cluster(home)
    click.echo("stopped" if cluster.stop() else f"not running ({cluster.home})")


@main.command()
@home_option
@click.option("--tcp", is_flag=True, help="A TCP connection string with password, for other tools.")
@friendly
def dsn(home: Path | None, tcp: bool) -> None:
    """Print only the embedded cluster's connection string: psql "$(dbflywheel dsn)"."""
    click.echo(_cluster(home).dsn(tcp=tcp))


@main.command()
@home_option
@friendly
def status(home: Path | None) -> None:
    """Whether the embedded cluster runs, where its data and log are, what is installed."""
    from dbflywheel.install import connect, installed_version

    cluster = _cluster(home)
    if not cluster.is_initialized():
        click.echo(f"cluster:   none in {cluster.home} (run `dbflywheel up`)")
        sys.exit(3)
    pid = cluster.running_pid()
    click.echo(f"cluster:   {'running, pid ' + str(pid) if pid else 'stopped'}")
    click.echo(f"data:      {cluster.datadir}")
    click.echo(f"log:       {cluster.logfile}")
    click.echo(f"dsn:       {cluster.dsn()}")
    if not pid:
        sys.exit(3)
    with connect(cluster.dsn()) as conn:
        version = installed_version(conn)
        server = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    click.echo(f"server:    PostgreSQL {server}")
    click.echo(f"installed: {'dbflywheel ' + version if version else 'dbflywheel is not installed'}")


@main.command()
@dsn_option
@home_option
@click.option("--force", is_flag=True, help="Re-apply the script even when it is already installed.")
@click.option("--python-path", default=None,
              help="Folder(s) PL/Python imports its packages from, fixed into the install "
                   "(default: $DBFLYWHEEL_PL_PYTHON_DIR or where make setup puts them).")
@friendly
def install(dsn: str | None, home: Path | None, force: bool, python_path: str | None) -> None:
    """Install or upgrade dbflywheel in a PostgreSQL 15+ database (idempotent)."""
    from dbflywheel.install import install as do_install

    click.echo(do_install(_resolve_dsn(dsn, home), force=force, python_path=python_path).describe())


@main.command()
@click.option("--check", is_flag=True, help="Fail when the shipped script is stale instead of writing it.")
@friendly
def build(check: bool) -> None:
    """Assemble sql/, migrations/ and plpython/ into the shipped install script."""
    from dbflywheel import build as builder

    if check:
        builder.check()
        click.echo("the shipped install script is up to date")
    else:
        click.echo(f"wrote {builder.write()}")


@main.command("python-env")
@dsn_option
@home_option
@friendly
def python_env(dsn: str | None, home: Path | None) -> None:
    """Show the Python that runs PL/Python in the database and what it is missing."""
    from dbflywheel.install import connect

    with connect(_resolve_dsn(dsn, home)) as conn:
        info = conn.execute("SELECT flywheel.python_environment()").fetchone()[0]  # type: ignore[index]
    click.echo(json.dumps(info, indent=2))
    if info["missing"]:
        sys.exit(1)


@main.command()
@dsn_option
@home_option
@click.option("--loop", "keep_going", is_flag=True, help="Keep running the due schedules (where pg_cron is absent).")
@click.option("--interval", type=float, default=30.0, show_default=True, help="Seconds between two passes of --loop.")
@click.option("--metric", default=None, help="Refresh this one metric now instead of the due schedules.")
@click.option("--full", is_flag=True, help="With --metric: recompute a rollup entirely, not only its changed days.")
@click.option("--include-pg-cron-jobs", is_flag=True, help="Also run the schedules pg_cron runs.")
@friendly
def refresh(dsn: str | None, home: Path | None, keep_going: bool, interval: float, metric: str | None, full: bool,
            include_pg_cron_jobs: bool) -> None:
    """Refresh materialized metrics and run the checks whose schedules are due."""
    from dbflywheel import refresh as refresher
    from dbflywheel.install import connect

    target = _resolve_dsn(dsn, home)
    if metric is not None:
        with connect(target, autocommit=True) as conn:
            click.echo(refresher.refresh_metric(conn, metric, full=full))
        return
    if keep_going:
        refresher.loop(target, interval=interval, echo=click.echo, include_pg_cron_jobs=include_pg_cron_jobs)
        return
    with connect(target, autocommit=True) as conn:
        ran = refresher.run_due(conn, include_pg_cron_jobs=include_pg_cron_jobs)
    for item in ran:
        click.echo(f"ran {item.name}" + (f": FAILED: {item.error}" if item.error else ""))
    if not ran:
        click.echo("nothing was due")
    if any(item.error for item in ran):
        sys.exit(1)


@main.command()
@dsn_option
@home_option
@friendly
def demo(dsn: str | None, home: Path | None) -> None:
    """Run the flywheel demo against the database."""
    from dbflywheel.demo import run_demo

    run_demo(_resolve_dsn(dsn, home))


@main.command()
@dsn_option
@home_option
@click.option("--concurrency", type=click.IntRange(1, 1000), default=8, show_default=True,
              help="Judge calls in flight at once.")
@click.option("--once", is_flag=True, help="Drain the queue, then exit.")
@click.option("--lease-seconds", type=click.FloatRange(0.5), default=60.0, show_default=True,
              help="How long a claimed job stays this worker's without a heartbeat.")
@click.option("--poll-seconds", type=click.FloatRange(0.05), default=2.0, show_default=True,
              help="Look for due jobs at least this often (NOTIFY wakes the worker sooner).")
@click.option("--allow-base-url", "allow_base_urls", multiple=True, metavar="URL", envvar="DBFLYWHEEL_ALLOW_BASE_URLS",
              help="A base URL (prefix: scheme, host, port, path) judges may call; repeatable. "
                   "Default: https://api.openai.com/v1 (and $DBFLYWHEEL_JUDGE_BASE_URL).")
@click.option("--allow-key-env", "allow_key_envs", multiple=True, metavar="NAME[=URL]",
              envvar="DBFLYWHEEL_ALLOW_KEY_ENVS",
              help="An environment variable (or pattern such as '*_API_KEY') judges may take their API key "
                   "from, only for base URLs under URL when given; repeatable. Default: OPENAI_API_KEY.")
@friendly
def worker(dsn: str | None, home: Path | None, concurrency: int, once: bool, lease_seconds: float,
           poll_seconds: float, allow_base_urls: tuple[str, ...], allow_key_envs: tuple[str, ...]) -> None:
    """Run LLM judges from the queue; SIGTERM finishes the jobs in hand and exits.

    A judge's config names its base_url and api_key_env; this worker calls only the base URLs
    and reads only the variables its operator allows here. A job outside them is dead-lettered
    at once with the reason, without reading the variable or sending anything."""
    from dbflywheel.providers import Allowlist
    from dbflywheel.worker import run_worker

    allowlist = Allowlist.from_options(allow_base_urls, allow_key_envs)  # a bad entry: one line, exit 1
    stats = run_worker(_resolve_dsn(dsn, home), concurrency=concurrency, once=once,
                       lease_seconds=lease_seconds, poll_seconds=poll_seconds, allowlist=allowlist)
    click.echo(f"dbflywheel worker: {stats.describe()}")


@main.command("load-llmfao")
@dsn_option
@home_option
@click.option("--app", default="llmfao", show_default=True, help="The app name of the loaded traces.")
@friendly
def load_llmfao(dsn: str | None, home: Path | None, app: str) -> None:
    """Load the shipped llmfao data set: responses as traces, crowd and GPT-4 verdicts as preferences."""
    from dbflywheel.datasets.llmfao import load
    from dbflywheel.install import connect

    with connect(_resolve_dsn(dsn, home)) as conn:
        click.echo(load(conn, app=app).describe())

@main.command("eval")
@dsn_option
@home_option
@click.option("--golden", "golden_set", required=True, help="Name of the golden set to run.")
@click.option("--min-pass-rate", type=float, default=0.85, show_default=True,
              help="Every validator (and the whole set) must pass at least this fraction.")
@click.option("--version", "set_version", type=int, default=None, help="An older version of the set.")
@friendly
def eval_(dsn: str | None, home: Path | None, golden_set: str, min_pass_rate: float, set_version: int | None) -> None:
    """Run the validators over a golden set: exit 1 below the pass rate (the release gate)."""
    from dbflywheel.golden import run_eval

    report = run_eval(_resolve_dsn(dsn, home), golden_set, min_pass_rate, set_version)
    click.echo(report.table())
    if not report.passed:
        sys.exit(1)


@main.command()
@dsn_option
@home_option
@click.option("--batch", type=int, default=1000, show_default=True, help="Traces per transaction.")
@click.option("--until-done", is_flag=True, help="Repeat until the backlog and back-fills are empty.")
@friendly
def embed(dsn: str | None, home: Path | None, batch: int, until_done: bool) -> None:
    """Embed what is waiting: failed insert-time embeddings, worker embedders, back-fills."""
    from dbflywheel.embeddings import run

    result = run(_resolve_dsn(dsn, home), batch=batch, until_done=until_done)
    click.echo(f"embedded {result.embedded} trace(s)"
               + (f"; {result.activated} is now the active embedder" if result.activated else ""))


# --- validators (issue 3) ---
@main.command("validators")
@dsn_option
@home_option
@friendly
def validators_cmd(dsn: str | None, home: Path | None) -> None:
    """List the validators: kind, mode, current version, and their verdicts of the last day."""
    from dbflywheel.validators import list_validators

    header = ["name", "kind", "mode", "version", "enabled", "sample", "results_1d", "failed", "errors"]
    rows = [[v["name"], v["kind"], v["mode"], str(v["version"]), "yes" if v["enabled"] else "no",
             f"{v['sample_rate']:g}", str(v["results"]), str(v["failed"]), str(v["errors"])]
            for v in list_validators(_resolve_dsn(dsn, home))]
    if not sys.stdout.isatty():  # for scripts: tab-separated, never truncated
        click.echo("\n".join("\t".join(r) for r in [header, *rows]))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(*header)
    for r in rows:
        table.add_row(*r)
    Console().print(table)


@main.command("revalidate")
@click.argument("name")
@click.option("--since", type=click.DateTime(), default=None, help="Only traces created at or after this time.")
@dsn_option
@home_option
@friendly
def revalidate_cmd(name: str, since: Any, dsn: str | None, home: Path | None) -> None:
    """Run the current version of validator NAME over past traces (after its criterion changed)."""
    from dbflywheel.validators import revalidate

    seen = revalidate(_resolve_dsn(dsn, home), name, since, lambda line: click.echo(line, err=True))
    click.echo(f"revalidated {name} over {seen} trace(s)")
# --- end validators ---


# --- serve (HTTP) ---
@main.command()
@dsn_option
@home_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8321, show_default=True, help="TCP port.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="Server processes.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@friendly
def serve(dsn: str | None, home: Path | None, host: str, port: int, workers: int, log_level: str) -> None:
    """Serve the HTTP API and the review web app; SIGTERM finishes the requests in hand and exits."""
    import uvicorn

    from dbflywheel.server.app import DSN_ENV
    from dbflywheel.server.login import server_dsn

    os.environ[DSN_ENV] = server_dsn(_resolve_dsn(dsn, home), lambda line: click.echo(line, err=True))
    uvicorn.run("dbflywheel.server.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, timeout_graceful_shutdown=30)


@main.command("serve-demo")
@dsn_option
@home_option
@click.option("--port", type=click.IntRange(1, 65535), default=8321, show_default=True, help="TCP port.")
@friendly
def serve_demo(dsn: str | None, home: Path | None, port: int) -> None:
    """Start `dbflywheel serve` in the background with a fresh key for app 'demo' (make demo's last step)."""
    import subprocess
    import time
    import uuid

    import httpx
    import psycopg

    target = _resolve_dsn(dsn, home)
    with psycopg.connect(target, autocommit=True) as conn:
        (key,) = conn.execute("SELECT flywheel.create_api_key('demo', %s)",
                              (f"demo-{uuid.uuid4().hex[:8]}",)).fetchone()  # type: ignore[misc]
    url = f"http://127.0.0.1:{port}"
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"dbflywheel-serve-{port}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dbflywheel.cli", "serve", "--dsn", target, "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    for _ in range(300):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            if proc.poll() is not None:
                raise click.ClickException(f"serve exited (port {port} taken?); see {log}") from None
            time.sleep(0.1)
    click.echo(f"dbflywheel serve: {url} (pid {proc.pid}, log {log}; stop with kill {proc.pid})")
    click.echo(f"API key for app 'demo' (shown once): {key}")
    click.echo(f"try: curl -s -X POST {url}/v1/feedback -H 'Authorization: Bearer {key}'"
               " -H 'Content-Type: application/json' -d '{\"question\": \"2+2?\", \"response\": \"4\", \"rating\": 5}'")
# --- end serve ---


# --- review web app (issue 15) ---
@main.command("send-alerts")
@dsn_option
@home_option
@click.option("--watch", type=click.FloatRange(1, 3600), default=None,
              help="Keep sending every this many seconds (default: one pass).")
@friendly
def send_alerts(dsn: str | None, home: Path | None, watch: float | None) -> None:
    """Post new alerts to the webhooks set with flywheel.set_alert_webhook (Slack-compatible JSON, with retries)."""
    from dbflywheel import webhooks

    counts = webhooks.run(_resolve_dsn(dsn, home), watch=watch)
    click.echo(f"alerts: {counts['sent']} sent, {counts['pending']} to retry, {counts['failed']} given up")
# --- end review web app ---


# --- training sets ---
@main.command("export-training")
@click.argument("name")
@click.option("--version", "set_version", type=click.IntRange(1), default=None,
              help="A snapshot (default: the newest).")
@click.option("--format", "fmt", type=click.Choice(["openai", "jsonl", "trl"]), default="openai", show_default=True,
              help="openai: chat messages (sft) or DPO pairs (preference); jsonl: input/output; "
                   "trl: prompt/completion or prompt/chosen/rejected.")
@click.option("-o", "--output", "out", required=True, help="File to write ('-': standard output).")
@dsn_option
@home_option
@friendly
def export_training(name: str, set_version: int | None, fmt: str, out: str, dsn: str | None, home: Path | None) -> None:
    """Write a training set snapshot as JSONL for a fine-tuning run (streamed; the file appears whole)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from dbflywheel.install import connect
    from dbflywheel.training import check_format, export, snapshot

    with connect(_resolve_dsn(dsn, home)) as conn:
        snap = snapshot(conn, name, set_version)
        check_format(snap, fmt)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      console=Console(stderr=True), transient=out == "-") as bar:
            task = bar.add_task(f"exporting {name} version {snap.version}", total=snap.row_count)
            written = export(conn, snap, fmt, out, lambda done, total: bar.update(task, completed=done))
    click.echo(f"exported {name} version {snap.version} ({snap.kind}): {written} row(s) as {fmt} to {out}", err=True)
# --- end training sets ---


# --- calibration (issue 16) ---
@main.command("calibrate")
@click.argument("name")
@dsn_option
@home_option
@friendly
def calibrate_cmd(name: str, dsn: str | None, home: Path | None) -> None:
    """Fit a new calibration of pairwise judge NAME from people's votes; print raw and calibrated
    kappa on the held-out labels, and whether the new version went live."""
    import psycopg
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    # The progress bar on stderr (only where it is a terminal); the result on stdout.
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=True,
                  console=Console(stderr=True)) as progress:
        progress.add_task(f"calibrating {name} (fit, time-ordered hold-out)", total=None)
        with psycopg.connect(_resolve_dsn(dsn, home), autocommit=True) as conn:
            row = conn.execute("SELECT * FROM flywheel.calibrate(%s)", (name,)).fetchone()
    assert row is not None
    version, n_labels, n_holdout, kappa, raw_kappa, active_kappa, activated = row

    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    click.echo(f"{name}: calibration v{version} from {n_labels} labelled pairs; on the newest {n_holdout}:")
    click.echo(f"  kappa raw {fmt(raw_kappa)}  calibrated {fmt(kappa)}  active before {fmt(active_kappa)}")
    click.echo(f"  {'activated' if activated else 'not activated (does not beat the raw judge and the active one)'}")
# --- end calibration ---


if __name__ == "__main__":
    main()
