"""The embedded PostgreSQL: a private cluster per user, made with initdb and run with pg_ctl.

Used by `dbflywheel up/down/status/dsn` and by the test suite for its throw-away cluster.
As root the server runs as the `postgres` OS user, because initdb refuses root.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

from dbflywheel.errors import FlywheelError

DATABASE = "flywheel"
SUPERUSER = "postgres"
MIN_SERVER_MAJOR = 15


def default_home() -> Path:
    if env := os.environ.get("DBFLYWHEEL_HOME"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/dbflywheel")
    return Path.home() / ".local" / "share" / "dbflywheel"


def find_bindir() -> Path:
    """The newest PostgreSQL (15+) server binaries: $DBFLYWHEEL_PG_BIN, Debian's folders, PATH."""
    candidates: list[Path] = []
    if env := os.environ.get("DBFLYWHEEL_PG_BIN"):
        candidates = [Path(env)]  # an explicit choice: look nowhere else
    else:
        candidates = _standard_bindirs()
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    raise FlywheelError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: run `make setup` "
        "(or apt-get install postgresql-15), or set DBFLYWHEEL_PG_BIN to their folder"
    )


def _standard_bindirs() -> list[Path]:
    candidates: list[Path] = []
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = sorted((d for d in debian.iterdir() if d.name.isdigit()), key=lambda d: -int(d.name))
        candidates += [d / "bin" for d in versions if int(d.name) >= MIN_SERVER_MAJOR]
    if found := shutil.which("pg_ctl"):
        candidates.append(Path(found).resolve().parent)
    return candidates


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ClusterState:
    """What `up` decided, kept in <home>/cluster.json so that later commands agree."""

    port: int
    password: str
    os_user: str


