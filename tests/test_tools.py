"""Unit tests for the built-in tools and `load_tools`.

The UDFs are called through `.py_fn`, the plain Python function under `@udf`: fast, and no database needed.
The abuse cases carry a pytest timeout as a guard against hangs rather than a timing assertion.
"""

import json
import re
import sys
import uuid
import zoneinfo
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pixeltable.func.callable_function import CallableFunction
from pixeltable.globals import tools as pxt_tools

from tools import DEFAULT_TOOLS, ToolLoadError, calculate, current_time, load_tools, say_hello

UNKNOWN_ZONE = "Unknown timezone '{}'. Use an IANA name such as 'Europe/Paris' or 'UTC'."
CURRENT_TIME_FORMAT = re.compile(r"^(?P<iso>\S+)\[(?P<zone>[^\]]+)\] \((?P<weekday>[A-Z][a-z]+day)\)$")


def call(tool: CallableFunction, *args: Any) -> str:
    result = tool.py_fn(*args)
    assert isinstance(result, str)
    return result


# --- say_hello -------------------------------------------------------------------------------------


def test_say_hello_greets_by_name() -> None:
    assert call(say_hello, "Ada") == "Hello, Ada!"


# --- current_time ----------------------------------------------------------------------------------


def test_timezone_data_is_available() -> None:
    """Without system zone files or the `tzdata` package, every zone would be reported unknown."""
    assert "Europe/Paris" in zoneinfo.available_timezones(), "install tzdata or the system tzdata package"


@pytest.mark.parametrize(("requested", "zone"), [("Europe/Paris", "Europe/Paris"), ("UTC", "UTC")])
def test_current_time_is_now_in_the_zone(requested: str, zone: str) -> None:
    match = CURRENT_TIME_FORMAT.match(call(current_time, requested))
    assert match is not None
    moment = datetime.fromisoformat(match["iso"])
    assert match["zone"] == zone
    assert moment.utcoffset() == moment.astimezone(zoneinfo.ZoneInfo(zone)).utcoffset()
    assert match["weekday"] == f"{moment:%A}"
    assert abs(moment - datetime.now(UTC)) < timedelta(minutes=5)


@pytest.mark.parametrize(("requested", "zone"), [("utc", "UTC"), ("europe/paris", "Europe/Paris"), (" UTC ", "UTC")])
def test_current_time_forgives_case_and_spaces(requested: str, zone: str) -> None:
    assert f"[{zone}]" in call(current_time, requested)


@pytest.mark.parametrize("requested", ["Mars/Olympus", "", "America", "../../etc/passwd", "/etc/passwd", "a\x00b"])
def test_current_time_explains_unknown_zones(requested: str) -> None:
    assert call(current_time, requested) == UNKNOWN_ZONE.format(requested)


def test_current_time_shortens_absurd_zone_names() -> None:
    assert call(current_time, "x" * 10_000) == UNKNOWN_ZONE.format("x" * 64)


# --- calculate: results ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("2 ** 10", "1024"),
        ("2 ** 64", "18446744073709551616"),
        ("2 ** -2", "0.25"),
        ("7 // 2", "3"),
        ("-7 % 3", "2"),
        ("7 - -3", "10"),
        ("+5", "5"),
        ("1_000 * 3", "3000"),
        ("10 / 2", "5"),
        ("1 / 3", "0.333333333333"),
        ("0.1 + 0.2", "0.3"),
        ("1.1 * 3", "3.3"),
        ("-0.0", "0"),
        ("1e20", "1e+20"),
        ("1e-7", "1e-07"),
        ("  (17.5 * 3 - 2) / 4  \n", "12.625"),
        ("2 ** 3000 // 2 ** 2999", "2"),
        ("sqrt(16)", "4"),
        ("sqrt(2)", "1.41421356237"),
        ("sqrt(10 ** 600)", "1" + "0" * 300),
        ("abs(-3.5)", "3.5"),
        ("round(2.567, 2)", "2.57"),
        ("round(1234, -2)", "1200"),
        ("round(2.5)", "2"),
        ("2 * pi", "6.28318530718"),
        ("e", "2.71828182846"),
        ("(-1) ** (10 ** 999)", "1"),
    ],
)
def test_calculate_evaluates_arithmetic(expression: str, expected: str) -> None:
    assert call(calculate, expression) == expected


# --- calculate: refusals ---------------------------------------------------------------------------


