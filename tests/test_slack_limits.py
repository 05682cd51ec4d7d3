"""What the bot posts stays within Slack's documented limits, and user text it repeats stays inert."""

from __future__ import annotations

from bot.acknowledgements import ECHO_LIMIT
from bot.replies import RESPONSE_URL_POSTS
from tests.conftest import RunningBot
from tests.fake_openai import Reply, ScriptedOpenAI
from tests.fake_slack import FakeSlack
from tests.slack_requests import slash_command

CONTEXT_TEXT_LIMIT = 3000  # characters of one mrkdwn element in a context block
SECTION_TEXT_LIMIT = 3000
BLOCKS_PER_MESSAGE = 50


def finished(running_bot: RunningBot) -> None:
    assert running_bot.bot.answerer.wait_idle(30), "the bot did not finish its work"


def test_a_tool_request_cannot_make_the_bot_broadcast_or_disguise_a_link(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    # As Slack sends a slash command's text: `<`, `>` and `&` HTML-escaped.
    hostile = "x &lt;!channel&gt; &lt;https://evil.example|Click here&gt; &lt;@U0BOSS&gt; `code` end"
    model.then(Reply(text="Done."))
    running_bot.send(slash_command("/tool", hostile, channel_id=channel_id, response_url=slack.response_url("h")))

    [post] = slack.wait_for_responses(1, name="h")
    echo = post.payload["blocks"][0]["elements"][0]["text"]
    assert echo.startswith("<@U0001> asked `/tool ")  # the asker's own mention is the bot's
    user_part = echo.removeprefix("<@U0001> asked ")
    assert "<" not in user_part and ">" not in user_part, "no live mention, broadcast or link from the user"
    assert "&lt;!channel&gt;" in user_part and "Click here" in user_part
    assert user_part.count("`") == 2, "the user's backticks cannot end the code span"


def test_a_huge_tool_request_keeps_the_echo_and_the_posts_within_slacks_limits(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    long_answer = "\n".join(f"line {index}: " + "word " * 40 for index in range(300))  # ~65,000 characters
    model.then(Reply(text=long_answer))
    running_bot.send(slash_command("/tool", "y" * 50_000, channel_id=channel_id, response_url=slack.response_url("b")))
    slack.wait_for_responses(1, name="b")
    finished(running_bot)

    posts = slack.responses("b")
    echo = posts[0].payload["blocks"][0]["elements"][0]["text"]
    assert len(echo) <= ECHO_LIMIT + 40 < CONTEXT_TEXT_LIMIT
    assert 1 < len(posts) <= RESPONSE_URL_POSTS
    sections = [block for post in posts for block in post.payload["blocks"] if block["type"] == "section"]
    assert all(len(post.payload["blocks"]) <= BLOCKS_PER_MESSAGE for post in posts)
    assert all(len(block["text"]["text"]) <= SECTION_TEXT_LIMIT for block in sections)
    delivered = "\n".join(block["text"]["text"] for block in sections)
    assert [line for line in delivered.split("\n") if line.startswith("line ")][-1].startswith("line 299:")
    assert delivered.count("line 150:") == 1, "every line delivered once"
