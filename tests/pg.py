"""A throwaway PostgreSQL cluster for tests.

`PostgresCluster` runs initdb into a fresh temporary directory, starts the server on a free
loopback port (TCP on 127.0.0.1 only, trust auth for 127.0.0.1 only, the unix socket inside the
temporary directory, fsync off), creates databases on request, and on `stop()` shuts the server
down (`pg_ctl stop -m fast`) and removes the directory.

PostgreSQL refuses to run as root: when the tests run as root, initdb and pg_ctl run as the
`postgres` system user (created by Debian's package) and the directory is handed to that user.

The server binaries come from $GBG_PG_BINDIR, `pg_config --bindir`, or the highest version under
/usr/lib/postgresql/*/bin. Without them the helper raises `PostgresNotInstalledError` (the tests
fail, they do not skip): install them with `apt-get install postgresql`.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import free_port

INSTALL_HINT = "install the PostgreSQL server with `apt-get install postgresql`"
SERVER_USER = "postgres"  # the system user that runs the server when we are root
SUPERUSER = "postgres"  # the database superuser initdb creates


class PostgresNotInstalledError(RuntimeError):
    pass


def _has_server(bindir: str | Path) -> bool:
    return all(os.access(Path(bindir) / exe, os.X_OK) for exe in ("initdb", "pg_ctl", "postgres"))


def _version_key(path: str) -> tuple[int, ...]:
    m = re.search(r"/postgresql/([0-9.]+)/bin", path)
    return tuple(int(x) for x in m.group(1).split(".") if x) if m else (0,)


def find_bindir() -> Path:
    """The directory holding initdb, pg_ctl and postgres."""
    tried: list[str] = []
    env = os.environ.get("GBG_PG_BINDIR")
    if env:
        if _has_server(env):
            return Path(env)
        tried.append(f"$GBG_PG_BINDIR={env}")
    pg_config = shutil.which("pg_config")
    if pg_config:
        # On Debian pg_config may come from libpq-dev alone, without the server next to it.
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 timeout=10, check=True).stdout.strip()
            if out and _has_server(out):
                return Path(out)
            tried.append(f"pg_config --bindir ({out})")
    candidates = sorted((d for d in glob.glob("/usr/lib/postgresql/*/bin") if _has_server(d)),
                        key=_version_key)
    if candidates:
        return Path(candidates[-1])
    tried.append("/usr/lib/postgresql/*/bin")
    raise PostgresNotInstalledError(
        f"PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in {', '.join(tried)}; "
        f"{INSTALL_HINT}"
    )


class PostgresCluster:
    """One initdb'd data directory and the server running on it."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        self.as_root = os.geteuid() == 0
        self.root: Path | None = None
        self.port = 0
        self.started = False
        self.start_seconds = 0.0  # initdb + start, measured by start()

    # -- running the server binaries --------------------------------------------------------

    def _prefix(self) -> list[str]:
        """The command prefix that drops root privileges to the server user."""
        if not self.as_root:
            return []
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError as exc:
            raise PostgresNotInstalledError(
                f"running as root, but there is no `{SERVER_USER}` system user to run the server "
                f"as; {INSTALL_HINT} (it creates the user)"
            ) from exc
        if shutil.which("runuser"):
            return ["runuser", "-u", SERVER_USER, "--"]
        if shutil.which("setpriv"):
            return ["setpriv", f"--reuid={SERVER_USER}", f"--regid={SERVER_USER}", "--init-groups",
                    "--"]
        raise RuntimeError("running as root, but neither runuser nor setpriv is available")

    def _run(self, exe: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        assert self.root is not None
        cmd = [*self._prefix(), str(self.bindir / exe), *args]
        # cwd: the server user may not be allowed into the caller's working directory.
        proc = subprocess.run(cmd, cwd=self.root, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"})
        if proc.returncode != 0:
            raise RuntimeError(
                f"{exe} failed with exit status {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
                + self._log_tail()
            )
        return proc

    def _log_tail(self) -> str:
        if self.root and (self.root / "server.log").exists():
            lines = (self.root / "server.log").read_text(errors="replace").splitlines()
            return "\nserver.log:\n" + "\n".join(lines[-20:])
        return ""

    @property
    def datadir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    # -- life cycle -------------------------------------------------------------------------

    def start(self, attempts: int = 3) -> PostgresCluster:
        t0 = time.perf_counter()
        # Directly under the system temp dir: the server user must be able to reach it
        # (pytest's tmp_path lives below a root-only 0700 directory).
        self.root = Path(tempfile.mkdtemp(prefix="gbg-pg-"))
        atexit.register(self.stop)  # a safety net if the session dies before its finalizer
        try:
            if self.as_root:
                self._prefix()  # fails clearly when there is no server user
                ids = pwd.getpwnam(SERVER_USER)
                os.chown(self.root, ids.pw_uid, ids.pw_gid)
            self._run("initdb", "-D", str(self.datadir), "-U", SUPERUSER, "-E", "UTF8",
                      "--locale=C.UTF-8", "--auth=trust", "--no-sync", "--no-instructions")
            # Only TCP from 127.0.0.1, without a password; nothing else (no socket, no ::1).
            (self.datadir / "pg_hba.conf").write_text(
                "# gbg-assist tests: trust 127.0.0.1 only\n"
                "host all all 127.0.0.1/32 trust\n", encoding="utf-8")
            for attempt in range(attempts):  # the free port can be taken before we bind it
                self.port = free_port()
                (self.datadir / "postgresql.auto.conf").write_text(
                    f"port = {self.port}\n"
                    "listen_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{self.root}'\n"
                    "fsync = off\n"
                    "synchronous_commit = off\n"
                    "full_page_writes = off\n"
                    "shared_buffers = '16MB'\n"
                    "max_connections = 100\n"
                    "timezone = 'UTC'\n", encoding="utf-8")
                try:
                    self._run("pg_ctl", "-D", str(self.datadir), "-l",
                              str(self.root / "server.log"), "-w", "-t", "60", "start")
                    break
                except RuntimeError:
                    if attempt == attempts - 1:
                        raise
            self.started = True
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.perf_counter() - t0
        return self

    def stop(self) -> None:
        if self.root is None:
            return
        try:
            if self.started:
                self.started = False
                with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
                    self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
            atexit.unregister(self.stop)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- databases --------------------------------------------------------------------------

    def dsn(self, dbname: str = "postgres") -> str:
        """A libpq connection string (for psycopg.connect)."""
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={dbname}"

    def url(self, dbname: str) -> str:
        """The SQLAlchemy URL of a database on this cluster."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A started cluster, stopped and deleted on exit."""
    cluster = PostgresCluster()
    with cluster:
        yield cluster
