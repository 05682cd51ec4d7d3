"""Self-tests of the files test doubles: FakeSlack's file hosting, the file event builders, the sample files.

The files feature's tests trust these to behave like Slack's file host (the token, the sign-in redirect)
and to hand over documents real parsers read, so each behaviour is pinned here.
"""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import docx as python_docx
import httpx
import jsonschema
import pypdfium2  # type: ignore[import-untyped, unused-ignore]  # no py.typed (5.x)
import pytest
from PIL import Image
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tests import sample_files
from tests.fake_slack import BOT_TOKEN, SIGNIN_URL, TEAM_ID, TEAM_URL, FakeSlack, FileDownload
from tests.slack_requests import USER_ID, file_deleted, mention, message

SAMPLES = Path("/work/shared/specs/slack/samples")
WRAPPER_SCHEMA = Path("/work/shared/specs/slack/slack_common_event_wrapper_schema.json")
AUTHORIZED = {"Authorization": f"Bearer {BOT_TOKEN}"}


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server
        assert server.spec_errors == []


@pytest.fixture
def report(fake: FakeSlack) -> dict[str, Any]:
    """A hosted two-page PDF whose name needs quoting in a URL."""
    return fake.host_file(sample_files.pdf(["One.", "Two."]), "Q3 report.pdf", "application/pdf", "pdf")


_http = httpx.Client(follow_redirects=False)  # one client: each `httpx.get` builds an SSL context (~50 ms)


def download(url: str, headers: dict[str, str] | None = AUTHORIZED, timeout: float = 5.0) -> httpx.Response:
    """A GET as a careful bot makes it: the token in the header, redirects not followed."""
    return _http.get(url, headers=headers, timeout=timeout)


# -- the file object -----------------------------------------------------------------------------------
def test_the_file_object_has_slacks_fields_and_urls_on_the_fake(fake: FakeSlack, report: dict[str, Any]) -> None:
    file_id = report["id"]
    private = f"{fake.root_url}/files-pri/{TEAM_ID}-{file_id}"

    assert re.fullmatch(r"F\d+", file_id)
    assert report["url_private"] == f"{private}/Q3%20report.pdf"
    assert report["url_private_download"] == f"{private}/download/Q3%20report.pdf"
    assert report["permalink"] == f"{TEAM_URL}files/{USER_ID}/{file_id}/Q3%20report.pdf"
    assert report["size"] == len(sample_files.pdf(["One.", "Two."]))
    assert (report["name"], report["title"], report["mimetype"], report["filetype"]) == (
        "Q3 report.pdf",
        "Q3 report.pdf",
        "application/pdf",
        "pdf",
    )
    assert (report["mode"], report["editable"], report["is_external"], report["pretty_type"]) == (
        "hosted",
        False,
        False,
        "PDF",
    )


def test_the_file_object_has_only_fields_of_slacks_sample(report: dict[str, Any]) -> None:
    sample = json.loads((SAMPLES / "events" / "MessageFileSharePayload.json").read_text())
    sample_file = sample["event"]["files"][0]

    assert set(report) <= set(sample_file)
    assert all(isinstance(report[name], type(value)) for name, value in sample_file.items() if name in report)


def test_a_declared_size_and_extra_fields_override_the_defaults(fake: FakeSlack) -> None:
    image = fake.host_file(sample_files.png(), "a.png", "image/png", "png", size=50_000_000, extra={"original_w": 8})

    assert (image["size"], image["original_w"]) == (50_000_000, 8)


def test_file_ids_are_unique_across_fakes(fake: FakeSlack) -> None:
    with FakeSlack() as other:
        ids = {server.host_file(b"x", "x.txt", "text/plain", "text")["id"] for server in (fake, other)}

    assert len(ids) == 2


# -- downloads -----------------------------------------------------------------------------------------
def test_a_hosted_file_downloads_with_the_bot_token(fake: FakeSlack, report: dict[str, Any]) -> None:
    for url in (report["url_private"], report["url_private_download"]):
        response = download(url)

        assert response.status_code == 200
        assert response.content == sample_files.pdf(["One.", "Two."])
        assert response.headers["content-type"] == "application/pdf"
        assert response.headers["content-length"] == str(report["size"])
    path = urlsplit(report["url_private"]).path
    assert fake.file_downloads()[0] == FileDownload(report["id"], path, f"Bearer {BOT_TOKEN}", 200)


