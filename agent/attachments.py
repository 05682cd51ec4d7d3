"""What a message's files bring to its answer: pieces of documents to recall, images to look at.

The bot fetches and keeps the files (`bot.files`); the agent gets them as `Attachments` on the
request and decides what reaches the model: the pieces most relevant to the question (ranked by
meaning where recall can embed them, else in document order) beside the recalled memory, and the
images as image parts of the question when the model sees images. Notes (what could not be read)
end the answer, so the user learns it in the same message.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from agent.recall import MemoryItem

ATTACHED_TOKENS = 3_000  # of the prompt for pieces of the attached documents, beside recall's own budget


@dataclass(frozen=True)
class ImageInput:
    """An image for the model: its name and a `data:` URL."""

    name: str
    data_url: str


@dataclass
class Attachments:
    """The files of one message, as the agent receives them."""

    chunks: list[MemoryItem] = field(default_factory=list)  # in document order
    images: list[ImageInput] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # for the user: what could not be read

    def __bool__(self) -> bool:
        return bool(self.chunks or self.images or self.notes)


def with_images(messages: list[dict[str, Any]], images: list[ImageInput]) -> list[dict[str, Any]]:
    """`messages` whose last (the question) carries `images` as image parts (OpenAI's content parts)."""
    if not images:
        return messages
    *before, question = messages
    parts: list[dict[str, Any]] = [{"type": "text", "text": question["content"]}]
    parts += [{"type": "image_url", "image_url": {"url": image.data_url}} for image in images]
    return [*before, {"role": question["role"], "content": parts}]


def without_image_data(request: dict[str, Any]) -> dict[str, Any]:
    """A model request as stored with the turn: each image's data replaced by a short mark, so that
    memory holds what was asked, not megabytes of base64."""
    if not any(isinstance(message.get("content"), list) for message in request.get("messages", [])):
        return request
    stored = copy.deepcopy(request)
    for message in stored["messages"]:
        for part in message.get("content") if isinstance(message.get("content"), list) else []:
            if part.get("type") == "image_url":
                url = str(part.get("image_url", {}).get("url", ""))
                part["image_url"] = {"url": f"{url.split(',', 1)[0]},[{len(url):,} characters not stored]"}
    return stored
