"""Real file bytes made at test time: PDFs (plain, encrypted, corrupt, long), Word documents and images.

Tests of the files feature need documents a real parser accepts (or, on purpose, refuses), not stand-in
bytes; generating them keeps binary fixtures out of the repository and lets each test say what the file
holds. The same arguments give the same bytes (fixed creation dates), so content hashes are stable.

PDFs use fpdf2's core Helvetica font, which encodes Latin-1 only: keep their text plain ASCII.

    slack.host_file(sample_files.pdf(["Page one.", "Page two."]), "report.pdf", "application/pdf", "pdf")
"""

from __future__ import annotations

import datetime
import io
import random

import docx as python_docx
from fpdf import FPDF
from PIL import Image

Color = tuple[int, int, int]

_CREATED = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
"""Every PDF's creation date: without it fpdf2 stamps the current time and the bytes differ per call."""
OWNER_PASSWORD = "owner-secret"
USER_PASSWORD = "user-secret"


def _document() -> FPDF:
    document = FPDF()
    document.set_creation_date(_CREATED)
    document.set_font("Helvetica", size=12)
    return document


def _with_pages(document: FPDF, pages: list[str]) -> bytes:
    for text in pages:
        document.add_page()
        document.multi_cell(w=0, h=6, text=text)
    return bytes(document.output())


def pdf(pages: list[str]) -> bytes:
    """A PDF with one page per string, holding that text (pypdfium2 reads it back, lines joined by CRLF
    where fpdf2 wrapped them)."""
    return _with_pages(_document(), pages)


def encrypted_pdf(text: str, *, password: str = USER_PASSWORD) -> bytes:
    """A one-page PDF that opens only with `password`: the case of a document the bot cannot read.

    It needs a user password: with only an owner password a PDF is encrypted but opens without one. RC4,
    fpdf2's default, because its AES methods need the `cryptography` package.
    """
    document = _document()
    document.set_encryption(owner_password=OWNER_PASSWORD, user_password=password)
    return _with_pages(document, [text])


def corrupt_pdf() -> bytes:
    """Bytes that claim to be a PDF (the `%PDF-` magic, a first object) but break off: no page tree, no
    cross-reference table, no trailer. Type sniffing says PDF; every parser refuses it."""
    rubbish = bytes(random.Random(7).randrange(256) for _ in range(512))
    return b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R\nstream\n" + rubbish


_SUBJECTS = ["The quarterly report", "Our migration plan", "The new onboarding flow", "A customer survey"]
_VERBS = ["describes", "questions", "summarises", "extends", "replaces"]
_OBJECTS = ["the billing pipeline", "three open risks", "last year's budget", "the search index", "a pilot"]
_ENDINGS = ["in detail.", "at a high level.", "with two examples.", "before the March review.", "for every region."]


def sentences(count: int, *, seed: int = 0) -> list[str]:
    """`count` varied, plausible English sentences (deterministic for a seed), for documents of any length."""
    rng = random.Random(seed)
    parts = (_SUBJECTS, _VERBS, _OBJECTS, _ENDINGS)
    return [" ".join(rng.choice(words) for words in parts) for _ in range(count)]


def many_pages_pdf(count: int, *, sentences_per_page: int = 12) -> bytes:
    """A PDF of `count` pages of varied sentences, each page starting "Page N." (for benchmarks and
    page-limit tests: a page's text tells which page it came from)."""
    pages = [
        " ".join([f"Page {number}.", *sentences(sentences_per_page, seed=number)]) for number in range(1, count + 1)
    ]
    return pdf(pages)


def docx(paragraphs: list[str], heading: str | None = None) -> bytes:
    """A Word document: an optional level-1 heading, then one paragraph per string."""
    document = python_docx.Document()
    if heading is not None:
        document.add_heading(heading, level=1)
    for text in paragraphs:
        document.add_paragraph(text)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _image(image_format: str, width: int, height: int, color: Color) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format=image_format)
    return buffer.getvalue()


def png(width: int = 8, height: int = 8, color: Color = (200, 30, 30)) -> bytes:
    """A PNG of one colour (small by default: an image model's input need not be large to be real)."""
    return _image("PNG", width, height, color)


def jpeg(width: int = 8, height: int = 8, color: Color = (30, 30, 200)) -> bytes:
    """A JPEG of one colour (lossy: decoded pixels are close to `color`, not equal)."""
    return _image("JPEG", width, height, color)