@pytest.mark.parametrize("headers", [None, {"Authorization": "Bearer xoxb-other"}, {"Authorization": BOT_TOKEN}])
def test_without_the_token_slack_redirects_to_its_signin_page(
    fake: FakeSlack, report: dict[str, Any], headers: dict[str, str] | None
) -> None:
    response = download(report["url_private_download"], headers=headers)

    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(f"{SIGNIN_URL}?redir=%2Ffiles-pri%2F")
    assert urlsplit(location).netloc != urlsplit(fake.root_url).netloc  # following it leaves the file host
    assert fake.file_downloads()[0].status == 302
    assert fake.file_downloads()[0].authorization == (headers or {}).get("Authorization")


def test_unknown_deleted_and_misnamed_files_are_not_found(fake: FakeSlack, report: dict[str, Any]) -> None:
    private = f"{fake.root_url}/files-pri/{TEAM_ID}-{report['id']}"
    assert download(f"{fake.root_url}/files-pri/{TEAM_ID}-F999/x.pdf").status_code == 404
    assert download(f"{private}/other.pdf").status_code == 404

    fake.delete_file(report["id"])

    assert download(report["url_private_download"]).status_code == 404
    assert [d.status for d in fake.wait_for_file_downloads(3)] == [404, 404, 404]


def test_a_scripted_failure_answers_its_status_the_given_number_of_times(
    fake: FakeSlack, report: dict[str, Any]
) -> None:
    fake.fail_file(report["id"], 503, times=1)

    assert download(report["url_private"]).status_code == 503
    assert download(report["url_private"]).status_code == 200


def test_a_scripted_failure_lasts_until_reset(fake: FakeSlack, report: dict[str, Any]) -> None:
    fake.fail_file(report["id"], 403)

    assert [download(report["url_private"]).status_code for _ in range(3)] == [403, 403, 403]


def test_a_redirect_points_anywhere(fake: FakeSlack, report: dict[str, Any]) -> None:
    fake.redirect_file(report["id"], "https://evil.example/steal")

    response = download(report["url_private"])

    assert (response.status_code, response.headers["location"]) == (302, "https://evil.example/steal")


def test_a_delayed_file_times_out_a_client(fake: FakeSlack, report: dict[str, Any]) -> None:
    fake.delay_file(report["id"], 0.5, times=1)

    with pytest.raises(httpx.ReadTimeout):
        download(report["url_private"], timeout=0.1)
    assert download(report["url_private"], timeout=0.3).status_code == 200  # the delay was for one only


def test_a_delayed_file_holds_up_no_other_request(fake: FakeSlack, report: dict[str, Any]) -> None:
    fake.delay_file(report["id"], 0.5)
    statuses: list[int] = []
    thread = threading.Thread(target=lambda: statuses.append(download(report["url_private"]).status_code))
    thread.start()
    fake.wait_for_file_downloads(1)  # the download arrived; its answer waits

    assert WebClient(token=BOT_TOKEN, base_url=fake.base_url).auth_test()["ok"]
    assert statuses == []  # answered while the file was still on its way
    thread.join(5)
    assert statuses == [200]


def test_reset_forgets_hosted_files_downloads_and_scripting(fake: FakeSlack, report: dict[str, Any]) -> None:
    fake.fail_file(report["id"], 500)
    download(report["url_private"])

    fake.reset()

    assert fake.file_downloads() == []
    assert download(report["url_private"]).status_code == 404
    with pytest.raises(ValueError, match="not a file hosted"):
        fake.fail_file(report["id"], 500)


# -- files.info ----------------------------------------------------------------------------------------
def test_files_info_answers_the_hosted_file_object(fake: FakeSlack, report: dict[str, Any]) -> None:
    client = WebClient(token=BOT_TOKEN, base_url=fake.base_url)

    assert client.files_info(file=report["id"])["file"] == report
    with pytest.raises(SlackApiError) as unknown:
        client.files_info(file="F999")
    fake.delete_file(report["id"])
    with pytest.raises(SlackApiError) as deleted:
        client.files_info(file=report["id"])

    assert (unknown.value.response["error"], deleted.value.response["error"]) == ("file_not_found", "file_deleted")