@pytest.mark.timeout(5)
@pytest.mark.parametrize(
    ("expression", "message"),
    [
        # sizes that would take Python minutes or gigabytes
        ("9**9**9", "exponent too large"),
        ("10**10000000", "exponent too large"),
        ("2**2**2**2**2", "exponent too large"),
        ("(-3)**5000", "exponent too large"),
        ("(10**500) * (10**500)", "more than 1000 digits"),
        ("(10**400) * (10**400) * (10**400)", "more than 1000 digits"),
        ("10**999 + 10**999 * 9", "more than 1000 digits"),
        ("9" * 499, None),  # a 499-digit literal is fine
        ("1" * 501, "longer than 500 characters"),
        ("(" * 240 + "1" + ")" * 240, "invalid expression"),
        ("-" * 499 + "1", "nested too deeply"),
        ("1+" * 249 + "1", "nested too deeply"),
        # floats overflow rather than grow
        ("1e308 * 10", "too large"),
        ("1e999", "too large"),
        ("10.0 ** 400", "too large"),
        ("(10**999) ** 0.5", "too large"),
        ("1.5 ** (10**999)", "too large"),
        ("2 ** -(10**999)", "too large"),
        # no real value
        ("1 / 0", "division by zero"),
        ("5 % 0.0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("sqrt(-1)", "not a real number"),
        ("(-8) ** (1/3)", "not a real number"),
        # anything but arithmetic
        ("__import__('os')", "unknown function '__import__'"),
        ("__import__('os').system('id')", "only sqrt, abs and round can be called"),
        ("open('/etc/passwd')", "unknown function 'open'"),
        ("x + 1", "unknown name 'x'"),
        ("().__class__.__bases__", "attribute access"),
        ("(lambda: 1)()", "only sqrt, abs and round can be called"),
        ("lambda: 1", "lambda"),
        ("[x for x in range(9)]", "comprehension"),
        ("round(1.5, ndigits=1)", "keyword arguments are not supported"),
        ("round(1, 10**9)", "round() digits"),
        ("sqrt(*[4])", "unpacking"),
        ("sqrt(1, 2)", "sqrt() takes 1 argument(s), got 2"),
        ("2 ^ 3", "use ** for powers"),
        ("1,000", "write 1000, not 1,000"),
        ("1 < 2", "comparison"),
        ("True + 1", "True is not a number"),
        ("'a' * 10", "str values are not supported"),
        ("1j * 1j", "complex values are not supported"),
        ("~1", "operator is not supported"),
        ("1 2", "invalid expression"),
        ("(1 + 2", "invalid expression"),
        ("1\x00", "invalid expression"),
        ("", "empty"),
        ("   ", "empty"),
    ],
)
def test_calculate_refuses_with_an_error_message(expression: str, message: str | None) -> None:
    result = call(calculate, expression)
    if message is None:
        assert result == expression
    else:
        assert result.startswith("Error: ")
        assert message in result


# --- descriptions sent to the model ----------------------------------------------------------------


def test_default_tools_serialize_with_descriptions() -> None:
    schemas = json.loads(json.dumps(pxt_tools(*DEFAULT_TOOLS).model_dump()))
    assert [schema["name"] for schema in schemas] == ["say_hello", "current_time", "calculate"]
    for schema in schemas:
        assert isinstance(schema["description"], str)
        assert schema["description"].strip()
        assert "Args:" not in schema["description"]
        assert all(prop == {"type": "string"} for prop in schema["parameters"]["properties"].values())
        assert schema["required"] == list(schema["parameters"]["properties"])


# --- load_tools ------------------------------------------------------------------------------------


@pytest.fixture
def make_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    """Write a module on sys.path, uniquely named because Pixeltable refuses to register a UDF twice."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(source: str) -> str:
        name = f"generated_tools_{uuid.uuid4().hex}"
        (tmp_path / f"{name}.py").write_text(source)
        monkeypatch.delitem(sys.modules, name, raising=False)
        return name

    return make


UDF_HEADER = "from pixeltable.func.udf import udf\n\n"


def test_load_tools_collects_udfs_defined_in_the_module() -> None:
    from tests.sample_tools import reverse_text

    assert load_tools(["tests.sample_tools"]) == [reverse_text]
    assert reverse_text.py_fn("abc") == "cba"


def test_load_tools_prefers_the_tools_list() -> None:
    assert load_tools(["tools"]) == list(DEFAULT_TOOLS)


def test_load_tools_keeps_order_and_skips_repeats() -> None:
    from tests.sample_tools import reverse_text

    assert load_tools(["tests.sample_tools", "tools", "tools"]) == [reverse_text, *DEFAULT_TOOLS]


def test_load_tools_of_nothing_is_empty() -> None:
    assert load_tools([]) == []


def test_load_tools_refuses_a_missing_module() -> None:
    with pytest.raises(ToolLoadError, match="Cannot import tool module 'no_such_tools_module'"):
        load_tools(["no_such_tools_module"])


def test_load_tools_refuses_a_module_that_fails_to_import(make_module: Callable[[str], str]) -> None:
    name = make_module("raise RuntimeError('boom')\n")
    with pytest.raises(ToolLoadError, match="boom"):
        load_tools([name])


def test_load_tools_refuses_a_module_without_tools() -> None:
    with pytest.raises(ToolLoadError, match="Module 'json' has no tools"):
        load_tools(["json"])


def test_load_tools_refuses_an_undocumented_tool(make_module: Callable[[str], str]) -> None:
    name = make_module(UDF_HEADER + "@udf\ndef shrug(text: str) -> str:\n    return text\n")
    with pytest.raises(ToolLoadError, match=r"shrug.* has no docstring"):
        load_tools([name])


def test_load_tools_refuses_a_tools_list_of_non_udfs(make_module: Callable[[str], str]) -> None:
    name = make_module("TOOLS = [print]\n")
    with pytest.raises(ToolLoadError, match="not a Pixeltable UDF"):
        load_tools([name])


def test_load_tools_refuses_two_tools_with_one_name(make_module: Callable[[str], str]) -> None:
    name = make_module(UDF_HEADER + '@udf\ndef say_hello(name: str) -> str:\n    """Wave."""\n    return name\n')
    with pytest.raises(ToolLoadError, match="same name"):
        load_tools(["tools", name])
