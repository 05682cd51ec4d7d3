"""The tutorial's own script, run as separate processes against one Pixeltable home."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.fake_openai import Reply, ScriptedOpenAI, has_tool_results

REPO = Path(__file__).resolve().parents[1]


def run_tutorial(home: Path, base_url: str) -> list[str]:
    env = {**os.environ, "PIXELTABLE_HOME": str(home), "OPENAI_BASE_URL": base_url, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "tutorial.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines()[-2:]


def test_tutorial_runs_twice_and_keeps_memory(model: ScriptedOpenAI, tmp_path: Path, fresh_home: Path) -> None:
    model.on(
        lambda body: "tools" in body and not has_tool_results(body),
        Reply(tool_calls=[("say_hello", {"name": "Alice"})]),
    )
    model.on(has_tool_results, lambda body: Reply(text=f"Done: {body['messages'][-1]['content']}"))

    first = run_tutorial(fresh_home / "home", model.base_url)
    second = run_tutorial(fresh_home / "home", model.base_url)

    assert first == second == ["echo: Hi!", "Done: Hello, Alice!"]
    second_chat = [body for body in model.requests if "tools" not in body][-1]
    assert [m["content"] for m in second_chat["messages"][1:]] == ["Hi!", "echo: Hi!", "Hi!"]