# -- events --------------------------------------------------------------------------------------------
def test_a_message_with_files_is_a_file_share(report: dict[str, Any]) -> None:
    event = message("see attached", files=[report]).payload["event"]

    assert (event["subtype"], event["upload"], event["display_as_bot"]) == ("file_share", False, False)
    assert event["files"] == [report]
    assert message("edited", files=[report], extra={"subtype": "message_changed"}).payload["event"]["subtype"] == (
        "message_changed"
    )
    assert "subtype" not in message("plain").payload["event"]


def test_a_mention_carries_its_files_without_a_subtype(report: dict[str, Any]) -> None:
    event = mention("summarise this", files=[report]).payload["event"]

    assert event["files"] == [report]
    assert "subtype" not in event


def test_file_deleted_events(report: dict[str, Any]) -> None:
    schema = json.loads(WRAPPER_SCHEMA.read_text())
    plain, listed = file_deleted(report["id"]), file_deleted(report["id"], channel_ids=["C1"])

    for request in (plain, listed, message("x", files=[report])):
        jsonschema.validate(json.loads(request.body), schema)
    assert plain.payload["event"].keys() == {"type", "file_id", "event_ts"}
    assert (listed.payload["event"]["type"], listed.payload["event"]["channel_ids"]) == ("file_deleted", ["C1"])


# -- sample files --------------------------------------------------------------------------------------
def page_texts(data: bytes, password: str | None = None) -> list[str]:
    document = pypdfium2.PdfDocument(data, password=password)
    return [str(page.get_textpage().get_text_range()) for page in document]


def test_a_pdf_has_one_page_per_text() -> None:
    assert page_texts(sample_files.pdf(["First page.", "Second page."])) == ["First page.", "Second page."]


def test_an_encrypted_pdf_needs_its_password() -> None:
    data = sample_files.encrypted_pdf("Top secret.")

    with pytest.raises(pypdfium2.PdfiumError, match="password") as refused:
        pypdfium2.PdfDocument(data)

    assert refused.value.err_code == pypdfium2.raw.FPDF_ERR_PASSWORD
    assert page_texts(data, password=sample_files.USER_PASSWORD) == ["Top secret."]


def test_a_corrupt_pdf_looks_like_a_pdf_and_does_not_parse() -> None:
    data = sample_files.corrupt_pdf()

    assert data.startswith(b"%PDF-")
    with pytest.raises(pypdfium2.PdfiumError) as refused:
        pypdfium2.PdfDocument(data)
    assert refused.value.err_code == pypdfium2.raw.FPDF_ERR_FORMAT


def test_a_many_pages_pdf_numbers_its_pages() -> None:
    texts = page_texts(sample_files.many_pages_pdf(50))

    assert len(texts) == 50
    assert texts[36].startswith("Page 37.") and len(texts[36]) > 500
    assert len({text.split(".", 1)[1] for text in texts}) == 50  # varied, not one page repeated


def test_samples_are_the_same_bytes_each_time() -> None:
    assert sample_files.pdf(["x"]) == sample_files.pdf(["x"])
    assert sample_files.docx(["x"]) == sample_files.docx(["x"])
    assert sample_files.png() == sample_files.png()


def test_a_docx_reads_back() -> None:
    document = python_docx.Document(io.BytesIO(sample_files.docx(["Alpha.", "Beta."], heading="Notes")))

    assert [(p.style.name if p.style else None, p.text) for p in document.paragraphs] == [
        ("Heading 1", "Notes"),
        ("Normal", "Alpha."),
        ("Normal", "Beta."),
    ]


def test_images_open_with_their_size_and_colour() -> None:
    png = Image.open(io.BytesIO(sample_files.png(12, 6, (1, 2, 3))))
    jpeg = Image.open(io.BytesIO(sample_files.jpeg(16, 16)))

    assert (png.format, png.size, png.convert("RGB").getpixel((0, 0))) == ("PNG", (12, 6), (1, 2, 3))
    assert (jpeg.format, jpeg.size) == ("JPEG", (16, 16))
