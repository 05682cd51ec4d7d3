"""Shared PDFs: how long indexing one adds to its answer, and what a kept one costs later answers.

1. Indexing. For each `--pages` size (PDFs of `tests.sample_files.many_pages_pdf`: text only, 12
   sentences a page), a channel of its own gets mentions without a file (the floor) and mentions with a
   new copy of the PDF attached (a new Slack file ID each time, so it is indexed again), alternating,
   `--repeats` of each. Latency = from posting the signed `app_mention` to the answer's
   `chat.postMessage` arriving at the fake Slack; indexing = median with the file - median of the floor,
   shown per MB and per page, with the file's size and the pieces (chunks) the bot kept. Each channel
   first gets one unmeasured 1-page PDF (that makes its knowledge tables: timed apart as "first file").
   After an answer with a file the driver waits until the bot has no answer in flight
   (`pixelbot_answers_in_flight` of `/metrics`), then `--settle` more (recall indexes the pieces in
   the background), so the next mention does not pay for it.
   The same PDFs also go through the bot's own steps in this process, one at a time, before the bot
   starts, on the same Pixeltable home: download from the fake Slack (`SlackFiles._download`), check
   (`bot.file_formats.readable_document`: pypdfium2 opens it), `Knowledge.add_document` (split + insert, and reading
   the pieces back) on an agent whose tables exist, and embedding the pieces (`Embedder.embed`, the
   scripted server's vectors: its hashing runs in this process and is counted).
2. Answers beside a kept PDF. A channel gets a `--answer-pages` PDF once (a mention with it), then
   `--questions` mentions without a file, alternating (ABBA) with the same questions in a channel
   that never had a file; p50 / p95 of mention -> answer posted of each, and the paired difference.
   With the bot's default `PIXELBOT_RECALL_AFTER` (30 messages) the channel without a file has no
   recall yet, while the PDF's pieces start recall in the other: the difference is what a kept PDF
   costs, recall included (`--env PIXELBOT_RECALL_AFTER=0` recalls in both). The report says how
   many prompts carried recalled pieces of the file and how many embedding requests each channel made.

The model answers after `--delay` (0 by default: the figures are the bot's own time); embeddings come
from the same scripted server. The bot runs as its own process (`python -m bot serve`), as in the
other benchmarks; the report ends with the spec errors in its calls and the warnings in its log.

    python -m benchmarks.file_indexing [--pages 10 50 200] [--repeats 5] [--questions 10] [--delay 0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from agent.recall.embeddings import DEFAULT_EMBEDDING_MODEL, Embedder, EmbeddingSettings
from benchmarks.common import (
    FakeServices,
    ServerProcess,
    add_settings_option,
    fake_services,
    percentile,
    print_provenance,
    wait_for_answer,
    work_directory,
)
from bot.channels import ChannelKey
from tests.fake_slack import BOT_TOKEN
from tests.sample_files import many_pages_pdf
from tests.slack_requests import TEAM_ID, SlackSender, mention, next_ts

PDF_MIME = "application/pdf"
WARM_UP = 2  # mentions without a file per channel before measuring (agent and tables, clients)
EMBEDDING_DIMENSIONS = 256  # as `benchmarks.common.FakeServices.bot_environment` sets for the bot
QUESTIONS = [
    "what does page {n} say about the billing pipeline?",
    "which open risks does the migration plan on page {n} describe?",
    "what is said about last year's budget around page {n}?",
    "how is the search index summarised on page {n}?",
    "what does the customer survey extend before the March review?",
]


# -- driving the bot ---------------------------------------------------------------------------------
@dataclass
class Asked:
    """One mention: its latency (s), and what the bot asked the scripted server meanwhile."""

    latency: float
    model_requests: list[dict[str, Any]]
    embedding_requests: int


class Driver:
    """Sends one mention at a time and waits for its answer on the fake Slack server."""

    def __init__(
        self, services: FakeServices, sender: SlackSender, bot: ServerProcess, args: argparse.Namespace
    ) -> None:
        self.services, self.sender, self.bot = services, sender, bot
        self.gap, self.settle = args.gap, args.settle
        self.posted = 0

    def ask(self, channel: str, text: str, files: list[dict[str, Any]] | None = None) -> Asked:
        model = self.services.model
        requests_before, embeddings_before = len(model.requests), len(model.embedding_requests)
        request = mention(text, channel=channel, ts=next_ts(), files=files)
        started = time.monotonic()
        response = self.sender.send(self.bot.events_url, request)
        if response.status != 200:
            raise RuntimeError(f"the bot answered HTTP {response.status}: {response.text}")
        self.posted += 1
        post = wait_for_answer(self.services.slack, request.payload["event"]["ts"], self.posted, timeout=180)
        asked = Asked(
            post.received_at - started,
            list(model.requests[requests_before:]),
            len(model.embedding_requests) - embeddings_before,
        )
        if files:
            self.wait_idle()
            time.sleep(self.settle)
        time.sleep(self.gap)
        return asked

    def share(self, channel: str, content: bytes, name: str, text: str) -> tuple[Asked, str]:
        """A mention with a new Slack file of `content` attached; the file's ID."""
        shared = self.services.slack.host_file(content, name, PDF_MIME, "pdf")
        return self.ask(channel, text, [shared]), str(shared["id"])

    def wait_idle(self, timeout: float = 120.0) -> None:
        """Until the bot has no answer queued, running or not yet stored (its `/metrics`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            metrics = httpx.get(f"http://127.0.0.1:{self.bot.port}/metrics", timeout=5).text
            if any(line.split()[-1] in ("0", "0.0") for line in _lines(metrics, "pixelbot_answers_in_flight")):
                return
            time.sleep(0.05)
        raise RuntimeError(f"the bot still had answers in flight after {timeout} s")


def _lines(metrics: str, name: str) -> list[str]:
    return [line for line in metrics.splitlines() if line.startswith(name + " ") or line.startswith(name + "{")]


# -- 1. indexing ---------------------------------------------------------------------------------------
@dataclass
class Indexed:
    """One PDF size in the bot: latencies with the file and without (s), the file IDs shared."""

    pages: int
    size: int
    with_file: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    first_file: float = 0.0  # the channel's first (1-page) file, which makes its knowledge tables
    file_ids: list[str] = field(default_factory=list)


def index_channel(pages: int) -> str:
    return f"CIDX{pages}"


def indexing(driver: Driver, pdfs: dict[int, bytes], repeats: int) -> list[Indexed]:
    results = []
    one_page = many_pages_pdf(1)
    for pages, content in pdfs.items():
        channel, found = index_channel(pages), Indexed(pages, len(content))
        for index in range(WARM_UP):
            driver.ask(channel, f"warm-up {index}")
        found.first_file = driver.share(channel, one_page, "first.pdf", "what is this?")[0].latency
        for round_ in range(repeats):
            found.floor.append(driver.ask(channel, f"what does the report say? ({round_})").latency)
            asked, file_id = driver.share(
                channel, content, f"report-{pages}.pdf", f"what does the report say? ({round_})"
            )
            found.with_file.append(asked.latency)
            found.file_ids.append(file_id)
        found.floor.append(driver.ask(channel, f"what does the report say? ({repeats})").latency)
        results.append(found)
    return results


@dataclass
class Stages:
    """The bot's steps for one PDF, run in this process (seconds), and the pieces it was split into."""

    download: float
    check: float
    add_document: float  # split + insert + reading the pieces back
    read_back: float  # reading the pieces back alone (`Knowledge.chunks_of`)
    embed: float
    pieces: int


