"""Pixeltable 0.7.21 starts an HTTP server rooted at `/` in every process; no pixelbot process may run it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pixeltable.env import Env

from tests.bot_process import BotProcess
from tests.conftest import bot_environment
from tests.fake_openai import ScriptedOpenAI
from tests.fake_slack import FakeSlack


def listening_ports(pid: int) -> set[int]:
    """TCP ports the process `pid` listens on (its sockets' inodes matched with /proc/net/tcp*)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = str(fd.readlink()) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # state LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def serves_files(port: int) -> bool:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/etc/hostname", timeout=2)
    except httpx.TransportError:
        return False
    return response.status_code == 200 and response.text.strip() == Path("/etc/hostname").read_text().strip()


@pytest.mark.parametrize("ack_process", ["true", "false"])
def test_the_bot_processes_listen_only_on_their_own_ports_and_serve_no_files(
    model: ScriptedOpenAI, slack: FakeSlack, fresh_home: Path, tmp_path: Path, ack_process: str
) -> None:
    """Alone, the bot listens on its port; behind its receiving process (which listens there), only on
    one port of 127.0.0.1, for what the receiver forwards."""
    env = bot_environment(slack, model, PIXELTABLE_HOME=str(fresh_home), PIXELBOT_ACK_PROCESS=ack_process)
    bot = BotProcess(env, tmp_path / "bot.log").start()
    try:
        assert bot.process is not None
        ports = listening_ports(bot.process.pid)
        receiver = bot.receiver_pid()
        receiver_ports = listening_ports(receiver) if receiver is not None else set()
    finally:
        bot.stop()

    if ack_process == "true":
        assert receiver_ports == {bot.port}
        assert len(ports) == 1 and bot.port not in ports, f"unexpected listening ports {ports}"
    else:
        assert receiver is None and ports == {bot.port}, f"unexpected listening ports {ports - {bot.port}}"
    assert not any(serves_files(port) for port in ports | receiver_ports)


def test_pixeltable_in_a_pixelbot_process_has_no_file_server(pixeltable_home: Path) -> None:
    env = Env.get()  # initialised by the tests' own use of Pixeltable, after `import agent`

    assert env._httpd is None
    assert not serves_files(int(env.http_address.rsplit(":", 1)[1]) or 1)
