"""A throwaway PostgreSQL server for the tests: ``postgres`` (session) and ``postgres_url`` (a fresh database).

The server is Debian's PostgreSQL binaries (``pg_config --bindir``, else
/usr/lib/postgresql/15/bin: ``initdb``, ``pg_ctl``, ``postgres``), a cluster made by ``initdb``
in a new folder under the system's temporary folder, listening on a free loopback port and on a
unix socket in that folder, with password (scram-sha-256) logins for the user ``fastmlp``. It
is stopped (``pg_ctl stop -m immediate``) and its folder removed at the end of the session,
whether the tests passed or not.

PostgreSQL refuses to run as root, and CI runs as root: then the server runs as the ``postgres``
system user (created with ``useradd --system`` when it does not exist), through ``runuser``,
and the folder is given to it. Where the binaries or the ``psycopg`` driver are missing the
tests that need the server are skipped with the reason; ``FASTMLP_REQUIRE_POSTGRES=1`` (as
``.ci/run`` sets it) turns that skip into a failure.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

USER, PASSWORD = "fastmlp", "pg-test-secret"
SYSTEM_USER = "postgres"


def _no_postgres(reason: str):
    if os.environ.get("FASTMLP_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{reason}; FASTMLP_REQUIRE_POSTGRES=1 says the PostgreSQL tests must run", pytrace=False)
    pytest.skip(reason)


def find_bindir() -> Path | None:
    """The folder of initdb, pg_ctl and postgres, or None."""
    candidates = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(Path(out.stdout.strip()))
    candidates.append(Path("/usr/lib/postgresql/15/bin"))
    for folder in candidates:
        if all((folder / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    bindir: Path
    root: Path
    port: int
    as_user: list[str]  # the command prefix that runs a program as the server's user

    def run(self, exe: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*self.as_user, str(self.bindir / exe), *args], capture_output=True, text=True,
                              check=check, timeout=120)

    def url(self, database: str, password: str = PASSWORD, driver: str = "postgresql") -> str:
        return f"{driver}://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its URL (with the password)."""
        import psycopg
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD, dbname="postgres",
                             autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    """A running throwaway PostgreSQL server (see the module's docstring)."""
    bindir = find_bindir()
    if bindir is None:
        _no_postgres("PostgreSQL server binaries not found (pg_config --bindir, /usr/lib/postgresql/15/bin)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _no_postgres("the psycopg driver is not installed (pip install -e '.[postgres]')")
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
                           check=True, capture_output=True)
        as_user = ["runuser", "-u", SYSTEM_USER, "--"]
    root = Path(tempfile.mkdtemp(prefix="fastmlp-pg-"))
    server = PostgresServer(bindir, root, free_port(), as_user)
    data, log = root / "data", root / "server.log"
    try:
        (root / "pw").write_text(PASSWORD + "\n")
        if as_user:
            shutil.chown(root, SYSTEM_USER)
            shutil.chown(root / "pw", SYSTEM_USER)
        server.run("initdb", "-D", str(data), "-U", USER, "--pwfile", str(root / "pw"), "--auth=scram-sha-256",
                   "--no-sync", "-E", "UTF8")
        options = (f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        started = server.run("pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start",
                             check=False)
        if started.returncode != 0:
            text = log.read_text(errors="replace") if log.exists() else started.stderr
            pytest.fail(f"PostgreSQL did not start: {text.strip()[-500:]}", pytrace=False)
        yield server
    finally:
        if data.exists():
            server.run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres) -> str:
    """The URL (with the password) of a new empty database on the session's server."""
    return postgres.create_database()
