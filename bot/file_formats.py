"""What the bot reads in a shared file, and how: the checks and conversions before a file is kept.

PDFs are opened first (a password-protected or damaged one is refused with a reason, before
Pixeltable's splitter sees it); Word documents are read by `mammoth` as HTML and CSVs become
"column: value" lines, so that Pixeltable's document splitter cuts both at their structure; text must
be UTF-8; an image must open in Pillow as one of the formats the model takes, and goes to it as a
`data:` URL. Every refusal is a `FileError` whose message is for the user.
"""

from __future__ import annotations

import base64
import csv
import io
import mimetypes
from pathlib import Path

from agent import PixelbotError

DOCUMENT_TYPES = {  # Slack's filetype -> the extension Pixeltable's document splitter reads it by
    "pdf": ".pdf",
    "markdown": ".md",
    "md": ".md",
    "text": ".txt",
    "txt": ".txt",
    "html": ".html",
    "docx": ".docx",
    "csv": ".csv",
}
IMAGE_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}
MAX_CSV_ROWS = 5_000


class FileError(PixelbotError):
    """A file that can't be read (or fetched); the message is for the user."""


def readable_document(path: Path, filetype: str) -> Path:
    """The document as Pixeltable's splitter reads it: PDFs checked, Word as HTML, CSV as text (its
    kind from Slack's `filetype`, else from the file's name)."""
    extension = DOCUMENT_TYPES.get(filetype) or DOCUMENT_TYPES.get(path.suffix.lower().lstrip("."), ".txt")
    if extension == ".pdf":
        _check_pdf(path)
        return _with_suffix(path, ".pdf")
    if extension == ".docx":
        return _docx_as_html(path)
    if extension == ".csv":
        return _csv_as_text(path)
    if extension in (".txt", ".md", ".html"):
        _check_text(path)
    return _with_suffix(path, extension)


def _check_pdf(path: Path) -> None:
    import pypdfium2

    try:
        document = pypdfium2.PdfDocument(path)
    except pypdfium2.PdfiumError as error:
        if "password" in str(error).lower():
            raise FileError("it is password-protected, so I can't read it.") from None
        raise FileError("it is not a PDF I can read (damaged?).") from None
    try:
        if len(document) == 0:
            raise FileError("it has no pages.")
    finally:
        document.close()


def _check_text(path: Path) -> None:
    try:
        path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise FileError("it is not UTF-8 text.") from None


def _docx_as_html(path: Path) -> Path:
    import mammoth

    try:
        with path.open("rb") as docx:
            html = mammoth.convert_to_html(docx).value
    except Exception:
        raise FileError("it is not a Word document I can read (damaged?).") from None
    if not html.strip():
        raise FileError("I found no text in it.")
    converted = path.with_suffix(".html")
    converted.write_text(f"<html><body>{html}</body></html>", encoding="utf-8")
    path.unlink()
    return converted


def _csv_as_text(path: Path) -> Path:
    """A CSV as lines of "column: value" pairs, so that each piece of it says what its numbers are."""
    try:
        text = path.read_text(encoding="utf-8-sig")
        rows = list(csv.reader(io.StringIO(text)))
    except (UnicodeDecodeError, csv.Error):
        raise FileError("it is not a CSV file I can read.") from None
    if not rows:
        raise FileError("it is empty.")
    header, body = rows[0], rows[1 : MAX_CSV_ROWS + 1]
    lines = [", ".join(f"{name}: {value}" for name, value in zip(header, row, strict=False)) for row in body]
    converted = path.with_suffix(".txt")
    converted.write_text("\n\n".join(lines) or ", ".join(header), encoding="utf-8")
    path.unlink()
    return converted


def image_data_url(path: Path, name: str, mimetype_given: str) -> str:
    """The image as a `data:` URL for the model, once Pillow has checked it is one it takes."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.verify()
            kind = (image.format or "").lower()
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise FileError("it is not an image I can read (damaged?).") from None
    mimetype = IMAGE_TYPES.get(kind) or mimetypes.guess_type(name)[0] or mimetype_given
    if mimetype not in IMAGE_TYPES.values():
        raise FileError(f"I can look at PNG, JPEG, GIF and WebP images, not {kind or 'this one'}.")
    return f"data:{mimetype};base64,{base64.b64encode(path.read_bytes()).decode()}"


def _with_suffix(path: Path, suffix: str) -> Path:
    if path.suffix.lower() == suffix:
        return path
    renamed = path.with_name(path.name + suffix)
    path.rename(renamed)
    return renamed