@dataclass
class DirectRun:
    process_first: float  # this process's first file: imports, tokenizer, Pixeltable's first view
    first_files: list[float]  # each agent's first file (1 page): its tables made, then the file added
    stages: dict[int, list[Stages]]


def direct_stages(services: FakeServices, home: Path, pdfs: dict[int, bytes], repeats: int) -> DirectRun:
    """Each PDF through the bot's own steps, in this process, on a fresh agent whose tables exist."""
    os.environ["PIXELTABLE_HOME"] = str(home)
    from agent.knowledge import Knowledge
    from agent.runtime import configure_pixeltable
    from bot.file_formats import readable_document
    from bot.files import SharedFile, SlackFiles, Where, _file_info, _remove_download, chunk_item

    configure_pixeltable()
    files_dir = home / "pixelbot-files"  # where the bot keeps its files (`Settings.kept_files`)
    settings = EmbeddingSettings(
        model=DEFAULT_EMBEDDING_MODEL,
        dimensions=EMBEDDING_DIMENSIONS,
        base_url=services.model.base_url,
        api_key="sk-benchmark",
    )
    with ThreadPoolExecutor(1) as pool:
        slack_files = SlackFiles(lambda: BOT_TOKEN, services.slack.base_url, files_dir, 50_000_000, True, pool, pool)

        def one(agent: str, content: bytes, name: str) -> Stages:
            hosted = SharedFile.from_event(services.slack.host_file(content, name, PDF_MIME, "pdf"))
            where = Where("U0BENCH", next_ts(), "", datetime.now(UTC))
            knowledge = Knowledge(agent, files_dir)
            started = time.monotonic()
            path = slack_files._download(hosted)
            downloaded = time.monotonic()
            try:
                info = _file_info(hosted, where, path)
                document = readable_document(path, hosted.filetype)
                checked = time.monotonic()
                chunks = knowledge.add_document(info, document)
                added = time.monotonic()
            finally:
                _remove_download(path)
            read_started = time.monotonic()
            knowledge.chunks_of(info.file_id)
            read_back = time.monotonic() - read_started
            embed = asyncio.run(_embed(settings, [chunk_item(chunk, info).embedded_text for chunk in chunks]))
            return Stages(downloaded - started, checked - downloaded, added - checked, read_back, embed, len(chunks))

        def first_file(agent: str) -> float:
            first = one(agent, many_pages_pdf(1), "first.pdf")
            return first.download + first.check + first.add_document

        process_first = first_file("filebench.direct_first")
        first_files, stages = [], {}
        for pages, content in pdfs.items():
            agent = f"filebench.direct_{pages}"
            first_files.append(first_file(agent))  # its tables
            stages[pages] = [one(agent, content, f"report-{pages}.pdf") for _ in range(repeats)]
    return DirectRun(process_first, first_files, stages)


