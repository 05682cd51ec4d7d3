"""`ThreadStatus` against the test Slack server, without a bot: the status line and its updates."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_sdk import WebClient

from bot.progress import THINKING, USING_TOOLS, ThreadStatus
from tests.fake_slack import FakeSlack


def test_the_status_says_which_tools_run_once_it_shows() -> None:
    with FakeSlack() as slack, ThreadPoolExecutor(2) as pool:
        client = WebClient(token="xoxb-test", base_url=slack.base_url)

        async def main() -> None:
            loop = asyncio.get_running_loop()

            async def run(function: Callable[[], Any]) -> Any:
                return await loop.run_in_executor(pool, function)

            async with ThreadStatus(client, run, "C0STATUS", "1.000001", "1.000001", delay=0.0) as status:
                while not slack.calls("assistant.threads.setStatus"):
                    await asyncio.sleep(0.01)  # polling the server, up to the test's timeout
                status.using(["calculate", "calculate", "clock"])

        asyncio.run(main())
        assert [call.params["status"] for call in slack.calls("assistant.threads.setStatus")] == [
            THINKING,
            USING_TOOLS.format(tools="calculate, clock"),
        ]
        assert slack.spec_errors == []
