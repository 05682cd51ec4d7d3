"""The agent against the scripted OpenAI server: real `openai` client, real Pixeltable, real HTTP."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pixeltable as pxt
import pytest

from agent import Agent, AgentError, ContextLimits, ModelFailure, TurnKind
from agent.store import MEMORY_SCHEMA
from tests.fake_openai import Reply, ScriptedOpenAI, echo, has_tool_results
from tools import calculate, say_hello

SYSTEM = "You're a friendly assistant."


def memory_rows(agent: Agent) -> list[dict[str, str]]:
    memory = agent.tables.memory
    rows = memory.order_by(memory.timestamp).select(memory.role, memory.content, memory.kind).collect()
    return list(rows)


def test_chat_answers_and_remembers_both_sides(model: ScriptedOpenAI, agent_name: str) -> None:
    agent = Agent(agent_name, SYSTEM)

    assert agent.chat("Hi!") == "echo: Hi!"
    assert memory_rows(agent) == [
        {"role": "user", "content": "Hi!", "kind": "chat"},
        {"role": "assistant", "content": "echo: Hi!", "kind": "chat"},
    ]


def test_memory_is_sent_in_order_after_the_system_prompt(model: ScriptedOpenAI, agent_name: str) -> None:
    agent = Agent(agent_name, SYSTEM)
    for text in ["one", "two", "three"]:
        agent.chat(text)

    sent = model.requests[-1]["messages"]
    assert sent == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "echo: one"},
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": "echo: two"},
        {"role": "user", "content": "three"},
    ]


def test_context_is_bounded_by_message_count(model: ScriptedOpenAI, agent_name: str) -> None:
    agent = Agent(agent_name, SYSTEM, limits=ContextLimits(max_messages=3))
    for index in range(6):
        agent.chat(f"message {index}")

    sent = model.requests[-1]["messages"]
    assert [m["content"] for m in sent] == [SYSTEM, "message 4", "echo: message 4", "message 5"]


def test_context_is_bounded_by_tokens_dropping_oldest_first(model: ScriptedOpenAI, agent_name: str) -> None:
    agent = Agent(agent_name, SYSTEM, limits=ContextLimits(max_messages=50, max_tokens=60))
    for index in range(6):
        agent.chat(f"message number {index} " + "word " * 5)

    sent = model.requests[-1]["messages"]
    assert sent[0]["content"] == SYSTEM
    assert sent[-1]["content"].startswith("message number 5")
    assert 2 < len(sent) < 12, "older turns must have been dropped"
    contents = [m["content"] for m in sent[1:]]
    kept_indexes = [int(c.split()[-6]) for c in contents if c.startswith("message number")]
    assert kept_indexes == sorted(kept_indexes) and kept_indexes[-1] == 5


def test_oversized_message_is_cut_for_the_model_but_stored_whole(model: ScriptedOpenAI, agent_name: str) -> None:
    agent = Agent(agent_name, SYSTEM, limits=ContextLimits(max_input_tokens=50))
    huge = "lorem ipsum " * 5_000

    answer = agent.respond(huge, TurnKind.CHAT)

    assert answer.input_truncated
    assert len(model.requests[-1]["messages"][-1]["content"]) < 1_000
    assert memory_rows(agent)[0]["content"] == huge


def test_threads_are_separate_conversations(model: ScriptedOpenAI, agent_name: str) -> None:
    agent = Agent(agent_name, SYSTEM)
    agent.chat("in the channel")
    agent.chat("in a thread", thread_ts="1700000000.000100")

    assert [m["content"] for m in model.requests[-1]["messages"]] == [SYSTEM, "in a thread"]


def test_the_same_message_twice_gets_two_answers(model: ScriptedOpenAI, agent_name: str) -> None:
    model.then(Reply(text="first answer"), Reply(text="second answer"))
    agent = Agent(agent_name, SYSTEM)

    assert agent.chat("same") == "first answer"
    assert agent.chat("same") == "second answer"


def test_two_agents_never_see_each_others_memory(model: ScriptedOpenAI, agent_name: str) -> None:
    alpha = Agent(f"{agent_name}_alpha", SYSTEM)
    beta = Agent(f"{agent_name}_beta", SYSTEM)
    alpha.chat("alpha secret")
    beta.chat("beta question")

    beta_prompt = json.dumps(model.requests[-1])
    assert "alpha secret" not in beta_prompt
    assert [r["content"] for r in memory_rows(beta)] == ["beta question", "echo: beta question"]


def test_reopening_reuses_the_tables_and_memory(model: ScriptedOpenAI, agent_name: str) -> None:
    Agent(agent_name, SYSTEM, tools=pxt.tools(say_hello)).chat("remember me")
    reopened = Agent(agent_name, SYSTEM, tools=pxt.tools(say_hello))
    reopened.chat("again")

    assert [m["content"] for m in model.requests[-1]["messages"]][1:] == [
        "remember me",
        "echo: remember me",
        "again",
    ]


def test_tool_call_runs_tools_over_several_rounds(model: ScriptedOpenAI, agent_name: str) -> None:
    model.then(
        Reply(tool_calls=[("say_hello", {"name": "Alice"})]),
        Reply(tool_calls=[("calculate", {"expression": "6*7"}), ("say_hello", {"name": "Bob"})]),
        Reply(text="Said hello to Alice and Bob; 6*7 is 42."),
    )
    agent = Agent(agent_name, SYSTEM, tools=pxt.tools(say_hello, calculate))

    answer = agent.tool_call("Greet Alice, then Bob, and multiply 6 by 7")

    assert answer == "Said hello to Alice and Bob; 6*7 is 42."
    last_messages = model.requests[-1]["messages"]
    tool_outputs = [m["content"] for m in last_messages if m["role"] == "tool"]
    assert tool_outputs == ["Hello, Alice!", "42", "Hello, Bob!"]
    assert model.requests[0]["tool_choice"] == "auto"
    assert memory_rows(agent)[-1] == {"role": "assistant", "content": answer, "kind": "tool"}
    memory = agent.tables.memory
    [user_row, answer_row] = memory.order_by(memory.timestamp).select(memory.role, memory.calls).collect()
    assert user_row["calls"] is None, "a turn's calls are on its last row"
    calls = answer_row["calls"]
    assert [call["round"] for call in calls] == [1, 2, 3]
    assert calls[0]["model"] == "gpt-4o-mini" and calls[0]["tools"] == ["say_hello", "calculate"]
    assert calls[1]["tool_results"] == ["42", "Hello, Bob!"]
    assert (
        calls[2]["request"] == model.requests[2] and calls[2]["response"]["choices"][0]["message"]["content"] == answer
    )


def test_tool_results_pair_with_their_call_ids(model: ScriptedOpenAI, agent_name: str) -> None:
    model.then(Reply(tool_calls=[("say_hello", {"name": "Alice"}), ("say_hello", {"name": "Bob"})]))
    model.on(has_tool_results, lambda body: Reply(text="done"))
    agent = Agent(agent_name, SYSTEM, tools=pxt.tools(say_hello))

    agent.tool_call("Greet Alice and Bob")

    messages = model.requests[-1]["messages"]
    call_ids = [call["id"] for call in messages[-3]["tool_calls"]]
    results = [(m["tool_call_id"], m["content"]) for m in messages[-2:]]
    assert results == list(zip(call_ids, ["Hello, Alice!", "Hello, Bob!"], strict=True))


def test_tool_call_without_tool_use_returns_the_text(model: ScriptedOpenAI, agent_name: str) -> None:
    model.then(Reply(text="No tool needed: hello!"))
    agent = Agent(agent_name, SYSTEM, tools=pxt.tools(say_hello))

    assert agent.tool_call("Just say hi") == "No tool needed: hello!"


def test_seed_usage_says_hello_to_alice(model: ScriptedOpenAI, agent_name: str) -> None:
    model.on(lambda body: not has_tool_results(body), Reply(tool_calls=[("say_hello", {"name": "Alice"})]))
    model.on(has_tool_results, lambda body: Reply(text=body["messages"][-1]["content"]))
    agent = Agent(agent_name, SYSTEM, tools=pxt.tools(say_hello))

    assert "Hello, Alice!" in agent.tool_call("Say hello to Alice")


def test_unknown_tool_and_bad_arguments_reach_the_model_as_errors(model: ScriptedOpenAI, agent_name: str) -> None:
    model.then(
        Reply(tool_calls=[("launch_rockets", {"count": 3})]),
        Reply(tool_calls=[("say_hello", "{not json")]),
        Reply(text="Sorry, I could not do that."),
    )
    agent = Agent(agent_name, SYSTEM, tools=pxt.tools(say_hello))

    assert agent.tool_call("Launch the rockets") == "Sorry, I could not do that."
    tool_outputs = [m["content"] for m in model.requests[-1]["messages"] if m["role"] == "tool"]
    assert "no tool named 'launch_rockets'" in tool_outputs[0]
    assert tool_outputs[1].startswith("Error: the tool call could not run")


def test_tool_rounds_are_capped_then_words_are_required(model: ScriptedOpenAI, agent_name: str) -> None:
    model.on(lambda body: body.get("tool_choice") == "auto", Reply(tool_calls=[("say_hello", {"name": "Again"})]))
    model.on(lambda body: body.get("tool_choice") == "none", Reply(text="Enough greetings."))
    agent = Agent(agent_name, SYSTEM, tools=pxt.tools(say_hello), max_tool_rounds=2)

    assert agent.tool_call("Greet forever") == "Enough greetings."
    assert [body["tool_choice"] for body in model.requests] == ["auto", "auto", "none"]


@pytest.mark.parametrize(
    ("reply", "failure"),
    [
        (Reply(status=400), ModelFailure.REJECTED),
        (Reply(status=401), ModelFailure.REJECTED),
        (Reply(status=500), ModelFailure.UNAVAILABLE),
        (Reply(body="this is not JSON"), ModelFailure.BAD_RESPONSE),
        (Reply(body='{"choices": []}'), ModelFailure.BAD_RESPONSE),
    ],
)
def test_model_failure_raises_agent_error_and_keeps_the_message(
    model: ScriptedOpenAI, agent_name: str, reply: Reply, failure: ModelFailure
) -> None:
    model.respond_with(lambda body: reply)
    agent = Agent(agent_name, SYSTEM)

    with pytest.raises(AgentError) as raised:
        agent.chat("are you there?")

    assert raised.value.failure is failure
    assert memory_rows(agent) == [{"role": "user", "content": "are you there?", "kind": "chat"}]


def test_rate_limited_call_is_retried_after_retry_after(model: ScriptedOpenAI, agent_name: str) -> None:
    arrivals: list[float] = []

    def limited_once(body: dict[str, Any]) -> Reply:
        arrivals.append(time.monotonic())
        return Reply(status=429, headers={"Retry-After": "1"}) if len(arrivals) == 1 else echo(body)

    model.respond_with(limited_once)
    agent = Agent(agent_name, SYSTEM)

    assert agent.chat("hello") == "echo: hello"
    assert len(arrivals) == 2
    assert arrivals[1] - arrivals[0] >= 1.0, "the retry must wait for Retry-After"


def test_tool_schemas_sent_to_the_model_are_valid_json_schema(model: ScriptedOpenAI, agent_name: str) -> None:
    model.then(Reply(text="no tools needed"))
    Agent(agent_name, SYSTEM, tools=pxt.tools(say_hello, calculate)).tool_call("hi")

    for tool in model.requests[0]["tools"]:
        parameters = tool["function"]["parameters"]
        jsonschema.Draft202012Validator.check_schema(parameters)
        assert set(tool["function"]) == {"name", "description", "parameters"}
        assert parameters["required"] == list(parameters["properties"])
        assert parameters["additionalProperties"] is False
    hello = model.requests[0]["tools"][0]["function"]["parameters"]
    assert jsonschema.Draft202012Validator(hello).is_valid({"name": "Ada"})
    assert not jsonschema.Draft202012Validator(hello).is_valid({})


def test_an_empty_answer_under_auto_gets_a_round_asking_for_words(model: ScriptedOpenAI, agent_name: str) -> None:
    model.on(lambda body: body.get("tool_choice") == "auto", Reply(text=""))
    model.on(lambda body: body.get("tool_choice") == "none", Reply(text="Here are my words."))
    agent = Agent(agent_name, SYSTEM, tools=pxt.tools(say_hello))

    assert agent.tool_call("say something") == "Here are my words."
    assert [body["tool_choice"] for body in model.requests] == ["auto", "none"]


def test_an_empty_chat_answer_is_asked_once_more_then_reported(model: ScriptedOpenAI, agent_name: str) -> None:
    model.respond_with(lambda body: Reply(text="  "))
    agent = Agent(agent_name, SYSTEM)

    with pytest.raises(AgentError) as raised:
        agent.chat("hello?")

    assert raised.value.failure is ModelFailure.BAD_RESPONSE
    assert len(model.requests) == 2


def test_tool_call_on_an_agent_without_tools_is_an_agent_error(model: ScriptedOpenAI, agent_name: str) -> None:
    with pytest.raises(AgentError):
        Agent(agent_name, SYSTEM).tool_call("use a tool")


def test_a_thread_includes_the_exchange_that_started_it(model: ScriptedOpenAI, agent_name: str) -> None:
    agent = Agent(agent_name, SYSTEM)
    agent.respond("top-level question", TurnKind.CHAT, request_id="1700000000.000100")
    agent.respond("unrelated", TurnKind.CHAT, request_id="1700000000.000200")
    agent.respond("follow-up", TurnKind.CHAT, thread_ts="1700000000.000100", request_id="1700000000.000300")

    assert [m["content"] for m in model.requests[-1]["messages"]][1:] == [
        "top-level question",
        "echo: top-level question",
        "follow-up",
    ]


def test_resuming_an_interrupted_request_neither_repeats_nor_duplicates(model: ScriptedOpenAI, agent_name: str) -> None:
    agent = Agent(agent_name, SYSTEM)
    agent.remember("req-1", "user", "asked before the crash", TurnKind.CHAT, user="U1", thread_ts="")

    resumed = agent.respond("asked before the crash", TurnKind.CHAT, request_id="req-1", resume=True)
    again = agent.respond("asked before the crash", TurnKind.CHAT, request_id="req-1", resume=True)

    assert resumed.text == again.text == "echo: asked before the crash"
    assert len(model.requests) == 1
    assert [row["role"] for row in memory_rows(agent)] == ["user", "assistant"]


def test_agents_created_by_many_threads_at_once_are_all_usable(model: ScriptedOpenAI, agent_name: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    names = [f"{agent_name}_dir.channel_{index}" for index in range(6)]
    with ThreadPoolExecutor(6) as pool:
        agents = list(pool.map(lambda name: Agent(name, SYSTEM), names))

    assert [agent.chat("hi") for agent in agents] == ["echo: hi"] * 6


def test_an_agent_of_an_older_version_gets_the_calls_column_and_keeps_its_memory(
    model: ScriptedOpenAI, agent_name: str
) -> None:
    older_schema = {name: kind for name, kind in MEMORY_SCHEMA.items() if name != "calls"}
    pxt.create_dir(agent_name, parents=True)
    old_memory = pxt.create_table(f"{agent_name}.memory", older_schema)
    old_memory.insert(
        [{"request_id": "r0", "role": "user", "content": "stored by 0.1.0", "timestamp": datetime.now(UTC),
          "user": "U1", "thread_ts": "", "kind": "chat"}]
    )  # fmt: skip

    Agent(agent_name, SYSTEM).chat("still there?")

    assert [m["content"] for m in model.requests[-1]["messages"][1:]] == ["stored by 0.1.0", "still there?"]
    assert "calls" in Agent(agent_name, SYSTEM).tables.memory.columns()
