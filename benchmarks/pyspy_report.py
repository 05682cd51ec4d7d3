"""Reading py-spy's raw samples of the bot: what each thread was doing, and call trees in ms per answer.

py-spy's raw format is one line per distinct stack: `thread (tid): name;frame;...;frame count`, frames
`function (file:line)` from the root. On this Python, py-spy sometimes loses the outer frames of a stack
(the thread runs generator or coroutine code, e.g. psycopg's); such samples of a worker thread are
classified by their innermost frame and shown as "(truncated stack)".
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

WAITING = ("select", "readinto", "recv", "recv_into", "poll", "wait", "acquire", "_wait_for_tstate_lock")
KEPT_PACKAGES = ("bot/", "agent/", "tools/", "pixeltable/", "openai/", "slack_sdk/", "tiktoken/")
NOISE = ("spanned.<locals>", "pixeltable/telemetry.py", "retry_loop.<locals>")
ONE_TIME = ("warm_up (", "open_channel_agent (", "_find_and_load (", "get_encoding (", "Env.create_client (")


@dataclass(frozen=True)
class Stack:
    thread: str
    frames: tuple[str, ...]  # root first, as `function (file:line)`
    count: int

    @property
    def leaf(self) -> str:
        return self.frames[-1] if self.frames else ""

    @property
    def truncated(self) -> bool:
        return not self.frames or not self.frames[0].startswith("Thread._bootstrap ")

    def has(self, text: str) -> bool:
        return any(text in frame for frame in self.frames)


def read_samples(path: Path) -> list[Stack]:
    stacks = []
    for line in path.read_text().splitlines():
        text, _, count = line.rpartition(" ")
        thread, *frames = text.split(";")
        stacks.append(Stack(thread.partition(": ")[2], tuple(frames), int(count)))
    return stacks


def retry_sleep_frames() -> set[str]:
    """`file:line)` of Pixeltable's `time.sleep(random.uniform(0.1, 0.5))` after a failed lock attempt."""
    spec = importlib.util.find_spec("pixeltable.catalog.catalog")
    assert spec is not None and spec.origin is not None
    lines = Path(spec.origin).read_text().splitlines()
    return {f"catalog/catalog.py:{n})" for n, line in enumerate(lines, 1) if "time.sleep(random.uniform" in line}


RETRY_SLEEPS = retry_sleep_frames()


def is_waiting(frame: str) -> bool:
    return frame.partition(" (")[0].rsplit(".", 1)[-1] in WAITING


def activity(stack: Stack) -> str:
    """What a thread was doing in one sample, judged from its stack."""
    leaf = stack.leaf
    if any(leaf.endswith(frame) for frame in RETRY_SLEEPS):
        return "Pixeltable lock retry sleep (0.1-0.5 s after a NOWAIT lock failed)"
    if stack.has("(openai/") or stack.has("chat_completions (pixeltable/functions/openai.py"):
        return "model: OpenAI client, Pixeltable scheduler (CPU)"
    if leaf.startswith("EpollSelector.select ") and stack.has("BaseEventLoop"):
        return "model: waiting for the HTTP answer (Pixeltable's event loop idle)"
    if "psycopg/" in leaf:
        return "Postgres: statements and round trips"
    if stack.has("(slack_sdk/"):
        return "Slack Web API calls (reactions, postMessage, response_url)"
    if leaf.startswith("ChannelAgents.get "):
        return "waiting for the agent cache lock (another channel's agent being opened)"
    return "other waiting" if is_waiting(leaf) else "Python CPU (bot, agent, Pixeltable, SQLAlchemy)"


def is_one_time(stack: Stack) -> bool:
    return any(marker in frame for frame in stack.frames for marker in ONE_TIME)


# The bot's threads (named in `bot.app` and by its libraries) and what each does for an answer.
THREAD_GROUPS = {
    "pixelbot-loop": "event loop (answers' coroutines, the model call, the OpenAI client)",
    "pixelbot-storage": "storage thread (Pixeltable: reading memory, storing turns, opening agents)",
    "pixelbot-catalog": "catalog thread (new channels' tables)",
    "pixelbot-io": "I/O threads (Slack calls, inbox updates, kept-turn prompts)",
    "pixelbot-inbox": "inbox writers (storing requests before the ack)",
    "waitress": "request threads (edge, Bolt, acknowledging)",
}
IDLE_LEAVES = (
    "_worker (concurrent/futures/thread.py",
    "GroupWriter._run (bot/group_commit.py",  # waiting for rows to write
    "Condition.wait (threading.py",
    "EpollSelector.select (",
)


