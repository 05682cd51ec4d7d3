"""The test harness's own isolation: what one test changes must not leak into the next."""

from __future__ import annotations

import os
import re

import httpx

from tests.conftest import bot_environment, restored_process_state
from tests.fake_openai import Reply, ScriptedOpenAI
from tests.fake_slack import FakeSlack


def ask(server: ScriptedOpenAI, text: str) -> str:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    response = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=10)
    return str(response.json()["choices"][0]["message"]["content"])


def test_scripted_model_reset_forgets_everything_a_test_scripted() -> None:
    with ScriptedOpenAI() as server:
        server.delay = 5.0
        server.then(Reply(text="queued"))
        server.on(lambda body: True, Reply(text="ruled"))
        server.respond_with(lambda body: Reply(text="default"))
        server.spec_errors.append("left over")

        server.reset()

        assert server.delay == 0.0
        assert server.spec_errors == [] and server.requests == []
        assert ask(server, "hi") == "echo: hi"


def test_process_state_is_restored_after_a_block_that_changes_it() -> None:
    os.environ["PIXELBOT_TEST_EXISTING"] = "before"
    try:
        with restored_process_state():
            os.environ["PIXELBOT_TEST_ADDED"] = "added"
            os.environ["PIXELBOT_TEST_EXISTING"] = "changed"

        assert "PIXELBOT_TEST_ADDED" not in os.environ
        assert os.environ["PIXELBOT_TEST_EXISTING"] == "before"
    finally:
        del os.environ["PIXELBOT_TEST_EXISTING"]


def test_every_bot_of_a_test_shares_the_tests_own_namespace(namespace: str, slack_server: FakeSlack) -> None:
    with ScriptedOpenAI() as model:
        first, second = bot_environment(slack_server, model), bot_environment(slack_server, model)

    assert re.fullmatch(r"pixelbot_t[0-9a-f]{12}", namespace)
    assert first["PIXELBOT_NAMESPACE"] == second["PIXELBOT_NAMESPACE"] == namespace
