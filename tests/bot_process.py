"""The bot as a separate process (`python -m bot serve`), for restart, crash and start-up tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve_until_it_exits(env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run `pixelbot serve` with exactly `env` (plus the repository on PYTHONPATH) until it exits by
    itself, as it must on bad configuration; its output is captured."""
    return subprocess.run(
        [sys.executable, "-m", "bot", "serve"],
        env={**env, "PYTHONPATH": str(REPO)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class BotProcess:
    """A `pixelbot serve` process on a free port, with its output kept in `log_path`."""

    def __init__(self, env: dict[str, str], log_path: Path, ready: Callable[[], bool] | None = None) -> None:
        """`ready` tells `start()` the bot is up; by default `/healthz` answers 200 (a Socket Mode bot has
        no HTTP port: pass e.g. `FakeSocketMode.connected`)."""
        self.port = free_port()
        self.env = {**os.environ, **env, "PORT": str(self.port), "PYTHONPATH": str(REPO)}
        self.log_path = log_path
        self.ready = ready
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def start(self, timeout: float = 90.0) -> BotProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bot", "serve"], env=self.env, cwd=REPO, stdout=log, stderr=log
            )
        self._wait_until_healthy(timeout)
        return self

    def receiver_pid(self) -> int | None:
        """The PID of its receiving process (`bot.receiver`), if it runs one."""
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        for child in map(int, children):
            with contextlib.suppress(OSError):
                if b"bot.receiver" in Path(f"/proc/{child}/cmdline").read_bytes():
                    return child
        return None

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def _wait_until_healthy(self, timeout: float) -> None:
        ready = self.ready or self._healthy
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"bot exited with {self.process.returncode}:\n{self.log()}")
            if ready():
                return
            time.sleep(0.1)
        raise AssertionError(f"bot not healthy within {timeout}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() else ""
