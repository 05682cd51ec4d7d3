"""Safe arithmetic for the model, which is unreliable at it.

The expression comes from the model, and through it from any Slack user, so it is treated as hostile: it is
parsed with `ast` and walked by a small evaluator that knows only numbers, + - * / // % **, unary + and -,
parentheses, `pi`, `e`, and `sqrt`, `abs` and `round`. Nothing is ever passed to eval, exec or compile.

Every call finishes in bounded time and memory: the input length and nesting depth are capped, and integer
results are capped at MAX_RESULT_DIGITS digits, with powers and products refused *before* they are computed
from an estimate of their size (a**b has about b*log2(|a|) bits). Floats cannot grow, only overflow, and
overflow is reported as an error.

Results: integers are exact and printed in full; floats are printed with 12 significant digits, which hides
binary noise (0.1+0.2 gives 0.3, not 0.30000000000000004), prints whole floats without ".0" (10/2 gives 5)
and switches to exponent notation for very large or small values (1e+20).

Failures are returned as text starting with "Error: " rather than raised, so the model can tell the user.
"""

import ast
import math
import operator
from collections.abc import Callable

from pixeltable.func.udf import udf

from agent.errors import PixelbotError

MAX_EXPRESSION_LENGTH = 500
MAX_DEPTH = 200  # leaves room for a sum of 200 terms, far from Python's recursion limit
MAX_RESULT_DIGITS = 1000
MAX_RESULT_BITS = int(MAX_RESULT_DIGITS * math.log2(10))
MAX_ROUND_DIGITS = 100
FLOAT_SIGNIFICANT_DIGITS = 12

Number = int | float

BINARY_OPERATORS: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
UNARY_OPERATORS: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}


class CalculationError(PixelbotError):
    """An expression that is refused or has no finite real value; the message is shown to the model."""


@udf
def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression, e.g. "(17.5 * 3 - 2) / 4" or "2 ** 64".

    Supports numbers, + - * / // % ** (power), parentheses, the constants pi and e, and the functions sqrt(x),
    abs(x), round(x) and round(x, digits). Whole numbers are exact; decimals are given to 12 significant
    digits. Use it for any arithmetic rather than computing in your head.
    """
    try:
        return format_number(evaluate(expression))
    except CalculationError as error:
        return f"Error: {error}"


def evaluate(expression: str) -> Number:
    """Parse and evaluate `expression`; raises CalculationError with a user-facing message."""
    expression = expression.strip()
    if not expression:
        raise CalculationError("the expression is empty")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise CalculationError(f"the expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as error:
        raise CalculationError(f"invalid expression ({error.msg})") from None
    except (ValueError, RecursionError, MemoryError):  # null bytes; parser limits
        raise CalculationError("invalid expression") from None
    try:
        return _evaluate_node(tree.body, depth=0)
    except ZeroDivisionError:
        raise CalculationError("division by zero") from None
    except OverflowError:  # float overflow, or an int too large to convert to float
        raise CalculationError("a number is too large for this calculation") from None
    except RecursionError:
        raise CalculationError("the expression is nested too deeply") from None


def format_number(value: Number) -> str:
    """Integers in full; floats to FLOAT_SIGNIFICANT_DIGITS digits, with -0 shown as 0."""
    if isinstance(value, int):
        return str(value)
    return f"{value + 0.0:.{FLOAT_SIGNIFICANT_DIGITS}g}"  # adding 0.0 turns -0.0 into 0.0


def _evaluate_node(node: ast.expr, depth: int) -> Number:
    if depth > MAX_DEPTH:
        raise CalculationError("the expression is nested too deeply")
    match node:
        case ast.Constant(value=bool() as flag):
            raise CalculationError(f"{flag} is not a number")
        case ast.Constant(value=int() | float() as value):
            return _checked(value)
        case ast.Name(id=name) if name in CONSTANTS:
            return CONSTANTS[name]
        case ast.UnaryOp(op=op, operand=operand) if type(op) in UNARY_OPERATORS:
            return _checked(UNARY_OPERATORS[type(op)](_evaluate_node(operand, depth + 1)))
        case ast.BinOp(left=left, op=op, right=right) if type(op) in BINARY_OPERATORS:
            return _apply_binary(op, _evaluate_node(left, depth + 1), _evaluate_node(right, depth + 1))
        case ast.Call(func=ast.Name(id=name), args=args, keywords=[]) if name in FUNCTIONS:
            return _checked(FUNCTIONS[name](*[_evaluate_node(arg, depth + 1) for arg in args]))
    raise CalculationError(_describe_unsupported(node))


def _apply_binary(op: ast.operator, left: Number, right: Number) -> Number:
    if isinstance(op, ast.Pow):
        _refuse_huge_power(left, right)
    elif isinstance(op, ast.Mult):
        _refuse_huge_product(left, right)
    return _checked(BINARY_OPERATORS[type(op)](left, right))


def _refuse_huge_power(base: Number, exponent: Number) -> None:
    """Refuse int**int whose result would exceed the digit cap, before Python spends time and memory on it."""
    if not (isinstance(base, int) and isinstance(exponent, int)) or exponent <= 0 or abs(base) <= 1:
        return  # float powers overflow instead of growing; negative exponents give floats
    # Compare the exponent first: multiplying a huge int by a float would itself overflow.
    if exponent > MAX_RESULT_BITS or exponent * math.log2(abs(base)) > MAX_RESULT_BITS:
        raise CalculationError(f"exponent too large (results are limited to {MAX_RESULT_DIGITS} digits)")


def _refuse_huge_product(left: Number, right: Number) -> None:
    """Refuse int*int over the digit cap; a product has at least (sum of operand bit lengths - 1) bits."""
    if not (isinstance(left, int) and isinstance(right, int)):
        return
    if left.bit_length() + right.bit_length() - 1 > MAX_RESULT_BITS:
        raise CalculationError(f"the result has more than {MAX_RESULT_DIGITS} digits")


def _checked(value: object) -> Number:
    """Pass finite real numbers within the digit cap; refuse anything else an operation may produce."""
    if isinstance(value, complex):
        raise CalculationError("the result is not a real number")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CalculationError("the result is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculationError("the result is too large" if math.isinf(value) else "the result is undefined")
    if isinstance(value, int) and value.bit_length() > MAX_RESULT_BITS:
        raise CalculationError(f"the result has more than {MAX_RESULT_DIGITS} digits")
    return value


def _sqrt(*args: Number) -> Number:
    """Exact for perfect squares, even beyond float range; a float otherwise."""
    (x,) = _expect_arguments("sqrt", args, 1, 1)
    if x < 0:
        raise CalculationError("the square root of a negative number is not a real number")
    if isinstance(x, int) and math.isqrt(x) ** 2 == x:
        return math.isqrt(x)
    return math.sqrt(x)


def _abs(*args: Number) -> Number:
    (x,) = _expect_arguments("abs", args, 1, 1)
    return abs(x)


def _round(*args: Number) -> Number:
    """round(x) gives an int, round(x, digits) keeps x's type; digits may be negative (round(1234, -2))."""
    x, *rest = _expect_arguments("round", args, 1, 2)
    if not rest:
        return round(x)
    digits = rest[0]
    if not isinstance(digits, int) or abs(digits) > MAX_ROUND_DIGITS:
        limit = MAX_ROUND_DIGITS
        raise CalculationError(f"round() digits must be a whole number from -{limit} to {limit}")
    return round(x, digits)


