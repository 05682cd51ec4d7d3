"""Loading extra tools from modules named in configuration, e.g. "mycompany.slack_tools".

A tool module either lists its tools in a `TOOLS` sequence or simply defines them with `@udf`; UDFs it
merely imports are not collected, so that importing a helper UDF does not expose it to the model.
"""

import importlib
from collections.abc import Sequence
from types import ModuleType

from pixeltable.func.function import Function

from agent.errors import ConfigError


class ToolLoadError(ConfigError):
    """A configured tool module is missing, broken, or offers nothing usable as a tool."""


def load_tools(module_names: Sequence[str]) -> list[Function]:
    """Import each module and collect its tools, in order, failing early on anything the model can't use."""
    tools: list[Function] = []
    for module_name in module_names:
        for tool in _tools_of(_import(module_name)):
            if tool not in tools:  # two modules may re-export the same tool via TOOLS
                _refuse_name_clash(tool, tools)
                tools.append(tool)
    return tools


def _import(module_name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except Exception as error:  # any failure in a plugin's import is a configuration error
        raise ToolLoadError(f"Cannot import tool module {module_name!r}: {error}") from error


def _tools_of(module: ModuleType) -> list[Function]:
    declared = getattr(module, "TOOLS", None)
    tools = _validated_tools_list(module, declared) if declared is not None else _defined_udfs(module)
    if not tools:
        raise ToolLoadError(f"Module {module.__name__!r} has no tools: define TOOLS or @udf functions")
    for tool in tools:
        _require_description(tool, module)
    return tools


def _validated_tools_list(module: ModuleType, declared: object) -> list[Function]:
    if isinstance(declared, str | bytes) or not isinstance(declared, Sequence):
        raise ToolLoadError(f"{module.__name__}.TOOLS must be a list or tuple of Pixeltable UDFs")
    for item in declared:
        if not isinstance(item, Function):
            raise ToolLoadError(f"{module.__name__}.TOOLS contains {item!r}, which is not a Pixeltable UDF")
    return list(declared)


def _defined_udfs(module: ModuleType) -> list[Function]:
    """UDFs defined in the module itself; a module-level UDF's path is "<module>.<function name>"."""
    return [
        value
        for value in vars(module).values()
        if isinstance(value, Function)
        and value.self_path is not None
        and value.self_path.rpartition(".")[0] == module.__name__
    ]


def _require_description(tool: Function, module: ModuleType) -> None:
    """The docstring becomes the tool description; without one OpenAI receives `"description": null`."""
    comment = tool.comment()
    if comment is None or not comment.strip():
        raise ToolLoadError(
            f"Tool {tool.display_name!r} in module {module.__name__!r} has no docstring; "
            "Pixeltable sends the docstring to the model as the tool's description"
        )


def _refuse_name_clash(tool: Function, tools: list[Function]) -> None:
    """The model calls tools by name, so two different tools must not share one."""
    for other in tools:
        if other.name == tool.name:
            raise ToolLoadError(f"Tools {other.display_name!r} and {tool.display_name!r} have the same name")