class Cluster:
    def __init__(self, home: Path | None = None, *, fast: bool = False) -> None:
        self.home = (home or default_home()).resolve()
        self.datadir = self.home / "data"
        self.socket_dir = self.home / "run"
        self.logfile = self.home / "postgres.log"
        self.state_file = self.home / "cluster.json"
        # fsync off etc.: for throw-away test clusters only, never for `dbflywheel up`.
        self.fast = fast

    # -- state -------------------------------------------------------------------------
    def state(self) -> ClusterState | None:
        if not self.state_file.exists():
            return None
        return ClusterState(**json.loads(self.state_file.read_text()))

    def _require_state(self) -> ClusterState:
        state = self.state()
        if state is None:
            raise FlywheelError(f"no dbflywheel cluster in {self.home}: run `dbflywheel up` first")
        return state

    def dsn(self, *, tcp: bool = False) -> str:
        state = self._require_state()
        if tcp:
            return (
                f"postgresql://{SUPERUSER}:{quote(state.password)}@127.0.0.1:{state.port}/{DATABASE}"
            )
        return f"postgresql://{SUPERUSER}@/{DATABASE}?host={quote(str(self.socket_dir))}&port={state.port}"

    # -- running commands as the server's OS user ------------------------------------------
    @staticmethod
    def _server_user() -> str:
        if os.geteuid() != 0:
            return pwd.getpwuid(os.geteuid()).pw_name
        try:
            pwd.getpwnam("postgres")
        except KeyError as e:
            raise FlywheelError(
                "running as root, but there is no `postgres` OS user to run the server: "
                "install postgresql-15 (make setup) or run as an ordinary user"
            ) from e
        return "postgres"

    def _run(self, os_user: str, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        if os.geteuid() == 0 and os_user != "root":
            entry = pwd.getpwnam(os_user)
            kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
            env["HOME"] = entry.pw_dir
        proc = subprocess.run(
            [str(a) for a in args], capture_output=True, text=True, env=env, cwd="/", **kwargs  # type: ignore[call-overload]
        )
        if check and proc.returncode != 0:
            raise FlywheelError(f"{Path(str(args[0])).name} failed: {_last_line(proc.stderr or proc.stdout)}")
        return proc

    # -- life cycle -------------------------------------------------------------------------
    def is_initialized(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def running_pid(self) -> int | None:
        pidfile = self.datadir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, owned by another user
        return pid

    def init(self, port: int | None = None) -> ClusterState:
        bindir = find_bindir()
        os_user = self._server_user()
        if port is not None and not port_is_free(port):
            raise FlywheelError(
                f"port {port} is already in use: choose another with --port, or omit --port to pick a free one"
            )
        state = ClusterState(port=port or pick_free_port(), password=secrets.token_urlsafe(18), os_user=os_user)
        self.home.mkdir(parents=True, exist_ok=True)
        for folder in (self.home, self.socket_dir):
            folder.mkdir(parents=True, exist_ok=True)
            os.chmod(folder, 0o700)
            if os.geteuid() == 0:
                entry = pwd.getpwnam(os_user)
                shutil.chown(folder, entry.pw_uid, entry.pw_gid)
        pwfile = self.home / ".initdb-password"
        pwfile.write_text(state.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, os_user)
        try:
            self._run(
                os_user, bindir / "initdb", "-D", self.datadir, "-U", SUPERUSER, "--encoding=UTF8",
                "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256",
                f"--pwfile={pwfile}",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with open(self.datadir / "postgresql.conf", "a") as conf:
            conf.write(self._settings(state.port))
        self.state_file.write_text(json.dumps(asdict(state)))
        os.chmod(self.state_file, 0o600)
        return state

    def _settings(self, port: int) -> str:
        lines = [
            "# added by dbflywheel",
            "listen_addresses = '127.0.0.1'",
            f"port = {port}",
            f"unix_socket_directories = '{self.socket_dir}'",
            "max_connections = 200",
            "shared_buffers = '256MB'",
        ]
        if (find_bindir().parent / "lib" / "pg_cron.so").exists():
            # pg_cron connects as each job's user (flywheel_scheduler) through the socket, where
            # the embedded cluster trusts local logins; over TCP it would need a password.
            lines += ["shared_preload_libraries = 'pg_cron'", f"cron.database_name = '{DATABASE}'",
                      f"cron.host = '{self.socket_dir}'"]
        if self.fast:
            lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        state = self._require_state()
        if self.running_pid():
            return
        if not port_is_free(state.port):
            raise FlywheelError(
                f"port {state.port} of the cluster in {self.home} is taken by another program: "
                "stop it, or remove that folder and run `dbflywheel up --port N`"
            )
        proc = self._run(
            state.os_user, find_bindir() / "pg_ctl", "start", "-w", "-t", "60", "-D", self.datadir,
            "-l", self.logfile, check=False,
        )
        if proc.returncode != 0:
            raise FlywheelError(f"the server did not start: {self._log_tail()} (log: {self.logfile})")
        self._ensure_database()

    def _ensure_database(self) -> None:
        import psycopg

        admin = self.dsn().replace(f"/{DATABASE}?", "/postgres?")
        with psycopg.connect(admin, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone() is None:
                conn.execute(f"CREATE DATABASE {DATABASE}")

    def stop(self) -> bool:
        if not self.is_initialized() or not self.running_pid():
            return False
        state = self._require_state()
        self._run(state.os_user, find_bindir() / "pg_ctl", "stop", "-w", "-m", "fast", "-D", self.datadir)
        return True

    def restart(self) -> None:
        state = self._require_state()
        self._run(
            state.os_user, find_bindir() / "pg_ctl", "restart", "-w", "-m", "fast", "-D", self.datadir,
            "-l", self.logfile,
        )

    def up(self, port: int | None = None) -> str:
        if not self.is_initialized():
            self.init(port)
        elif port is not None and self._require_state().port != port:
            raise FlywheelError(
                f"the cluster in {self.home} already uses port {self._require_state().port}; "
                "omit --port, or remove that folder to start over"
            )
        self.start()
        return self.dsn()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)

    def _log_tail(self) -> str:
        try:
            lines = [ln for ln in self.logfile.read_text().splitlines() if ln.strip()]
        except OSError:
            return "no log written"
        errors = [ln for ln in lines if "FATAL" in ln or "ERROR" in ln]
        return (errors or lines or ["empty log"])[-1]


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"