async def _embed(settings: EmbeddingSettings, texts: list[str]) -> float:
    """Seconds to embed `texts` as recall does (in batches), after one request to open the connection."""
    embedder = Embedder(settings)
    try:
        await embedder.embed(["warm-up"])
        started = time.monotonic()
        await embedder.embed(texts)
        return time.monotonic() - started
    finally:
        await embedder.client.close()


def kept_pieces(home: Path, channels: Sequence[str]) -> dict[str, int]:
    """Pieces the bot kept per Slack file ID, in these channels (read after the bot stopped)."""
    from agent.knowledge import Knowledge

    pieces: dict[str, int] = {}
    for channel in channels:
        for info in Knowledge(ChannelKey(TEAM_ID, channel).agent_name, home / "pixelbot-files").files():
            pieces[info.file_id] = info.chunks
    return pieces


# -- 2. answers beside a kept PDF ----------------------------------------------------------------------
WITH_PDF, WITHOUT = "CWITHPDF", "CNOFILE"


@dataclass
class Answers:
    shared: Asked | None = None
    file_id: str = ""
    with_pdf: list[Asked] = field(default_factory=list)
    without: list[Asked] = field(default_factory=list)


def answering(driver: Driver, content: bytes, pages: int, questions: int) -> Answers:
    found = Answers()
    for channel in (WITH_PDF, WITHOUT):
        for index in range(WARM_UP):
            driver.ask(channel, f"warm-up {index}")
    found.shared, found.file_id = driver.share(WITH_PDF, content, f"handbook-{pages}.pdf", "here is the handbook")
    driver.ask(WITHOUT, "here is nothing")  # the same number of turns in both channels
    for index in range(questions):
        text = QUESTIONS[index % len(QUESTIONS)].format(n=1 + (7 * index) % pages)
        order = (WITH_PDF, WITHOUT) if index % 2 == 0 else (WITHOUT, WITH_PDF)
        for channel in order:
            (found.with_pdf if channel == WITH_PDF else found.without).append(driver.ask(channel, text))
    return found


