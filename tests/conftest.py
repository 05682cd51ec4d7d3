"""Shared fixtures: a scripted OpenAI server and an isolated Pixeltable home for the whole run."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.runtime import configure_pixeltable
from tests.fake_openai import ScriptedOpenAI

TEST_ENV = {"OPENAI_API_KEY": "sk-test-not-a-real-key", "PIXELTABLE_VERBOSITY": "0"}


@pytest.fixture(scope="session")
def openai_server() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI() as server:
        yield server


@pytest.fixture(scope="session")
def pixeltable_home(openai_server: ScriptedOpenAI) -> Iterator[Path]:
    """One Pixeltable home per run (starting Postgres costs seconds); tests isolate by agent name."""
    with tempfile.TemporaryDirectory(prefix="pixelbot-test-") as home:
        os.environ.update(TEST_ENV, PIXELTABLE_HOME=home, OPENAI_BASE_URL=openai_server.base_url)
        configure_pixeltable(model_retries=1)
        yield Path(home)


@pytest.fixture
def model(openai_server: ScriptedOpenAI, pixeltable_home: Path) -> Iterator[ScriptedOpenAI]:
    """The scripted model, reset for this test; every request it saw must match OpenAI's spec."""
    openai_server.reset()
    yield openai_server
    assert openai_server.spec_errors == []


@pytest.fixture
def agent_name() -> str:
    return f"test_{uuid.uuid4().hex[:12]}"
