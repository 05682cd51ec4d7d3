"""Tools the agent can call: Pixeltable UDFs whose docstrings are sent to the model as their descriptions.

A tool's docstring is written for the model: Pixeltable sends it verbatim (`Function.comment()`) as the tool
description and has no per-parameter descriptions, so parameters are explained in prose and there is no
"Args:" section. Tools return readable error text instead of raising, so the model can explain a failure.
UDFs must live in importable modules, not `__main__`, for Pixeltable to store them.
"""

from pixeltable.func.function import Function

from tools.calculator import calculate
from tools.clock import current_time
from tools.greetings import say_hello
from tools.loading import ToolLoadError, load_tools

DEFAULT_TOOLS: tuple[Function, ...] = (say_hello, current_time, calculate)

# Lets configuration name "tools" like any other tool module.
TOOLS = DEFAULT_TOOLS

__all__ = [
    "DEFAULT_TOOLS",
    "TOOLS",
    "ToolLoadError",
    "calculate",
    "current_time",
    "load_tools",
    "say_hello",
]