def recalled_file(asked: Asked) -> bool:
    """Whether a prompt of this answer carried a recalled piece of a file."""
    return any(
        message.get("role") == "system" and "From the file" in str(message.get("content"))
        for request in asked.model_requests
        for message in request.get("messages", [])
    )


# -- reporting ---------------------------------------------------------------------------------------
def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def report_indexing(results: list[Indexed], direct: DirectRun, pieces: dict[str, int]) -> None:
    print("\n1. indexing: a mention with the PDF attached minus the same mention without a file (floor), medians")
    header = f"  {'pages':>5} {'size':>9} {'pieces':>7} {'with file':>11} {'floor':>9} {'indexing':>11}"
    print(f"{header} {'s per MB':>9} {'ms per page':>12}")
    for found in results:
        kept = sorted({pieces.get(file_id, -1) for file_id in found.file_ids})
        with_file, floor = statistics.median(found.with_file), statistics.median(found.floor)
        extra = with_file - floor
        print(
            f"  {found.pages:>5} {found.size / 1000:>6.1f} kB {'/'.join(map(str, kept)):>7} {ms(with_file):>11}"
            f" {ms(floor):>9} {ms(extra):>11} {extra / (found.size / 1e6):>9.1f} {extra / found.pages * 1000:>12.2f}"
        )
    if len(results) >= 2:  # what each page (and MB) adds, apart from what every file costs
        extras = [statistics.median(found.with_file) - statistics.median(found.floor) for found in results]
        by_page = statistics.linear_regression([found.pages for found in results], extras)
        by_mb = statistics.linear_regression([found.size / 1e6 for found in results], extras)
        print(
            f"  fit over the sizes: indexing = {ms(by_page.intercept)} a file + {ms(by_page.slope)} a page"
            f" (= {by_mb.slope:.2f} s per MB of these PDFs)"
        )
    firsts = " / ".join(ms(found.first_file - statistics.median(found.floor)) for found in results)
    print(f"  each channel's first file (1 page; its knowledge tables made), minus the floor: {firsts}")
    print(f"  ({len(results[0].with_file)} mentions with a file and {len(results[0].floor)} without, per size)")

    print("\n   the bot's steps in this process, one at a time (same Pixeltable home, before the bot started), medians")
    print(
        f"  {'pages':>5} {'pieces':>7} {'download':>10} {'check':>9} {'add_document':>13} {'(read back)':>12}"
        f" {'embed':>10} {'sum':>10} {'sum per page':>13}"
    )
    for pages, runs in direct.stages.items():
        download, check, add, read_back, embed = (_median(runs, part) for part in STAGES)
        total = download + check + add + embed
        print(
            f"  {pages:>5} {runs[0].pieces:>7} {ms(download):>10} {ms(check):>9} {ms(add):>13} {ms(read_back):>12}"
            f" {ms(embed):>10} {ms(total):>10} {ms(total / pages):>13}"
        )
    firsts = " / ".join(ms(seconds) for seconds in direct.first_files)
    print(f"  each agent's first file (1 page, tables made), download + check + add_document: {firsts}")
    print(f"  (this process's very first file, with its imports and the tokenizer: {ms(direct.process_first)})")
    print("  add_document = split (pypdfium2 text, tiktoken pieces) + insert + reading the pieces back;")
    print(f"  embed = the pieces' vectors from the scripted server ({EMBEDDING_DIMENSIONS} dimensions, batches of 64)")


STAGES = ("download", "check", "add_document", "read_back", "embed")


def _median(runs: list[Stages], part: str) -> float:
    return statistics.median(float(getattr(run, part)) for run in runs)


def _row(label: str, values: list[float], note: str = "") -> str:
    p50, p95 = statistics.median(values) * 1000, percentile(values, 0.95) * 1000
    return f"  {label:<40}{p50:9.1f} ms {p95:9.1f} ms   {note}"