def _expect_arguments(name: str, args: tuple[Number, ...], minimum: int, maximum: int) -> tuple[Number, ...]:
    if not minimum <= len(args) <= maximum:
        expected = str(minimum) if minimum == maximum else f"{minimum} or {maximum}"
        raise CalculationError(f"{name}() takes {expected} argument(s), got {len(args)}")
    return args


FUNCTIONS: dict[str, Callable[..., Number]] = {"sqrt": _sqrt, "abs": _abs, "round": _round}

# Friendlier names than ast class names for what models are likely to try.
UNSUPPORTED_DESCRIPTIONS: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access",
    ast.Starred: "unpacking",
    ast.Lambda: "lambda",
    ast.ListComp: "comprehension",
    ast.SetComp: "comprehension",
    ast.DictComp: "comprehension",
    ast.GeneratorExp: "comprehension",
    ast.Compare: "comparison",
    ast.BoolOp: "and/or",
    ast.Subscript: "indexing",
    ast.Tuple: "comma (write 1000, not 1,000)",
}


def _describe_unsupported(node: ast.expr) -> str:
    supported = "use numbers, + - * / // % **, parentheses, pi, e, sqrt, abs and round"
    match node:
        case ast.Name(id=name):
            return f"unknown name {name!r}; {supported}"
        case ast.Call(func=ast.Name(id=name)) if name not in FUNCTIONS:
            return f"unknown function {name!r}; {supported}"
        case ast.Call(keywords=[_, *_]):
            return "keyword arguments are not supported; pass arguments by position"
        case ast.Call():
            return f"only sqrt, abs and round can be called; {supported}"
        case ast.Constant(value=value):
            return f"{type(value).__name__} values are not supported; {supported}"
        case ast.BinOp(op=ast.BitXor()):
            return "^ is not supported; use ** for powers"
        case ast.BinOp() | ast.UnaryOp():
            return f"that operator is not supported; {supported}"
    description = UNSUPPORTED_DESCRIPTIONS.get(type(node), type(node).__name__)
    return f"unsupported {description}; {supported}"
