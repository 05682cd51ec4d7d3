"""The newest turns kept in memory by a sole writer: the same prompts as reading storage, bounded."""

from __future__ import annotations

import uuid

from agent import Agent, ContextLimits, Request, TurnKind
from agent.context import Turn
from agent.memory_version import MemoryVersion
from agent.recent import RecentTurns
from tests.fake_openai import ScriptedOpenAI

SYSTEM = "sys"
TOP, THREAD, OTHER_THREAD = "", "1700000000.000100", "1700000000.000900"


def turns(*contents: str) -> list[Turn]:
    return [Turn("user", content, f"r-{content}") for content in contents]


def test_the_window_keeps_the_newest_turns_of_a_known_conversation_only() -> None:
    recent = RecentTurns(max_messages=3)
    recent.add("unknown", "r1", turns("never read"))
    assert recent.get("unknown") is None, "a conversation never read from storage is not guessed"

    recent.put(TOP, turns("a", "b"))
    recent.add(TOP, "r-c", turns("c", "d"))

    assert [turn.content for turn in recent.get(TOP) or []] == ["b", "c", "d"]


def test_a_thread_named_after_a_new_turn_is_read_again() -> None:
    recent = RecentTurns(max_messages=5)
    recent.put(THREAD, turns("reply"))
    recent.add(TOP, THREAD, turns("the thread's first message"))

    assert recent.get(THREAD) is None


def test_only_the_busiest_conversations_are_kept() -> None:
    recent = RecentTurns(max_messages=5, conversations=2)
    recent.put("one", turns("1"))
    recent.put("two", turns("2"))
    recent.get("one")
    recent.put("three", turns("3"))

    assert recent.knows("one") and recent.knows("three") and not recent.knows("two")


def converse(agent: Agent) -> None:
    """Top level, a thread started by a top-level exchange, another thread, back and forth."""
    script = [
        ("top-level question", TOP, THREAD),
        ("unrelated", TOP, "1700000000.000200"),
        ("follow-up in the thread", THREAD, "1700000000.000300"),
        ("another thread", OTHER_THREAD, "1700000000.000400"),
        ("back at the top", TOP, "1700000000.000500"),
        ("thread again", THREAD, "1700000000.000600"),
        ("and again", THREAD, "1700000000.000700"),
    ]
    for text, thread, request_id in script:
        agent.respond(text, TurnKind.CHAT, thread_ts=thread, request_id=request_id)


def test_a_sole_writer_sends_exactly_the_prompts_storage_would_give(model: ScriptedOpenAI) -> None:
    limits = ContextLimits(max_messages=4)
    converse(Agent(f"test_{uuid.uuid4().hex[:12]}", SYSTEM, limits=limits))
    from_storage = [request["messages"] for request in model.requests]
    model.reset()

    converse(Agent(f"test_{uuid.uuid4().hex[:12]}", SYSTEM, limits=limits, sole_writer=True))

    assert [request["messages"] for request in model.requests] == from_storage


def test_a_sole_writer_reads_a_known_conversation_without_storage(model: ScriptedOpenAI, agent_name: str) -> None:
    agent = Agent(agent_name, SYSTEM, sole_writer=True)
    agent.chat("first")
    next_turn = Request("second")
    assert not agent.needs_storage(next_turn)
    # A row written behind the sole writer's back is not seen: the turns come from memory.
    Agent(agent_name, SYSTEM).remember("x", "user", "written elsewhere", TurnKind.CHAT, user="U2", thread_ts="")

    agent.respond(next_turn.message, TurnKind.CHAT, request_id=next_turn.request_id)

    assert [m["content"] for m in model.requests[-1]["messages"][1:]] == ["first", "echo: first", "second"]
    assert Agent(agent_name, SYSTEM).needs_storage(next_turn), "an agent that is not the sole writer always reads"


def test_an_agent_sharing_its_memory_keeps_turns_until_another_writer_changes_it(
    model: ScriptedOpenAI, agent_name: str
) -> None:
    """Two agent objects on one memory stand for two processes: each keeps the turns it read or wrote,
    and reads storage again only after the other (or anyone) wrote."""
    theirs = Agent(agent_name, SYSTEM)
    theirs.chat("hello")
    ours = Agent(agent_name, SYSTEM)
    reads: list[str] = []
    stored_turns = ours._stored_turns

    def counted(thread_ts: str) -> list[Turn]:
        reads.append(thread_ts)
        return stored_turns(thread_ts)

    ours._stored_turns = counted  # type: ignore[method-assign]

    ours.chat("first")
    ours.chat("second")
    assert reads == [TOP], "the conversation was read once, then kept"

    theirs.chat("from elsewhere")
    ours.chat("third")
    Agent(agent_name, SYSTEM).remember("x", "user", "stored elsewhere", TurnKind.CHAT, user="U2", thread_ts="")
    ours.chat("fourth")

    assert reads == [TOP, TOP, TOP], "read again after each change made by another writer, and only then"
    assert [m["content"] for m in model.requests[-1]["messages"][1:]] == [
        "hello", "echo: hello", "first", "echo: first", "second", "echo: second",
        "from elsewhere", "echo: from elsewhere", "third", "echo: third", "stored elsewhere", "fourth",
    ]  # fmt: skip


def test_a_write_is_known_to_be_the_only_change_only_if_nobody_wrote_in_between(agent_name: str) -> None:
    Agent(agent_name, SYSTEM).remember("r0", "user", "hello", TurnKind.CHAT, user="U1", thread_ts="")
    memory = Agent(agent_name, SYSTEM).tables.memory
    version = MemoryVersion.of(memory)
    assert version is not None
    assert not version.unchanged(), "nothing is known at first"
    assert version.unchanged()

    Agent(agent_name, SYSTEM).remember("r1", "user", "ours", TurnKind.CHAT, user="U1", thread_ts="")
    assert version.wrote(), "one write since the version was known"
    assert version.unchanged()

    Agent(agent_name, SYSTEM).remember("r2", "user", "theirs", TurnKind.CHAT, user="U2", thread_ts="")
    Agent(agent_name, SYSTEM).remember("r3", "user", "ours again", TurnKind.CHAT, user="U1", thread_ts="")
    assert not version.wrote(), "another write came in between"
    assert version.unchanged(), "the version after both is known now"


def test_a_turn_kept_already_is_not_kept_twice() -> None:
    recent = RecentTurns(max_messages=5)
    recent.put(TOP, turns("a", "b"))
    recent.add(TOP, "r-b", turns("b"))  # a listened message taken in again after a restart

    assert [turn.content for turn in recent.get(TOP) or []] == ["a", "b"]


def test_an_edit_or_deletion_reaches_the_thread_its_message_started(model: ScriptedOpenAI, agent_name: str) -> None:
    agent = Agent(agent_name, SYSTEM, sole_writer=True)
    agent.remember(THREAD, "user", "the plan is A", TurnKind.CHAT, user="U1", thread_ts="")
    agent.chat("what is the plan?", thread_ts=THREAD)

    assert agent.edit(THREAD, "the plan is B")
    agent.chat("and now?", thread_ts=THREAD)
    assert "the plan is B" in [m["content"] for m in model.requests[-1]["messages"]]

    assert agent.erase(THREAD)
    agent.chat("and now?", thread_ts=THREAD)
    assert "the plan is B" not in [m["content"] for m in model.requests[-1]["messages"]]
