"""A trivial tool, handy for checking that tool calling works end to end."""

from pixeltable.func.udf import udf


@udf
def say_hello(name: str) -> str:
    """Greet someone by name. Pass the person's name, e.g. "Ada"."""
    return f"Hello, {name}!"