def report_answers(found: Answers, pages: int, size: int, pieces: dict[str, int]) -> None:
    assert found.shared is not None
    print(
        f"\n2. answers with a {pages}-page PDF in the channel ({size / 1000:.1f} kB, {pieces.get(found.file_id, -1)}"
        f" pieces, shared once: {ms(found.shared.latency)}), {len(found.with_pdf)} questions each, alternating"
    )
    print(f"  {'mention -> answer posted':<40}{'p50':>12} {'p95':>12}")
    for label, asked in (("channel with the PDF", found.with_pdf), ("channel without a file (floor)", found.without)):
        recalled = sum(map(recalled_file, asked))
        embeddings = sum(a.embedding_requests for a in asked)
        note = f"(file pieces recalled in {recalled}/{len(asked)} prompts; {embeddings} embedding requests meanwhile)"
        print(_row(label, [a.latency for a in asked], note))
    paired = [a.latency - b.latency for a, b in zip(found.with_pdf, found.without, strict=True)]
    print(_row("difference (paired)", paired))


# -- the run -----------------------------------------------------------------------------------------
def run(args: argparse.Namespace, work: Path) -> None:
    home = work / "home"
    sizes = sorted(set(args.pages))
    pdfs = {pages: many_pages_pdf(pages) for pages in sorted({*sizes, args.answer_pages})}
    with fake_services(args.delay) as services, SlackSender(timeout=60) as sender:
        started = time.monotonic()
        direct = direct_stages(services, home, {pages: pdfs[pages] for pages in sizes}, args.repeats)
        print(f"the bot's steps in this process: {time.monotonic() - started:.1f} s")
        env = services.bot_environment(home, **({"SLACK_BOT_TOKEN": BOT_TOKEN} | dict(args.env)))
        with ServerProcess(env, work / "pixelbot.log") as bot:
            driver = Driver(services, sender, bot, args)
            started = time.monotonic()
            indexed = indexing(driver, {pages: pdfs[pages] for pages in sizes}, args.repeats)
            print(f"indexing in the bot: {time.monotonic() - started:.1f} s")
            started = time.monotonic()
            answers = answering(driver, pdfs[args.answer_pages], args.answer_pages, args.questions)
            print(f"answers beside a kept PDF: {time.monotonic() - started:.1f} s")
        pieces = kept_pieces(home, [*map(index_channel, sizes), WITH_PDF])
        report_indexing(indexed, direct, pieces)
        report_answers(answers, args.answer_pages, len(pdfs[args.answer_pages]), pieces)
        errors = services.slack.spec_errors + services.model.spec_errors
        print(f"\nspec errors in the bot's calls to Slack and OpenAI: {len(errors)}")
        for error in errors[:5]:
            print(f"  {error}")
        complaints = [
            line
            for line in bot.log_path.read_text(errors="replace").splitlines()
            if " WARNING " in line or " ERROR " in line
        ]
        print(f"warnings and errors in the bot's log: {len(complaints)}")
        for line in complaints[:5]:
            print(f"  {line[:200]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, nargs="+", default=[10, 50, 200], help="PDF sizes to index, in pages")
    parser.add_argument("--repeats", type=int, default=5, help="mentions with a file per size (and one more without)")
    parser.add_argument("--questions", type=int, default=10, help="questions per channel beside a kept PDF")
    parser.add_argument("--answer-pages", type=int, default=50, help="pages of the PDF kept for the questions")
    parser.add_argument("--delay", type=float, default=0.0, help="scripted model delay (s)")
    parser.add_argument("--gap", type=float, default=0.1, help="pause after each answer before the next request (s)")
    parser.add_argument("--settle", type=float, default=1.0, help="extra pause after an answer with a file (s)")
    add_settings_option(parser, "PIXELBOT_RECALL_AFTER=0")
    args = parser.parse_args()
    print(
        f"shared PDFs: indexing time and answers beside a kept PDF; model delay {args.delay * 1000:.0f} ms, "
        f"embeddings from the scripted server; pixelbot as its own process"
    )
    run(args, work_directory())
    print_provenance()


if __name__ == "__main__":
    main()
