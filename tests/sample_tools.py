"""A tool module as a deployment would write one, loaded by tests/test_tools.py through `load_tools`."""

from pixeltable.func.udf import udf

from tools import say_hello  # imported, not defined here: `load_tools` must not collect it

__all__ = ["reverse_text", "say_hello"]


@udf
def reverse_text(text: str) -> str:
    """Reverse a piece of text, character by character."""
    return text[::-1]
