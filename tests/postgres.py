"""A throwaway PostgreSQL server (Debian's package) for tests of pixelbot on an external database.

The tests run as root, which PostgreSQL refuses, so the server runs as the `postgres` system user in a
temporary directory, on a free port of 127.0.0.1 only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bot_process import free_port

DATABASE = "pixelbot"


def find_postgres_bin() -> Path | None:
    """The bin directory of the newest installed PostgreSQL server, if any."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return candidates[-1].parent if candidates else None


class PostgresServer:
    """initdb, start, stop and restart of a private cluster; `url` is a Pixeltable connect string."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="pixelbot-pg-"))
        self.data = self.directory / "data"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, program: str, *arguments: str) -> None:
        """Run one of the server's programs as the `postgres` user (when we are root)."""
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        command = [*as_postgres, str(self.bin_dir / program), *arguments]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> PostgresServer:
        first_start = not self.data.exists()
        if first_start:
            if os.geteuid() == 0:
                shutil.chown(self.directory, "postgres")
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.directory / "log"), "-w", "start")
        if first_start:
            self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", DATABASE)
        return self

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def restart(self) -> None:
        """A real stop and start of the server process, as when a database is restarted or fails over."""
        self.stop()
        self.start()

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A running PostgreSQL server for the session, or a skip saying why there is none."""
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server installed (scripts/ensure-postgres.sh installs Debian's)")
    server = PostgresServer(bin_dir).start()
    yield server
    server.stop()
    server.remove()
