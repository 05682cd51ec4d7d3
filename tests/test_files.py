"""Files shared with the bot: documents become knowledge the answer cites, images reach the model, and
every file that can't be read gets a short note while the rest of the answer is still given."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pixeltable as pxt
import pytest
from click.testing import CliRunner

from agent.export import ExportFormat, export_bytes, memory_snapshot
from agent.knowledge import Knowledge
from bot.channels import ChannelKey
from bot.cli import main
from bot.forgetting import FORGET_ACTION
from tests.conftest import ADMIN_ID, RunningBot, bot_settings, serve_in_process, wait_until
from tests.fake_openai import Reply, ScriptedOpenAI
from tests.fake_slack import TEAM_ID, FakeSlack
from tests.sample_files import corrupt_pdf, docx, encrypted_pdf, pdf, png
from tests.slack_requests import block_action, dm_channel, file_deleted, mention, message, next_ts, slash_command

PAGES = ["Apples are harvested in the autumn by the orchard team.", "The bridge budget is 42 million euros for 2027."]
PDF_MIME = "application/pdf"


@pytest.fixture
def bot(model: ScriptedOpenAI, slack: FakeSlack, pixeltable_home: Path) -> Iterator[RunningBot]:
    with serve_in_process(bot_settings(slack, model, PIXELBOT_VISION="true", PIXELBOT_MAX_FILE_MB="5")) as running:
        yield running


def answers(slack: FakeSlack, channel_id: str) -> list[dict[str, Any]]:
    return [call.params for call in slack.calls("chat.postMessage") if call.params["channel"] == channel_id]


def recalled(body: dict[str, Any]) -> str:
    return "\n".join(m["content"] for m in body["messages"] if m["role"] == "system" and "Recalled" in m["content"])


def cite_the_budget(body: dict[str, Any]) -> Reply:
    """A model that cites the recalled line about the budget."""
    match = re.search(r"^\[(\d+)\][^\n]*42 million", recalled(body), re.MULTILINE)
    return Reply(text=f"It is 42 million euros [{match.group(1)}]." if match else "I don't know.")


def ask(bot: RunningBot, slack: FakeSlack, channel_id: str, text: str, files: list[dict[str, Any]]) -> dict[str, Any]:
    """A mention with `files`; the answer posted for it."""
    count = len(answers(slack, channel_id))
    bot.send(mention(text, channel=channel_id, ts=next_ts(), files=files))
    wait_until(lambda: len(answers(slack, channel_id)) > count, timeout=30, what="the answer")
    return answers(slack, channel_id)[-1]


def test_a_question_about_page_two_of_a_pdf_gets_that_page_and_a_source(
    bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    shared = slack.host_file(pdf(PAGES), "plan.pdf", PDF_MIME, "pdf")
    model.respond_with(cite_the_budget)

    post = ask(bot, slack, channel_id, "what is the bridge budget?", [shared])

    assert post["text"] == "It is 42 million euros [1]."
    [request] = model.requests
    assert "[1] From the file plan.pdf, page 2" in recalled(request) and "42 million euros" in recalled(request)
    blocks = json.loads(post["blocks"]) if isinstance(post["blocks"], str) else post["blocks"]
    [context] = [block for block in blocks if block["type"] == "context"]
    assert context["elements"][0]["text"] == f"Sources: <{shared['permalink']}|plan.pdf, page 2>"
    [download] = slack.file_downloads()
    assert download.authorization == "Bearer xoxb-test-token" and download.status == 200
    assert not model.spec_errors


def test_a_png_reaches_the_model_as_an_image_part(
    bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    shared = slack.host_file(png(), "chart.png", "image/png", "png")

    ask(bot, slack, channel_id, "what colour is this chart?", [shared])

    [request] = model.requests
    question = request["messages"][-1]
    assert question["content"][0] == {"type": "text", "text": "what colour is this chart?"}
    assert question["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert not model.spec_errors, model.spec_errors  # a valid ChatCompletionRequestMessageContentPartImage
    stored = bot.memory(channel_id).where(bot.memory(channel_id).calls != None).collect()  # noqa: E711
    kept = json.dumps(next(iter(stored))["calls"])
    assert "iVBOR" not in kept and "characters not stored" in kept, "memory keeps a mark, not the image data"


def test_a_word_document_in_a_dm_is_read(
    bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    document = docx(["The launch is on the ninth of May."], heading="Launch")
    shared = slack.host_file(
        document, "launch.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "docx"
    )
    dm = dm_channel("U0001")
    bot.send(message("when is the launch?", channel=dm, channel_type="im", files=[shared]))
    wait_until(lambda: bool(answers(slack, dm)), timeout=30, what="the answer")

    assert "ninth of May" in recalled(model.requests[0])


@pytest.mark.parametrize(
    ("make", "note"),
    [
        (lambda slack: slack.host_file(encrypted_pdf("secret"), "locked.pdf", PDF_MIME, "pdf"), "password-protected"),
        (lambda slack: slack.host_file(corrupt_pdf(), "broken.pdf", PDF_MIME, "pdf"), "not a PDF I can read"),
        (lambda slack: slack.host_file(b"", "empty.txt", "text/plain", "text"), "empty"),
        (lambda slack: slack.host_file(b"x", "tool.exe", "application/octet-stream", "binary"), "not binary"),
        (lambda slack: slack.host_file(b"x" * 10, "huge.pdf", PDF_MIME, "pdf", size=30_000_000), "up to 5 MB"),
    ],
)
def test_a_file_that_cannot_be_read_gets_a_note_and_the_answer_still_comes(
    bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str, make: Any, note: str
) -> None:
    shared = make(slack)

    post = ask(bot, slack, channel_id, "summarise this", [shared])

    assert post["text"].startswith("echo: summarise this"), "the answer is still given"
    assert note in post["text"] and shared["name"] in post["text"]
    assert Knowledge(ChannelKey(TEAM_ID, channel_id).agent_name, bot.bot.settings.kept_files).files() == []


def test_a_failed_or_redirected_download_gets_a_note(
    bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    failing = slack.host_file(pdf(PAGES), "a.pdf", PDF_MIME, "pdf")
    slack.fail_file(failing["id"], 500)
    elsewhere = slack.host_file(pdf(PAGES), "b.pdf", PDF_MIME, "pdf")
    slack.redirect_file(elsewhere["id"], "https://example.com/steal")

    post = ask(bot, slack, channel_id, "read these", [failing, elsewhere])

    assert "a.pdf: the download failed (HTTP 500)" in post["text"]
    assert "b.pdf: Slack would not let me download it" in post["text"]
    assert len(slack.file_downloads()) == 2, "one try each; the redirect is not followed"


def test_a_file_on_another_host_is_never_fetched(
    bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    shared = slack.host_file(pdf(PAGES), "c.pdf", PDF_MIME, "pdf")
    shared = dict(shared, url_private_download="https://example.com/c.pdf", url_private="https://example.com/c.pdf")

    post = ask(bot, slack, channel_id, "read this", [shared])

    assert "c.pdf: it is not stored on Slack" in post["text"]
    assert slack.file_downloads() == []


def test_a_file_deleted_in_slack_is_gone_from_memory_and_exports(
    bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    shared = slack.host_file(pdf(PAGES), "plan.pdf", PDF_MIME, "pdf")
    ask(bot, slack, channel_id, "what is the bridge budget?", [shared])
    agent_name = ChannelKey(TEAM_ID, channel_id).agent_name
    knowledge = Knowledge(agent_name, bot.bot.settings.kept_files)
    assert [info.name for info in knowledge.files()] == ["plan.pdf"]
    assert bot.bot.answerer.wait_idle(30)

    slack.delete_file(shared["id"])
    bot.send(file_deleted(shared["id"]))

    wait_until(lambda: knowledge.files() == [], timeout=30, what="the file forgotten")
    assert bot.bot.recall is not None and bot.bot.recall.indexer.wait_idle(60)
    assert bot.bot.answerer.wait_idle(30)
    stored = json.dumps([row["calls"] for row in bot.memory(channel_id).collect()])
    assert "42 million" not in stored, "no stored prompt quotes the deleted file"
    exported = export_bytes(memory_snapshot(bot.memory(channel_id)), ExportFormat.JSONL).decode()
    assert "bridge budget is 42" not in exported, "nor does the channel's export"
    recall = pxt.get_table(f"{agent_name}.recall")
    assert recall is not None
    assert not [row for row in recall.select(recall.text).collect() if "42 million" in row["text"]]
    assert not (bot.bot.settings.kept_files / agent_name / shared["id"]).exists()


def test_in_a_listening_channel_shared_files_are_recalled_later_with_their_source(
    bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    url = slack.response_url("listen")
    bot.send(slash_command("/pixelbot", "listen on", channel_id=channel_id, response_url=url))
    slack.wait_for_responses(1, name="listen")
    shared = slack.host_file(pdf(PAGES), "plan.pdf", PDF_MIME, "pdf", user="U0PRIYA01")
    bot.send(message("here is the plan", channel=channel_id, user="U0PRIYA01", ts=next_ts(), files=[shared]))
    knowledge = Knowledge(ChannelKey(TEAM_ID, channel_id).agent_name, bot.bot.settings.kept_files)
    wait_until(lambda: bool(knowledge.files()), timeout=30, what="the shared file kept")
    assert bot.bot.answerer.wait_idle(30) and bot.bot.recall is not None and bot.bot.recall.indexer.wait_idle(60)
    assert model.requests == [], "a listened file is not answered"
    model.respond_with(cite_the_budget)

    post = ask(bot, slack, channel_id, "what is the bridge budget?", [])

    assert post["text"] == "It is 42 million euros [1]."
    assert f"<{shared['permalink']}|plan.pdf, page 2>" in json.dumps(post["blocks"])


def test_an_admin_makes_the_agent_forget_a_file(
    bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    shared = slack.host_file(pdf(PAGES), "plan.pdf", PDF_MIME, "pdf")
    ask(bot, slack, channel_id, "what is the bridge budget?", [shared])
    url = slack.response_url("ask")
    bot.send(
        slash_command("/pixelbot", "forget file plan.pdf", channel_id=channel_id, user_id=ADMIN_ID, response_url=url)
    )
    [question] = slack.wait_for_responses(1, name="ask")
    [button] = [
        element
        for block in question.payload["blocks"]
        for element in block.get("elements", [])
        if element.get("action_id") == FORGET_ACTION
    ]
    request = block_action(
        FORGET_ACTION, button["value"], message_ts=next_ts(), channel=channel_id, user=ADMIN_ID,
        response_url=slack.response_url("done"),
    )  # fmt: skip
    bot.send(request)

    [done] = slack.wait_for_responses(1, name="done")
    assert "the file plan.pdf (2 pieces)" in done.payload["text"]
    assert Knowledge(ChannelKey(TEAM_ID, channel_id).agent_name, bot.bot.settings.kept_files).files() == []


def test_an_image_the_model_refuses_is_left_out_and_the_user_told(
    bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    shared = slack.host_file(png(), "chart.png", "image/png", "png")
    model.then(
        Reply(status=400, body=json.dumps({"error": {"message": "Invalid image.", "type": "invalid_request_error"}}))
    )

    post = ask(bot, slack, channel_id, "what is in it?", [shared])

    first, second = model.requests
    assert isinstance(first["messages"][-1]["content"], list) and isinstance(second["messages"][-1]["content"], str)
    assert post["text"].startswith("echo: what is in it?") and "could not read the image" in post["text"]


def test_without_vision_an_image_gets_a_note_instead_of_reaching_the_model(
    model: ScriptedOpenAI, slack: FakeSlack, pixeltable_home: Path, channel_id: str
) -> None:
    with serve_in_process(bot_settings(slack, model, PIXELBOT_VISION="false")) as bot:
        shared = slack.host_file(png(), "chart.png", "image/png", "png")
        post = ask(bot, slack, channel_id, "what is in it?", [shared])
    assert "chart.png: this model can't see images" in post["text"]
    assert isinstance(model.requests[0]["messages"][-1]["content"], str)
    assert slack.file_downloads() == []


def test_a_download_that_takes_too_long_gets_a_note(
    model: ScriptedOpenAI, slack: FakeSlack, pixeltable_home: Path, channel_id: str
) -> None:
    with serve_in_process(bot_settings(slack, model, PIXELBOT_FILE_TIMEOUT="1")) as bot:
        shared = slack.host_file(pdf(PAGES), "slow.pdf", PDF_MIME, "pdf")
        slack.delay_file(shared["id"], 5.0)
        post = ask(bot, slack, channel_id, "read it", [shared])
    assert "slow.pdf: the download took too long" in post["text"]


def test_the_command_line_lists_what_a_channel_knows(
    bot: RunningBot, slack: FakeSlack, channel_id: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    files = [
        slack.host_file(pdf(PAGES), "plan.pdf", PDF_MIME, "pdf"),
        slack.host_file(png(), "chart.png", "image/png", "png"),
    ]
    ask(bot, slack, channel_id, "keep these", files)
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(
        main, ["files", "--channel", channel_id], env={"PIXELBOT_FILES_DIR": str(bot.bot.settings.kept_files)}
    )

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    [pdf_line] = [line for line in lines if line.endswith("plan.pdf")]
    [png_line] = [line for line in lines if line.endswith("chart.png")]
    assert " document " in pdf_line and pdf_line.split()[5] == "2"  # date, time, kind, size, unit, pieces
    assert " image " in png_line


def test_retention_forgets_files_shared_before_it(
    model: ScriptedOpenAI, slack: FakeSlack, pixeltable_home: Path, channel_id: str
) -> None:
    with serve_in_process(bot_settings(slack, model, PIXELBOT_RETENTION_DAYS="30")) as bot:
        old = slack.host_file(pdf(PAGES), "old.pdf", PDF_MIME, "pdf")
        new = slack.host_file(pdf(PAGES), "new.pdf", PDF_MIME, "pdf")
        bot.send(mention("an old file", channel=channel_id, ts="1600000000.000100", files=[old]))  # 2020
        bot.send(mention("a new file", channel=channel_id, ts=f"{time.time():.6f}", files=[new]))
        wait_until(lambda: len(answers(slack, channel_id)) == 2, timeout=30, what="both answers")
        assert bot.bot.answerer.wait_idle(30) and bot.bot.retention is not None

        bot.bot.retention.sweep()

        knowledge = Knowledge(ChannelKey(TEAM_ID, channel_id).agent_name, bot.bot.settings.kept_files)
        assert [info.name for info in knowledge.files()] == ["new.pdf"]


@pytest.mark.parametrize(
    ("name", "filetype", "mimetype", "content", "expected"),
    [
        ("notes.md", "markdown", "text/markdown", b"# Launch\n\nThe launch is on the ninth of May.\n", "ninth of May"),
        ("page.html", "html", "text/html", b"<h1>Launch</h1><p>The launch is on the ninth of May.</p>", "ninth of May"),
        ("plain.txt", "text", "text/plain", b"The launch is on the ninth of May.", "ninth of May"),
        ("sales.csv", "csv", "text/csv", b"region,revenue\nnorth,1200\nsouth,900\n", "region: north, revenue: 1200"),
    ],
)
def test_text_documents_of_each_kind_reach_the_prompt(
    bot: RunningBot,
    slack: FakeSlack,
    model: ScriptedOpenAI,
    channel_id: str,
    name: str,
    filetype: str,
    mimetype: str,
    content: bytes,
    expected: str,
) -> None:
    shared = slack.host_file(content, name, mimetype, filetype)

    ask(bot, slack, channel_id, "what does it say?", [shared])

    assert expected in recalled(model.requests[0])


def test_forgetting_the_channel_forgets_its_files_too(
    bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    ask(bot, slack, channel_id, "keep this", [slack.host_file(pdf(PAGES), "plan.pdf", PDF_MIME, "pdf")])
    url = slack.response_url("ask")
    bot.send(slash_command("/pixelbot", "forget channel", channel_id=channel_id, user_id=ADMIN_ID, response_url=url))
    slack.wait_for_responses(1, name="ask")
    request = block_action(
        FORGET_ACTION, "channel", message_ts=next_ts(), channel=channel_id, user=ADMIN_ID,
        response_url=slack.response_url("done"),
    )  # fmt: skip
    bot.send(request)
    slack.wait_for_responses(1, name="done")

    assert Knowledge(ChannelKey(TEAM_ID, channel_id).agent_name, bot.bot.settings.kept_files).files() == []


def test_delete_user_removes_the_files_they_shared(
    bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:  # fmt: skip
    mine = slack.host_file(pdf(PAGES), "mine.pdf", PDF_MIME, "pdf", user="U0LEAVER")
    theirs = slack.host_file(pdf(PAGES), "theirs.pdf", PDF_MIME, "pdf", user="U0STAYER")
    ask(bot, slack, channel_id, "keep these", [mine, theirs])
    assert bot.bot.answerer.wait_idle(30)
    monkeypatch.chdir(tmp_path)

    env = {"PIXELBOT_FILES_DIR": str(bot.bot.settings.kept_files)}
    result = CliRunner().invoke(main, ["delete-user", "U0LEAVER", "--yes"], env=env)

    assert result.exit_code == 0, result.output
    assert "Deleted 1 file(s) U0LEAVER shared" in result.output
    knowledge = Knowledge(ChannelKey(TEAM_ID, channel_id).agent_name, bot.bot.settings.kept_files)
    assert [info.name for info in knowledge.files()] == ["theirs.pdf"]


def test_a_file_deletion_is_closed_in_the_inbox(
    bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    shared = slack.host_file(pdf(PAGES), "plan.pdf", PDF_MIME, "pdf")
    ask(bot, slack, channel_id, "keep this", [shared])
    request = file_deleted(shared["id"])
    bot.send(request)
    knowledge = Knowledge(ChannelKey(TEAM_ID, channel_id).agent_name, bot.bot.settings.kept_files)
    wait_until(lambda: knowledge.files() == [], timeout=30, what="the file forgotten")
    assert bot.bot.answerer.wait_idle(30)
    assert bot.bot.inbox.open_requests()[0] == 0, "no inbox row is left open"


def test_a_recall_table_of_the_version_before_files_gets_their_columns(
    model: ScriptedOpenAI, slack: FakeSlack, pixeltable_home: Path, channel_id: str
) -> None:
    agent_name = ChannelKey(TEAM_ID, channel_id).agent_name
    with serve_in_process(bot_settings(slack, model)) as bot:
        ask(bot, slack, channel_id, "the codeword is heron", [])
        assert bot.bot.answerer.wait_idle(30) and bot.bot.recall is not None and bot.bot.recall.indexer.wait_idle(60)
    old = pxt.get_table(f"{agent_name}.recall")
    assert old is not None
    for column in ("link", "place"):  # as the previous version made it
        old.drop_column(column)

    with serve_in_process(bot_settings(slack, model)) as bot:
        ask(bot, slack, channel_id, "what was the codeword?", [])  # a search first, then a write
        assert bot.bot.answerer.wait_idle(30) and bot.bot.recall is not None and bot.bot.recall.indexer.wait_idle(60)

    recall = pxt.get_table(f"{agent_name}.recall")
    assert recall is not None and {"link", "place"} <= set(recall.columns())
    texts = [row["text"] for row in recall.select(recall.text).collect()]
    assert "what was the codeword?" in texts, "indexing goes on after the upgrade"
