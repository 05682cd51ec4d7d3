"""Throwaway PostgreSQL servers (Debian's package) for tests of pixelbot on an external database.

Pixeltable runs an embedded server unless `PIXELTABLE_DB_CONNECT_STR` names another; these servers are the
other one, so tests can share one database between bot processes and restart it under them. PostgreSQL
refuses to run as root, so as root its programs run as the `postgres` user the package creates.
`scripts/ensure-postgres.sh` installs the package; without it the fixtures skip.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import TupleRow

from tests.bot_process import free_port

POSTGRES_ROOT = Path("/usr/lib/postgresql")
SYSTEM_USER = "postgres"  # created by Debian's package; also the name of each cluster's superuser
ROLE = "pixelbot"  # an ordinary role owning the database, as a production deployment has
DATABASE = "pixelbot"
READY_TIMEOUT = 60.0
# Durability is not under test; without fsync a cluster starts and stops in well under a second.
SERVER_SETTINGS = ("listen_addresses=127.0.0.1", "fsync=off", "synchronous_commit=off", "full_page_writes=off")


def find_postgres_bin() -> Path | None:
    """The bin directory of the newest installed server (with `postgres` and `initdb`), or None."""
    found = [path.parent for path in POSTGRES_ROOT.glob("*/bin/postgres") if (path.parent / "initdb").is_file()]
    return max(found, key=lambda bin_dir: [int(n) for n in re.findall(r"\d+", bin_dir.parent.name)], default=None)


def unavailable_reason() -> str | None:
    """Why no server can be started here (for a skip), or None if one can."""
    if find_postgres_bin() is None:
        return f"no PostgreSQL server in {POSTGRES_ROOT} (scripts/ensure-postgres.sh installs Debian's, as root)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            return f"running as root, and there is no {SYSTEM_USER!r} user to run PostgreSQL as"
    return None


class PostgresServer:
    """A private cluster on 127.0.0.1:`port`, unix sockets in its temporary directory; initdb on first start.

    `url` (for `PIXELTABLE_DB_CONNECT_STR`) logs in with a password as an ordinary role that owns the database,
    so the tests see the privileges a production deployment has, not a superuser's.
    """

    def __init__(self, bin_dir: Path | None = None, database: str = DATABASE) -> None:
        found = bin_dir or find_postgres_bin()
        if found is None:
            raise RuntimeError(unavailable_reason())
        self.bin_dir = found
        self.database = database
        self.port = free_port()
        self.password = secrets.token_hex(16)
        self.directory = Path(tempfile.mkdtemp(prefix="pixelbot-pg-"))
        self.data = self.directory / "data"
        self.log_path = self.directory / "server.log"
        self.url = f"postgresql+psycopg://{ROLE}:{self.password}@127.0.0.1:{self.port}/{database}"
        self.running = False

    def start(self) -> PostgresServer:
        """Start the server (creating the cluster, role and database the first time) and wait until it answers."""
        if self.running:
            return self
        first_start = not self.data.exists()
        if first_start:
            self._initdb()
        options = " ".join([f"-p {self.port}", f"-k {self.directory}", *(f"-c {s}" for s in SERVER_SETTINGS)])
        timeout = str(int(READY_TIMEOUT))
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log_path), "-o", options, "-w", "-t", timeout)
        self.running = True
        self._wait_until_ready()
        if first_start:
            self._create_database()
        return self

    def stop(self) -> None:
        """Stop the server ("fast": open connections are cut, as when a database host goes down)."""
        if self.running:
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", str(int(READY_TIMEOUT)))
            self.running = False

    def restart(self) -> None:
        """A real stop and start of the server process, as in a database restart or failover."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and delete its files."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def admin_connection(self, database: str = "postgres") -> psycopg.Connection[TupleRow]:
        """An autocommit superuser connection, for setting up or inspecting the server."""
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=SYSTEM_USER,
            password=self.password,
            dbname=database,
            autocommit=True,
            connect_timeout=5,
        )

    def log(self) -> str:
        """The end of the server's log, for failure messages."""
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _initdb(self) -> None:
        """Create the cluster: password (scram) logins over TCP, trust on its private unix sockets."""
        password_file = self.directory / "password"
        password_file.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.directory, SYSTEM_USER)
            shutil.chown(password_file, SYSTEM_USER)
        self._run(
            "initdb",
            *("-D", str(self.data), "-U", SYSTEM_USER, f"--pwfile={password_file}"),
            *("--auth-host=scram-sha-256", "--auth-local=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"),
        )
        password_file.unlink()

    def _create_database(self) -> None:
        """The role and database an operator would create; collation as Pixeltable's embedded server uses."""
        with self.admin_connection() as connection:
            connection.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(ROLE), sql.Literal(self.password))
            )
            connection.execute(
                sql.SQL(
                    "CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C.UTF-8'"
                ).format(sql.Identifier(self.database), sql.Identifier(ROLE))
            )

    def _wait_until_ready(self) -> None:
        """Poll with real logins until the server accepts them; pg_ctl's own wait does not cover TCP logins."""
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                self.admin_connection().close()
                return
            except psycopg.OperationalError as error:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"PostgreSQL not ready within {READY_TIMEOUT}s: {error}\n{self.log()}"
                    ) from error
            time.sleep(0.05)

    def _run(self, program: str, *arguments: str) -> None:
        """Run one of the server's programs, as the `postgres` user when we are root."""
        as_system_user = ["runuser", "-u", SYSTEM_USER, "--"] if os.geteuid() == 0 else []
        command = [*as_system_user, str(self.bin_dir / program), *arguments]
        result = subprocess.run(command, capture_output=True, text=True, timeout=READY_TIMEOUT + 30, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{program} exited with {result.returncode}: {result.stderr.strip()}\n{self.log()}")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One server for the whole run (tests isolate by table or agent name); skips, saying why, if there is none."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres: PostgresServer) -> str:
    """The session server's connect string, for `PIXELTABLE_DB_CONNECT_STR`."""
    return postgres.url
