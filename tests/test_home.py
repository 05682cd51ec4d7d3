"""The App Home tab: opened by a user, published for that user (`views.publish`), listing the channels
with an agent that the user is in, and the admin commands for admins only.

End to end: signed `app_home_opened` events to the bot over HTTP, the Slack fake answering
`users.conversations` from `FakeSlack.memberships` and keeping the published views.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from slack_sdk import WebClient

from bot.channels import ChannelKey
from bot.home import CHANNELS_TTL, MAX_BLOCKS, MAX_SECTION_TEXT, SHOWN_CHANNELS, HomeTab
from tests.conftest import ADMIN_ID, RunningBot, wait_until
from tests.fake_slack import TEAM_ID, FakeSlack
from tests.slack_requests import USER_ID, app_home_opened, mention

ADMIN_COMMANDS = ("/export-memory", "/pixelbot listen", "pixelbot channels", "pixelbot export", "pixelbot import")
HOW_TO = ("@pixelbot", "`/tool &lt;request&gt;`", "Direct message", "assistant panel")


def texts(view: Mapping[str, Any]) -> str:
    """All the text of a view's blocks, one block a line."""
    return "\n".join(str(block.get("text", {}).get("text", "")) for block in view["blocks"])


def mentions(view: Mapping[str, Any]) -> set[str]:
    """The channel IDs a view mentions (`<#C…>`)."""
    text = texts(view)
    return {part.split(">", 1)[0] for part in text.split("<#")[1:]}


def published(slack: FakeSlack, user_id: str, count: int = 1) -> dict[str, Any]:
    """The `count`th Home tab published for `user_id`, once it is there."""
    wait_until(lambda: len(slack.published_views(user_id)) >= count, what=f"{count} Home tab(s) for {user_id}")
    return slack.published_views(user_id)[count - 1].view


def home_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bot.home" and r.levelno >= logging.WARNING]


def new_channel() -> str:
    """A channel no other test uses (agents of every test share one Pixeltable directory)."""
    return "C" + uuid.uuid4().hex[:10].upper()


def create_agents(running_bot: RunningBot, slack: FakeSlack, *channels: str) -> None:
    """Give each channel an agent the way users do: mention the bot there and wait for the answer stored."""
    for channel in channels:
        assert running_bot.send(mention("hello", channel=channel)).status == 200
    slack.wait_for_calls("chat.postMessage", len(channels), timeout=20)
    assert running_bot.bot.answerer.wait_idle(30)


# -- end to end ----------------------------------------------------------------------------------------------
def test_the_home_tab_explains_the_bot_and_lists_exactly_the_users_channels_with_an_agent(
    running_bot: RunningBot, slack: FakeSlack
) -> None:
    member_with_agent, other_with_agent, member_without_agent = new_channel(), new_channel(), new_channel()
    create_agents(running_bot, slack, member_with_agent, other_with_agent)
    slack.memberships[USER_ID] = [member_without_agent, member_with_agent]

    ack = running_bot.send(app_home_opened(user=USER_ID))
    view = published(slack, USER_ID)

    assert ack.status == 200
    assert view["type"] == "home"
    assert all(phrase in texts(view) for phrase in HOW_TO), texts(view)
    assert "its own" in texts(view), "says that each channel has its own agent and memory"
    assert mentions(view) == {member_with_agent}, "an agent and the user in it: nothing else"
    assert not any(command in texts(view) for command in ADMIN_COMMANDS), "not an admin"
    [asked] = slack.calls("users.conversations")
    assert asked.params["user"] == USER_ID and asked.params["types"] == "public_channel,private_channel,mpim"


def test_an_admin_sees_the_admin_commands_and_others_do_not(running_bot: RunningBot, slack: FakeSlack) -> None:
    running_bot.send(app_home_opened(user=ADMIN_ID))
    running_bot.send(app_home_opened(user=USER_ID))

    admin_view, user_view = published(slack, ADMIN_ID), published(slack, USER_ID)

    assert all(command in texts(admin_view) for command in ADMIN_COMMANDS), texts(admin_view)
    assert not any(command in texts(user_view) for command in ADMIN_COMMANDS)
    assert mentions(admin_view) == mentions(user_view) == set()
    assert "None yet" in texts(user_view), "a user in no channel with an agent is told how to get one"