def is_busy(stack: Stack) -> bool:
    """Whether the thread was working for a request (not parked waiting for work or for I/O)."""
    return bool(stack.frames) and not stack.leaf.startswith(IDLE_LEAVES) and not is_waiting(stack.leaf)


def busy_in(stacks: list[Stack], thread_prefix: str) -> list[Stack]:
    return [s for s in stacks if s.thread.startswith(thread_prefix) and is_busy(s)]


def select(stacks: list[Stack], thread_prefix: str, inside: str) -> list[Stack]:
    return [s for s in stacks if s.thread.startswith(thread_prefix) and s.has(inside)]


# -- printing ----------------------------------------------------------------------------------------
def print_activities(stacks: Iterable[Stack], scale: float, title: str) -> None:
    by_activity: Counter[str] = Counter()
    for stack in stacks:
        by_activity[activity(stack)] += stack.count
    print(f"  {title}: {sum(by_activity.values()) * scale:.1f} ms")
    for name, count in by_activity.most_common():
        print(f"{count * scale:9.1f}  {name}")


def short(frame: str) -> str:
    """`Agent.respond (agent/agent.py)`, `TableVersion._insert (pixeltable)`: no line, package only for libraries."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0].rstrip(")")
    package = path if path.startswith(("bot/", "agent/", "tools/")) else path.split("/", 1)[0]
    return f"{name} ({package})" if where else name


def readable_frames(stack: Stack) -> list[str]:
    """The frames worth reading: our code and the main libraries, plus the leaf."""
    frames = stack.frames
    kept = [f for f in frames[:-1] if any(f"({p}" in f for p in KEPT_PACKAGES) and not any(n in f for n in NOISE)]
    kept = [short(frame) for frame in [*kept, frames[-1]]]
    return ["(truncated stack)", kept[-1]] if stack.truncated else kept


@dataclass
class Node:
    count: int = 0
    children: dict[str, Node] = field(default_factory=dict)


def call_tree(stacks: Iterable[Stack]) -> Node:
    tree = Node()
    for stack in stacks:
        node = tree
        node.count += stack.count
        for frame in readable_frames(stack):
            node = node.children.setdefault(frame, Node())
            node.count += stack.count
    return tree


def print_tree(node: Node, scale: float, threshold: float, depth: int = 1, max_depth: int = 9) -> None:
    """Children above `threshold` ms; a chain of sole children is one line (`a > b > … > z`)."""
    for name, child in sorted(node.children.items(), key=lambda item: -item[1].count):
        if child.count * scale < threshold or depth > max_depth:
            continue
        chain = [name]
        while child.children and max(c.count for c in child.children.values()) >= 0.97 * child.count:
            sub_name, child = max(child.children.items(), key=lambda item: item[1].count)
            chain.append(sub_name)
        label = " > ".join(chain if len(chain) <= 4 else [*chain[:2], "…", *chain[-2:]])
        print(f"{child.count * scale:9.1f}  {'  ' * depth}{label}")
        print_tree(child, scale, threshold, depth + 1, max_depth)


def report(path: Path, answers: int, rate: int, threshold: float, steady: bool) -> None:
    """Print a phase's figures: each thread group's busy time per answer, by activity, and the storage
    thread's call tree; `steady`: set the one-time costs of first answers (imports, agent opening) aside."""
    stacks = read_samples(path)
    scale = 1000 / rate / answers  # samples -> ms per answer
    if steady:
        once = sum(s.count for s in stacks if is_busy(s) and is_one_time(s))
        print(f"  one-time costs of first answers (imports, agent opening), set aside: {once * 1000 / rate:.0f} ms")
        stacks = [s for s in stacks if not is_one_time(s)]
    for prefix, title in THREAD_GROUPS.items():
        print_activities(busy_in(stacks, prefix), scale, f"{title}, busy per answer")
    print(f"  storage thread's call tree (ms per answer, entries >= {threshold} ms):")
    print_tree(call_tree(busy_in(stacks, "pixelbot-storage")), scale, threshold)
