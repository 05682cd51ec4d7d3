"""The agent's tools: their schemas as the model must see them, and running the calls the model makes.

Tools are Pixeltable UDFs (so a tool module is the same for Pixeltable and for us), but pixelbot runs
them itself, after its own model call. Two reasons: the tool set in force is always the configured one
(Pixeltable bakes tools into a computed column when it is created), and Pixeltable 0.7.21 puts a tool's
`required` list and `additionalProperties` beside `parameters` instead of inside it, so the model is
never told which arguments are required. `Toolbox.schemas` sends valid JSON Schema.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import pixeltable as pxt
from pixeltable.func.callable_function import CallableFunction

logger = logging.getLogger(__name__)

TOOL_TIMEOUT = 30.0  # seconds a tool may run before the model is told it timed out


@dataclass(frozen=True)
class _Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema of the arguments
    required: tuple[str, ...]
    coercions: dict[str, Callable[[Any], Any]]
    function: Callable[..., Any]


class Toolbox:
    """A fixed set of tools, by name."""

    def __init__(self, tools: pxt.func.Tools) -> None:
        self._tools = {tool.name: tool for tool in map(_describe, tools.tools)}

    def without(self, names: Collection[str]) -> Toolbox:
        """The same tools but `names` (a channel's disabled tools; unknown names are ignored)."""
        box = copy.copy(self)
        box._tools = {name: tool for name, tool in self._tools.items() if name not in names}
        return box

    def __bool__(self) -> bool:
        return bool(self._tools)

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def schemas(self) -> list[dict[str, Any]]:
        """The `tools` of a chat completion request (OpenAI's `ChatCompletionTool`)."""
        return [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": {
                        "type": "object",
                        "properties": tool.parameters,
                        "required": list(tool.required),
                        "additionalProperties": False,
                    },
                },
            }
            for tool in self._tools.values()
        ]

    async def run(self, call: dict[str, Any]) -> str:
        """The result of one tool call as text for the model; failures become readable error text."""
        function = call.get("function") or {}
        name = str(function.get("name", ""))
        tool = self._tools.get(name)
        if tool is None:
            return f"Error: there is no tool named {name!r}."
        try:
            kwargs = _arguments(tool, function.get("arguments"))
            result = await asyncio.wait_for(_invoke(tool.function, kwargs), TOOL_TIMEOUT)
        except (ValueError, TypeError) as error:
            return error_text(str(error))
        except TimeoutError:
            return error_text(f"{name} took longer than {TOOL_TIMEOUT:.0f} seconds")
        except Exception as error:
            logger.warning("tool %s failed: %r", name, error)
            return error_text(f"{type(error).__name__}: {error}")
        return result if isinstance(result, str) else json.dumps(result, default=str)


def error_text(error: str) -> str:
    return f"Error: the tool call could not run ({error}). Check the tool name and arguments."


def _describe(tool: pxt.func.Tool) -> _Tool:
    function = tool.fn
    if not isinstance(function, CallableFunction):
        raise TypeError(f"tool {function.name!r} is not a Python UDF")
    types = {param.name: param.col_type for param in function.signature.parameters.values()}
    typed = {name: col_type for name, col_type in types.items() if col_type is not None}
    if len(typed) != len(types):
        raise TypeError(f"tool {function.name!r} has a parameter without a type")
    defaults = {param.name for param in function.signature.parameters.values() if param.has_default()}
    return _Tool(
        name=tool.name or function.name,
        description=tool.description or function.comment() or "",
        parameters={name: col_type._to_json_schema() for name, col_type in typed.items()},
        required=tuple(name for name, col_type in typed.items() if not col_type.nullable and name not in defaults),
        coercions={name: _coercion(col_type) for name, col_type in typed.items()},
        function=function.py_fn,
    )


def _coercion(col_type: Any) -> Callable[[Any], Any]:
    """How Pixeltable converts a JSON argument to the parameter's type (its `_extract_*_tool_arg`)."""
    if col_type.is_string_type():
        return str
    if col_type.is_int_type():
        return int
    if col_type.is_float_type():
        return float
    if col_type.is_bool_type():
        return bool
    return lambda value: value


def _arguments(tool: _Tool, raw: Any) -> dict[str, Any]:
    try:
        arguments = json.loads(raw) if isinstance(raw, str) else (raw or {})
    except json.JSONDecodeError as error:
        raise ValueError(f"arguments are not JSON: {error.msg}") from None
    if not isinstance(arguments, dict):
        raise ValueError("arguments must be a JSON object")
    missing = [name for name in tool.required if arguments.get(name) is None]
    if missing:
        raise ValueError(f"missing argument(s): {', '.join(missing)}")
    unknown = sorted(set(arguments) - set(tool.coercions))
    if unknown:
        raise ValueError(f"unknown argument(s): {', '.join(unknown)}")
    return {name: tool.coercions[name](value) for name, value in arguments.items() if value is not None}


async def _invoke(function: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    if inspect.iscoroutinefunction(function):
        return await function(**kwargs)
    return await asyncio.to_thread(function, **kwargs)