def test_the_messages_tab_publishes_nothing(running_bot: RunningBot, slack: FakeSlack) -> None:
    ack = running_bot.send(app_home_opened(user="U0MESSAGES", tab="messages"))
    running_bot.send(app_home_opened(user=USER_ID))  # published after the first event was handled

    published(slack, USER_ID)

    assert ack.status == 200
    assert [view.user_id for view in slack.published_views()] == [USER_ID]
    assert [call.params["user"] for call in slack.calls("users.conversations")] == [USER_ID]


def test_the_ack_does_not_wait_for_slack(running_bot: RunningBot, slack: FakeSlack) -> None:
    release = threading.Event()

    def held(params: Mapping[str, Any]) -> Mapping[str, Any]:
        release.wait(timeout=10)
        return {"ok": True, "channels": [], "response_metadata": {"next_cursor": ""}}

    slack.set_handler("users.conversations", held)
    try:
        ack = running_bot.send(app_home_opened(user=USER_ID))
        held_at_ack = not release.is_set() and slack.published_views() == []
    finally:
        release.set()

    assert ack.status == 200 and ack.elapsed < 2 and held_at_ack
    published(slack, USER_ID)


def test_a_failing_views_publish_is_logged_and_the_bot_keeps_answering(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    slack.fail_next("views.publish", "not_enabled")

    ack = running_bot.send(app_home_opened(user=USER_ID))
    slack.wait_for_calls("views.publish", 1)
    wait_until(lambda: home_warnings(caplog) != [], what="the failure logged")
    running_bot.send(mention("still there?", channel=channel_id))
    [answer] = slack.wait_for_calls("chat.postMessage", 1)

    assert ack.status == 200
    assert len(home_warnings(caplog)) == 1 and "not_enabled" in home_warnings(caplog)[0]
    assert "Traceback" not in caplog.text
    assert answer.params["text"] == "echo: still there?"
    running_bot.send(app_home_opened(user=USER_ID))
    assert published(slack, USER_ID)["type"] == "home", "the next opening publishes it"


# -- HomeTab on its own --------------------------------------------------------------------------------------
@pytest.fixture
def pools() -> Iterator[tuple[ThreadPoolExecutor, ThreadPoolExecutor]]:
    catalog = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-catalog")
    io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="test-io")
    yield catalog, io
    io.shutdown(wait=True)
    catalog.shutdown(wait=True)


def test_a_long_membership_is_paged_and_cut_to_slacks_limits_with_shared_channels_homed_elsewhere(
    slack: FakeSlack, pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor]
) -> None:
    catalog, io = pools
    mine = [f"C{n:06d}" for n in range(450)]  # three pages of users.conversations
    with_agents = [ChannelKey(TEAM_ID, channel) for channel in mine[::5]] + [ChannelKey("T0THER", mine[1])]
    catalog_threads: list[str] = []

    def list_channels() -> list[ChannelKey]:
        catalog_threads.append(threading.current_thread().name)
        return with_agents

    slack.memberships[USER_ID] = mine
    home = HomeTab(WebClient(token="xoxb-test-token", base_url=slack.base_url), frozenset(), list_channels, catalog, io)

    home.publish(TEAM_ID, USER_ID).result(timeout=10)
    home.publish(TEAM_ID, USER_ID).result(timeout=10)

    view = slack.published_views(USER_ID)[-1].view
    assert len(slack.calls("users.conversations")) == 6, "every page, each time"
    assert len(mentions(view)) == SHOWN_CHANNELS
    assert mine[1] in mentions(view), "a channel shared with another workspace, whose memory is homed there"
    assert f"and {len(mine[::5]) + 1 - SHOWN_CHANNELS} more" in texts(view)
    assert len(view["blocks"]) <= MAX_BLOCKS
    assert all(len(block.get("text", {}).get("text", "")) <= MAX_SECTION_TEXT for block in view["blocks"])
    assert len(catalog_threads) == 1 and catalog_threads[0].startswith("test-catalog"), f"cached {CHANNELS_TTL}s"


def test_slack_errors_are_logged_never_raised(
    slack: FakeSlack, pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor], caplog: pytest.LogCaptureFixture
) -> None:
    catalog, io = pools
    slack.fail_next("users.conversations", "ratelimited_forever")
    home = HomeTab(WebClient(token="xoxb-test-token", base_url=slack.base_url), frozenset(), lambda: [], catalog, io)

    home.publish(TEAM_ID, USER_ID).result(timeout=10)

    assert home_warnings(caplog) == [f"could not publish the Home tab of {USER_ID}: ratelimited_forever"]
    assert slack.calls("views.publish") == []
